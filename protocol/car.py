"""CARv1, the IPFS archive format: encoding and an incremental, verifying decoder.

A CARv1 (https://ipld.io/specs/transport/car/carv1/) is a header and then
sections, each prefixed by its length as an unsigned LEB128 varint::

    varint(len(header)) header
    varint(len(cid) + len(data)) cid data      (once per block)

The header is the dag-cbor map ``{"roots": [CID, ...], "version": 1}``; in
dag-cbor a map's keys are sorted by length then bytes (so ``roots`` comes
first) and a CID is tag 42 over a byte string holding ``0x00`` and the binary
CID. We write exactly that; the decoder accepts exactly that (canonical
integers, definite lengths, those two keys and no other, version 1) and
nothing that would need a general CBOR decoder. Sections may name CIDv0 or
CIDv1 blocks (raw or dag-pb, sha2-256): every block is hashed against its CID
before it is returned.

Bounds: a header is at most ``MAX_HEADER_SIZE`` bytes and a section at most
``MAX_SECTION_SIZE``; a decoder holds at most one section's bytes plus what
the caller fed in one piece.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.cid import Cid
from protocol.content import MAX_BLOCK_SIZE, Block
from protocol.dagpb import encode_varint
from protocol.errors import InvalidCid, RemoteProtocolError

__all__ = [
    "MAX_HEADER_SIZE",
    "MAX_SECTION_SIZE",
    "CarDecoder",
    "CarHeader",
    "InvalidCar",
    "encode_header",
    "encode_section",
]

MAX_HEADER_SIZE = 64 * 1024
MAX_SECTION_SIZE = MAX_BLOCK_SIZE + 100
CAR_VERSION = 1
_CID_TAG = b"\xd8\x2a"  # CBOR tag 42, in its one-byte-argument form


class InvalidCar(RemoteProtocolError):
    """Bytes that are not a CARv1 we accept (malformed, truncated, oversized)."""


@dataclass(frozen=True, slots=True)
class CarHeader:
    """The decoded CARv1 header."""

    roots: tuple[Cid, ...]


# --- encoding ---------------------------------------------------------------


def _cbor_head(major: int, value: int) -> bytes:
    """The shortest CBOR head for ``major`` type with argument ``value``."""
    if value < 24:
        return bytes((major << 5 | value,))
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes((major << 5 | extra,)) + value.to_bytes(size, "big")
    raise ValueError(value)


def encode_header(roots: Sequence[Cid]) -> bytes:
    """The CARv1 header (length prefix included) naming ``roots``."""
    body = bytearray(b"\xa2\x65roots")  # map(2), text(5) "roots"
    body += _cbor_head(4, len(roots))
    for root in roots:
        cid = b"\x00" + root.to_bytes()
        body += _CID_TAG + _cbor_head(2, len(cid)) + cid
    body += b"\x67version\x01"  # text(7) "version", unsigned 1
    return encode_varint(len(body)) + bytes(body)


def encode_section(block: Block) -> bytes:
    """One CARv1 section (length prefix included) holding ``block``."""
    cid = block.cid.to_bytes()
    return encode_varint(len(cid) + len(block.data)) + cid + block.data


# --- header decoding ----------------------------------------------------------


class _CborReader:
    """Just enough strict dag-cbor to read a CARv1 header."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def head(self) -> tuple[int, int]:
        """Read a head; return (major type, argument). Only canonical forms."""
        if self.offset >= len(self.data):
            raise InvalidCar("bad-header", "truncated CBOR")
        initial = self.data[self.offset]
        self.offset += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info
        if info > 27:
            raise InvalidCar("bad-header", "indefinite length or reserved CBOR form")
        size = 1 << (info - 24)
        end = self.offset + size
        if end > len(self.data):
            raise InvalidCar("bad-header", "truncated CBOR")
        value = int.from_bytes(self.data[self.offset : end], "big")
        self.offset = end
        if value < (24 if size == 1 else 1 << (4 * size)):
            raise InvalidCar("bad-header", "non-canonical CBOR integer")
        return major, value

    def expect(self, major: int) -> int:
        found, value = self.head()
        if found != major:
            raise InvalidCar("bad-header", f"CBOR major type {found}, expected {major}")
        return value

    def take(self, length: int) -> bytes:
        end = self.offset + length
        if end > len(self.data):
            raise InvalidCar("bad-header", "truncated CBOR")
        value = self.data[self.offset : end]
        self.offset = end
        return value

    def text(self) -> str:
        raw = self.take(self.expect(3))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidCar("bad-header", "invalid UTF-8") from error

    def cid(self) -> Cid:
        if self.expect(6) != 42:
            raise InvalidCar("bad-header", "CBOR tag other than 42")
        raw = self.take(self.expect(2))
        if not raw.startswith(b"\x00"):
            raise InvalidCar("bad-header", "CID without the identity multibase prefix")
        try:
            return Cid.from_bytes(raw[1:])
        except InvalidCid as error:
            raise InvalidCar("unsupported-cid", error.detail) from error


