"""The dag-pb block format and the UnixFS ``Data`` message inside it, byte for byte.

Two tiny protobuf messages, encoded and decoded by hand (no protobuf runtime):

``PBNode`` (dag-pb, codec 0x70)::

    message PBLink { optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3; }
    message PBNode { repeated PBLink Links = 2; optional bytes Data = 1; }

The canonical encoding (js ``@ipld/dag-pb``, go ``go-codec-dagpb``) writes every
``Links`` entry *before* ``Data``, and inside a link ``Hash``, ``Name``,
``Tsize`` in that order. ``ipfs add`` writes ``Name`` as an empty string (two
bytes ``12 00``), and so do we, because those bytes are hashed into the CID.

UnixFS ``Data`` (the PBNode's ``Data`` bytes)::

    message Data {
        required DataType Type = 1; optional bytes Data = 2; optional uint64 filesize = 3;
        repeated uint64 blocksizes = 4; optional uint64 hashType = 5; optional uint64 fanout = 6;
        optional uint32 mode = 7; optional UnixTime mtime = 8;
    }

written in field order, ``blocksizes`` as one non-packed varint field per entry.

Decoders are strict and bounded: minimal varints of at most 64 bits, known
fields only with their proper wire types, no duplicated singular fields,
fields in the order the canonical encoders write them (``Links``/``Data`` may
come in either order as js accepts, never interleaved), lengths checked
against the remaining input before anything is sliced. They raise
``InvalidDag`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.cid import Cid
from protocol.errors import InvalidCid, RemoteProtocolError

UNIXFS_RAW = 0
UNIXFS_DIRECTORY = 1
UNIXFS_FILE = 2
UNIXFS_METADATA = 3
UNIXFS_SYMLINK = 4
UNIXFS_HAMT_SHARD = 5
UNIXFS_TYPE_NAMES = {
    UNIXFS_RAW: "raw",
    UNIXFS_DIRECTORY: "directory",
    UNIXFS_FILE: "file",
    UNIXFS_METADATA: "metadata",
    UNIXFS_SYMLINK: "symlink",
    UNIXFS_HAMT_SHARD: "hamt-sharded-directory",
}
_MAX_UINT64 = (1 << 64) - 1
# A file can't be bigger than this; it keeps sums of sizes exact and sane.
MAX_FILE_SIZE = (1 << 63) - 1

# Protobuf wire types.
_VARINT = 0
_LENGTH_DELIMITED = 2


class InvalidDag(RemoteProtocolError):
    """A dag-pb block, or the UnixFS file DAG it belongs to, is malformed."""


@dataclass(frozen=True, slots=True)
class PBLink:
    """One link of a dag-pb node. ``tsize`` is ``None`` when the encoder left it out."""

    cid: Cid
    name: str = ""
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    """A decoded dag-pb block. ``data`` is ``None`` when the field is absent."""

    links: tuple[PBLink, ...]
    data: bytes | None


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """The fields of a UnixFS ``Data`` message that matter for files."""

    type: int
    data: bytes
    filesize: int | None
    blocksizes: tuple[int, ...]


# --- encoding ---------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, the protobuf / multiformats varint."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_TSIZE_TAG = b"\x18"


def _length_delimited(tag: bytes, value: bytes) -> bytes:
    return tag + encode_varint(len(value)) + value


def encode_pb_node(node: PBNode) -> bytes:
    """The canonical dag-pb bytes of any node (links first, then data).

    Binary CIDs are written in the v1 form. ``encode_file_node`` is the fast
    path for the nodes ``ipfs add`` makes; both give the same bytes for those.
    """
    parts = []
    for link in node.links:
        fields = _length_delimited(b"\x0a", link.cid.to_bytes())
        fields += _length_delimited(b"\x12", link.name.encode("utf-8"))
        if link.tsize is not None:
            fields += _TSIZE_TAG + encode_varint(link.tsize)
        parts.append(_length_delimited(b"\x12", fields))
    if node.data is not None:
        parts.append(_length_delimited(b"\x0a", node.data))
    return b"".join(parts)


def encode_unixfs_data(unixfs: UnixFSData) -> bytes:
    """The UnixFS ``Data`` bytes, fields in order, inline data only when non-empty."""
    out = bytearray(b"\x08" + encode_varint(unixfs.type))
    if unixfs.data:
        out += _length_delimited(b"\x12", unixfs.data)
    if unixfs.filesize is not None:
        out += b"\x18" + encode_varint(unixfs.filesize)
    for size in unixfs.blocksizes:
        out += b"\x20" + encode_varint(size)
    return bytes(out)


def encode_file_node(links: Sequence[tuple[Cid, int]], blocksizes: Sequence[int]) -> bytes:
    """The dag-pb bytes of a UnixFS File node without inline data, as ``ipfs add`` writes it.

    ``links`` are ``(cid, tsize)`` in file order (each written with an empty
    ``Name``, which ``ipfs add`` includes); ``blocksizes[i]`` is the number of
    file bytes under ``links[i]``.
    """
    unixfs = UnixFSData(UNIXFS_FILE, b"", sum(blocksizes), tuple(blocksizes))
    pb_links = tuple(PBLink(cid, "", tsize) for cid, tsize in links)
    return encode_pb_node(PBNode(pb_links, encode_unixfs_data(unixfs)))


# --- decoding ---------------------------------------------------------------


def _read_varint(data: bytes, offset: int, limit: int) -> tuple[int, int]:
    """Decode a minimal varint of at most 64 bits from ``data[offset:limit]``."""
    value = 0
    shift = 0
    while True:
        if offset >= limit:
            raise InvalidDag("truncated", "varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and shift > 0:
                raise InvalidDag("non-canonical-varint")
            if value > _MAX_UINT64:
                raise InvalidDag("varint-overflow")
            return value, offset
        shift += 7
        if shift >= 70:
            raise InvalidDag("varint-overflow")


def _read_bytes(data: bytes, offset: int, limit: int) -> tuple[int, int]:
    """Read a length prefix; return (start, end) of the bytes it announces."""
    length, start = _read_varint(data, offset, limit)
    end = start + length
    if end > limit:
        raise InvalidDag("truncated", "length-delimited field")
    return start, end


def _read_key(data: bytes, offset: int, limit: int) -> tuple[int, int, int]:
    key, offset = _read_varint(data, offset, limit)
    return key >> 3, key & 0x7, offset


def _decode_link(data: bytes, start: int, end: int) -> PBLink:
    cid: Cid | None = None
    name = ""
    tsize: int | None = None
    last_field = 0
    offset = start
    while offset < end:
        field, wire_type, offset = _read_key(data, offset, end)
        if field <= last_field:
            raise InvalidDag("bad-field-order", f"PBLink field {field} after {last_field}")
        last_field = field
        if field == 1 and wire_type == _LENGTH_DELIMITED:
            hash_start, offset = _read_bytes(data, offset, end)
            try:
                cid = Cid.from_bytes(data[hash_start:offset])
            except InvalidCid as error:
                raise InvalidDag("unsupported-link", error.detail) from error
        elif field == 2 and wire_type == _LENGTH_DELIMITED:
            name_start, offset = _read_bytes(data, offset, end)
            try:
                name = data[name_start:offset].decode("utf-8")
            except UnicodeDecodeError as error:
                raise InvalidDag("bad-link-name") from error
        elif field == 3 and wire_type == _VARINT:
            tsize, offset = _read_varint(data, offset, end)
        else:
            raise InvalidDag("bad-field", f"PBLink field {field} wire type {wire_type}")
    if cid is None:
        raise InvalidDag("link-without-hash")
    return PBLink(cid, name, tsize)


def decode_pb_node(data: bytes) -> PBNode:
    """Decode dag-pb bytes strictly. Raises ``InvalidDag``."""
    links: list[PBLink] = []
    node_data: bytes | None = None
    # Canonical blocks put Data after the links; js also accepts Data first.
    # Either way the links are contiguous: a link after Data that itself came
    # after links would interleave them.
    data_after_links = False
    end = len(data)
    offset = 0
    while offset < end:
        field, wire_type, offset = _read_key(data, offset, end)
        if wire_type != _LENGTH_DELIMITED or field not in (1, 2):
            raise InvalidDag("bad-field", f"PBNode field {field} wire type {wire_type}")
        start, offset = _read_bytes(data, offset, end)
        if field == 1:
            if node_data is not None:
                raise InvalidDag("duplicate-data")
            node_data = data[start:offset]
            data_after_links = bool(links)
        else:
            if data_after_links:
                raise InvalidDag("bad-field-order", "Links after Data")
            links.append(_decode_link(data, start, offset))
    return PBNode(tuple(links), node_data)


def decode_unixfs_data(data: bytes) -> UnixFSData:
    """Decode a UnixFS ``Data`` message strictly. Raises ``InvalidDag``."""
    unixfs_type: int | None = None
    inline = b""
    filesize: int | None = None
    blocksizes: list[int] = []
    last_field = 0
    end = len(data)
    offset = 0
    while offset < end:
        field, wire_type, offset = _read_key(data, offset, end)
        # Fields come in order; only blocksizes (4) repeats.
        if field < last_field or (field == last_field and field != 4):
            raise InvalidDag("bad-field-order", f"UnixFS field {field} after {last_field}")
        last_field = field
        if field in (1, 3, 4, 5, 6, 7) and wire_type == _VARINT:
            value, offset = _read_varint(data, offset, end)
            if field == 1:
                if value not in UNIXFS_TYPE_NAMES:
                    raise InvalidDag("bad-unixfs-type", str(value))
                unixfs_type = value
            elif field == 3:
                filesize = value
            elif field == 4:
                blocksizes.append(value)
            # hashType (5) and fanout (6) belong to HAMT directories, mode (7)
            # to metadata; none changes a file's bytes.
        elif field in (2, 8) and wire_type == _LENGTH_DELIMITED:
            start, offset = _read_bytes(data, offset, end)
            if field == 2:
                inline = data[start:offset]
            # mtime (8) is metadata too.
        else:
            raise InvalidDag("bad-field", f"UnixFS field {field} wire type {wire_type}")
    if unixfs_type is None:
        raise InvalidDag("missing-unixfs-type")
    return UnixFSData(unixfs_type, inline, filesize, tuple(blocksizes))
