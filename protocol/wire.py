"""Messages and framing of the block exchange protocol ``/remixnet/blocks/1.0.0``.

Sans-IO, after h11: ``encode(message)`` gives the bytes of one frame and a
``FrameDecoder`` turns bytes fed in any pieces back into typed messages or
raises ``WireError``. docs/protocol.md ("Block exchange") is the normative description;
in short, every frame is::

    varint(1 + len(body))  type  body

* ``WANT``      (0x01) body = 1 … 64 binary CIDs of 36 bytes each (client → server)
* ``BLOCK``     (0x02) body = CID (36 bytes) then the block, 0 … 1 MiB (server → client)
* ``DONT_HAVE`` (0x03) body = CID (36 bytes) (server → client)
* ``ABORT``     (0x04) body = reason, 1 … 64 bytes of ``[a-z0-9-]`` (either way, then the
  sender closes the stream)

Invariants: a decoder never holds more than ``max_frame_size`` plus a varint
of a frame it has not finished, plus the bytes of one ``feed`` call; it
rejects a declared length over its bound before buffering the body, so a peer
cannot make it allocate more than the bound. Every decoded value is fully
valid: CIDs are CIDv1 sha2-256 with codec raw or dag-pb, reasons match their
grammar, sizes are within bounds. Which messages may travel in which
direction is the endpoints' business (``node/exchange.py``, ``node/fetch.py``),
which raise ``WireError("unexpected-message")``.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

from protocol.cid import BINARY_SIZE, Cid
from protocol.content import MAX_BLOCK_SIZE
from protocol.dagpb import encode_varint
from protocol.errors import InvalidCid, LocalProtocolError, RemoteProtocolError

__all__ = [
    "CID_SIZE",
    "MAX_CIDS_PER_WANT",
    "MAX_OUTSTANDING_PER_STREAM",
    "MAX_REASON_SIZE",
    "MAX_REQUEST_FRAME_SIZE",
    "MAX_RESPONSE_FRAME_SIZE",
    "MAX_STREAMS_PER_PEER",
    "PROTOCOL_ID",
    "Abort",
    "BlockData",
    "DontHave",
    "FrameDecoder",
    "Message",
    "MessageType",
    "Want",
    "WireError",
    "encode",
    "encode_block_header",
]

PROTOCOL_ID = "/remixnet/blocks/1.0.0"
CID_SIZE = BINARY_SIZE  # 36: 01, codec, 12 20, sha2-256 digest
MAX_CIDS_PER_WANT = 64
MAX_REASON_SIZE = 64
# Protocol limits a server enforces (docs/protocol.md ("Block exchange"), "Limits").
MAX_OUTSTANDING_PER_STREAM = 256
MAX_STREAMS_PER_PEER = 4
# The largest frame each side may send: what a decoder on the other side accepts.
MAX_REQUEST_FRAME_SIZE = 1 + MAX_CIDS_PER_WANT * CID_SIZE  # WANT is the largest request
MAX_RESPONSE_FRAME_SIZE = 1 + CID_SIZE + MAX_BLOCK_SIZE  # BLOCK is the largest response
# Our frames are below 2**21, so a length is at most three varint bytes.
_MAX_VARINT_BYTES = 3
_REASON = re.compile(rb"[a-z0-9-]{1,64}")
_BLOCK_TYPE = bytes((0x02,))


class WireError(RemoteProtocolError):
    """The peer sent bytes that are not a valid frame, or a message it must not send."""


class MessageType(IntEnum):
    WANT = 0x01
    BLOCK = 0x02
    DONT_HAVE = 0x03
    ABORT = 0x04


@dataclass(frozen=True, slots=True)
class Want:
    """Asks for blocks; the server answers each CID once with ``BlockData`` or ``DontHave``."""

    cids: tuple[Cid, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.cids) <= MAX_CIDS_PER_WANT:
            raise LocalProtocolError("bad-want-size", str(len(self.cids)))


@dataclass(frozen=True, slots=True)
class BlockData:
    """A block the server has. Not verified here: the fetcher hashes it against ``cid``."""

    cid: Cid
    data: bytes

    def __post_init__(self) -> None:
        if len(self.data) > MAX_BLOCK_SIZE:
            raise LocalProtocolError("block-too-large", str(len(self.data)))


@dataclass(frozen=True, slots=True)
class DontHave:
    """The server does not have (or will not serve) this block."""

    cid: Cid


@dataclass(frozen=True, slots=True)
class Abort:
    """The sender is closing the stream for ``reason`` (kebab-case, ``[a-z0-9-]``)."""

    reason: str

    def __post_init__(self) -> None:
        if _REASON.fullmatch(self.reason.encode("ascii", "replace")) is None:
            raise LocalProtocolError("bad-reason", repr(self.reason)[:80])


Message = Want | BlockData | DontHave | Abort


# --- encoding ---------------------------------------------------------------


def encode(message: Message) -> bytes:
    """The bytes of one frame carrying ``message``."""
    if isinstance(message, BlockData):  # the hot path: one copy of the block
        return b"".join((encode_block_header(message.cid, len(message.data)), message.data))
    if isinstance(message, Want):
        body = b"".join(cid.to_bytes() for cid in message.cids)
        kind = MessageType.WANT
    elif isinstance(message, DontHave):
        body = message.cid.to_bytes()
        kind = MessageType.DONT_HAVE
    elif isinstance(message, Abort):
        body = message.reason.encode("ascii")
        kind = MessageType.ABORT
    else:  # pragma: no cover - the union is closed
        raise LocalProtocolError("unknown-message", type(message).__name__)
    return encode_varint(1 + len(body)) + bytes((kind,)) + body


def encode_block_header(cid: Cid, size: int) -> bytes:
    """The bytes of a ``BlockData`` frame that come before a block of ``size`` bytes.

    A sender may write them and then the block itself, without joining the two.
    """
    if not 0 <= size <= MAX_BLOCK_SIZE:
        raise LocalProtocolError("block-too-large", str(size))
    cid_bytes = cid.to_bytes()
    return b"".join((encode_varint(1 + len(cid_bytes) + size), _BLOCK_TYPE, cid_bytes))


# --- decoding ---------------------------------------------------------------


class FrameDecoder:
    """Bytes in (any pieces), messages out. One per stream direction.

    ``max_frame_size`` is what the other side may send: a server decodes
    requests with ``MAX_REQUEST_FRAME_SIZE``, a client decodes responses with
    ``MAX_RESPONSE_FRAME_SIZE``. After ``next_message`` returns None the
    decoder holds less than one frame. The pieces fed are kept as they are and
    a block's bytes are copied once, out of them, into the ``BlockData``.
    """

    __slots__ = ("_chunks", "_max_frame_size", "_offset", "_size")

    def __init__(self, *, max_frame_size: int) -> None:
        if not 1 <= max_frame_size <= MAX_RESPONSE_FRAME_SIZE:
            raise LocalProtocolError("bad-max-frame-size", str(max_frame_size))
        self._max_frame_size = max_frame_size
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of the first chunk already consumed
        self._size = 0  # bytes buffered in all chunks, after the offset

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as a message."""
        return self._size

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes; then call ``next_message`` until it returns None."""
        if data:
            self._chunks.append(bytes(data))  # no copy when ``data`` is bytes
            self._size += len(data)

    def next_message(self) -> Message | None:
        """The next complete message, or None if more bytes are needed.

        Raises ``WireError`` for anything invalid; the stream is then unusable.
        """
        header = self._peek(_MAX_VARINT_BYTES + 1)
        length, varint_size = _read_length(header, self._max_frame_size)
        if length is None or self._size < varint_size + length:
            return None
        kind = header[varint_size]
        self._take(varint_size + 1)
        size = length - 1
        if kind == MessageType.BLOCK and CID_SIZE <= size <= CID_SIZE + MAX_BLOCK_SIZE:
            cid = _cid(memoryview(self._take(CID_SIZE)))
            return BlockData(cid, self._take(size - CID_SIZE))
        return _decode_body(kind, memoryview(self._take(size)))

    def close(self) -> None:
        """The stream ended: raise ``WireError`` if it ended inside a frame."""
        if self._size:
            raise WireError("truncated-frame", f"{self._size} bytes left")

    def _peek(self, count: int) -> bytes:
        """Up to ``count`` bytes from the front, not consumed."""
        front = b""
        offset = self._offset
        for chunk in self._chunks:
            front += chunk[offset : offset + count - len(front)]
            offset = 0
            if len(front) >= count:
                break
        return front

    def _take(self, count: int) -> bytes:
        """Consume ``count`` buffered bytes as one bytes object (at most one copy)."""
        if count == 0:
            return b""
        chunks = self._chunks
        first = chunks[0]
        start = self._offset
        self._size -= count
        if start + count <= len(first):
            if start == 0 and count == len(first):
                chunks.popleft()
                return first  # a whole piece: no copy at all
            self._offset = start + count
            if self._offset == len(first):
                chunks.popleft()
                self._offset = 0
            return first[start : start + count]
        parts: list[bytes | memoryview] = [memoryview(first)[start:]]
        remaining = count - (len(first) - start)
        chunks.popleft()
        self._offset = 0
        while remaining:
            chunk = chunks[0]
            if len(chunk) <= remaining:
                parts.append(chunk)
                remaining -= len(chunk)
                chunks.popleft()
            else:
                parts.append(memoryview(chunk)[:remaining])
                self._offset = remaining
                remaining = 0
        return b"".join(parts)


def _read_length(header: bytes, max_frame_size: int) -> tuple[int | None, int]:
    """The frame length at the front of ``header`` and its size; (None, 0) if incomplete."""
    value = 0
    for index in range(min(len(header), _MAX_VARINT_BYTES)):
        byte = header[index]
        value |= (byte & 0x7F) << (7 * index)
        if byte & 0x80:
            continue
        if byte == 0 and index > 0:
            raise WireError("non-minimal-varint")
        if value == 0:
            raise WireError("empty-frame")
        if value > max_frame_size:
            raise WireError("frame-too-large", f"{value} > {max_frame_size}")
        return value, index + 1
    if len(header) >= _MAX_VARINT_BYTES:
        raise WireError("frame-too-large", "length varint longer than 3 bytes")
    if value > max_frame_size:  # the bytes so far already say too much
        raise WireError("frame-too-large", f"at least {value}")
    return None, 0


def _decode_body(kind: int, body: memoryview) -> Message:
    size = len(body)
    if kind == MessageType.BLOCK:
        if size < CID_SIZE:
            raise WireError("bad-message-size", f"block message of {size} bytes")
        if size - CID_SIZE > MAX_BLOCK_SIZE:
            raise WireError("block-too-large", str(size - CID_SIZE))
        return BlockData(_cid(body[:CID_SIZE]), bytes(body[CID_SIZE:]))
    if kind == MessageType.WANT:
        if size == 0 or size % CID_SIZE:
            raise WireError("bad-message-size", f"want of {size} bytes")
        if size // CID_SIZE > MAX_CIDS_PER_WANT:
            raise WireError("too-many-cids", str(size // CID_SIZE))
        return Want(tuple(_cid(body[i : i + CID_SIZE]) for i in range(0, size, CID_SIZE)))
    if kind == MessageType.DONT_HAVE:
        if size != CID_SIZE:
            raise WireError("bad-message-size", f"dont-have of {size} bytes")
        return DontHave(_cid(body))
    if kind == MessageType.ABORT:
        reason = bytes(body)
        if _REASON.fullmatch(reason) is None:
            raise WireError("bad-reason", repr(reason[:MAX_REASON_SIZE]))
        return Abort(reason.decode("ascii"))
    raise WireError("unknown-message-type", hex(kind))


def _cid(data: memoryview) -> Cid:
    raw = bytes(data)
    if raw[0] != 0x01:  # from_bytes also takes 34-byte CIDv0; the wire carries only v1
        raise WireError("bad-cid", raw[:4].hex())
    try:
        return Cid.from_bytes(raw)
    except InvalidCid as error:
        raise WireError("bad-cid", error.reason) from error