def _decode_header(data: bytes) -> CarHeader:
    reader = _CborReader(data)
    if reader.expect(5) != 2:
        raise InvalidCar("bad-header", "header map must have exactly roots and version")
    if reader.text() != "roots":
        raise InvalidCar("bad-header", "first key must be roots")
    count = reader.expect(4)
    if count > len(data):  # each root takes several bytes: cheap bound before looping
        raise InvalidCar("bad-header", "truncated CBOR")
    roots = tuple(reader.cid() for _ in range(count))
    if reader.text() != "version":
        raise InvalidCar("bad-header", "second key must be version")
    major, version = reader.head()
    if major != 0 or version != CAR_VERSION:
        raise InvalidCar("unsupported-version", str(version) if major == 0 else "not an integer")
    if reader.offset != len(data):
        raise InvalidCar("bad-header", "bytes after the header map")
    return CarHeader(roots)


# --- sections -----------------------------------------------------------------


def _read_varint(data: bytes | bytearray | memoryview, offset: int) -> tuple[int, int] | None:
    """Decode a minimal varint at ``offset``; ``None`` if more bytes are needed."""
    value = 0
    shift = 0
    while offset < len(data):
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and shift > 0:
                raise InvalidCar("non-canonical-varint")
            return value, offset
        shift += 7
        if shift > 28:  # more than 4 bytes: beyond every bound we accept
            raise InvalidCar("varint-too-large")
    return None


def _cid_size(section: memoryview) -> int:
    """The length of the binary CID that starts ``section``."""
    if bytes(section[:2]) == b"\x12\x20":
        return 34  # CIDv0: a bare sha2-256 multihash
    # CIDv1: version, codec, multihash code, digest length (all varints).
    offset = 0
    digest_size = 0
    for _ in range(4):
        parsed = _read_varint(section, offset)
        if parsed is None:
            raise InvalidCar("bad-section", "truncated CID")
        digest_size, offset = parsed
    return offset + digest_size


class CarDecoder:
    """Incremental CARv1 decoder: ``feed`` bytes as they come, get events.

    The first event is a ``CarHeader``, then one ``Block`` per section, each
    verified against its CID (``BlockMismatch``). Malformed or oversized input
    raises ``InvalidCar``; after an error the decoder must not be used again.
    """

    __slots__ = ("_buffer", "_header_done", "_need")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header_done = False
        # Body length announced by the current prefix, once it has been read.
        self._need: int | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[CarHeader | Block]:
        """Add bytes; return the header and the blocks they completed."""
        self._buffer += data
        events: list[CarHeader | Block] = []
        while (event := self._next_event()) is not None:
            events.append(event)
        return events

    def finish(self) -> None:
        """Declare the end of input. Raises ``InvalidCar`` unless it ended cleanly."""
        if self._buffer or self._need is not None or not self._header_done:
            raise InvalidCar("truncated", f"{len(self._buffer)} bytes left over")

    def _next_event(self) -> CarHeader | Block | None:
        buffer = self._buffer
        if self._need is None:
            parsed = _read_varint(buffer, 0)
            if parsed is None:
                return None
            length, prefix = parsed
            limit = MAX_SECTION_SIZE if self._header_done else MAX_HEADER_SIZE
            if length == 0:
                raise InvalidCar("empty-section" if self._header_done else "empty-header")
            if length > limit:
                raise InvalidCar("section-too-large" if self._header_done else "header-too-large")
            del buffer[:prefix]
            self._need = length
        if len(buffer) < self._need:
            return None
        need, self._need = self._need, None
        if not self._header_done:
            self._header_done = True
            header = bytes(buffer[:need])
            del buffer[:need]
            return _decode_header(header)
        with memoryview(buffer) as view:
            cid_size = _cid_size(view[:need])
            if cid_size > need:
                raise InvalidCar("bad-section", "truncated CID")
            try:
                cid = Cid.from_bytes(bytes(view[:cid_size]))
            except InvalidCid as error:
                raise InvalidCar("unsupported-cid", error.detail) from error
            data = bytes(view[cid_size:need])
        del buffer[:need]
        cid.verify(data)
        return Block(cid, data)
