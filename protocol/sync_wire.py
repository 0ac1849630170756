"""Messages of the catch-up sync protocol ``/remixnet/sync/1.0.0`` as bytes.

This module owns the wire format of range-based set reconciliation (after
Negentropy and Aljoscha Meyer's "Range-Based Set Reconciliation");
``docs/protocol.md ("Catch-up sync")`` is the normative description and its worked example
is checked by ``tests/test_sync.py``. The messages as typed values, and what makes
one valid, are ``protocol/sync_messages.py``; ``protocol/sync.py`` runs the sessions.

In short, a message is one kind byte and a list of ranges that tile the
universe of items, each range being ``upper bound, mode, payload``::

    message := kind (1 byte: INIT 1, RANGES 2, DONE 3, STOP 4)  range*
    range   := bound  mode (varint: SKIP 0, FINGERPRINT 1, ID_LIST 2, DIFF 3)  payload
    bound   := varint(0) varint(0)                      the infinity bound
             | varint(1 + ts - lower.ts) varint(k) prefix[k]   k <= 32, no trailing 00

Invariants:

* The encoding is canonical (minimal varints, minimal bit fields, a final skip
  to infinity omitted), and ``decode_message`` accepts exactly the bytes
  ``encode_message`` produces: a valid ``Message`` (``protocol/sync_messages.py``
  holds the rules), never a half-checked one.
* ``decode_message`` checks the size, range and id bounds of ``SyncLimits``
  before it allocates, and raises only ``SyncError``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from protocol.errors import LocalProtocolError
from protocol.sync_messages import (
    FINGERPRINT_SIZE,
    ID_SIZE,
    INFINITY,
    MAX_TIMESTAMP,
    MINIMUM,
    WORK_RANGES,
    Bound,
    Diff,
    Fingerprint,
    IdList,
    Kind,
    Message,
    Mode,
    Range,
    Skip,
    SyncError,
    SyncItem,
)

PROTOCOL_ID: Final = "/remixnet/sync/1.0.0"
_ID_MODULUS: Final = 2**256
_MAX_UINT64: Final = 2**64 - 1
# The largest encoded bound: 1 + delta <= 2**53 takes 8 varint bytes, then 1 + 32.
MAX_BOUND_SIZE: Final = 8 + 1 + ID_SIZE
# Room a builder keeps to close a message: a pending skip, then a fingerprint to infinity.
_CLOSE_BYTES: Final = (MAX_BOUND_SIZE + 1) + (2 + 1 + FINGERPRINT_SIZE)
_CLOSE_RANGES: Final = 2
_MODE: Final[dict[type, Mode]] = {
    Skip: Mode.SKIP,
    Fingerprint: Mode.FINGERPRINT,
    IdList: Mode.ID_LIST,
    Diff: Mode.DIFF,
}


def lift(record_id: bytes) -> int:
    """What an id adds to a fingerprint sum: its sha2-256 as a little-endian integer.

    Hashing first keeps sums of structured or adversarially close ids apart
    (Meyer's "lifting" of items into the fingerprint monoid).
    """
    return int.from_bytes(hashlib.sha256(record_id).digest(), "little")


def fingerprint_of(lifted_sum: int, count: int) -> bytes:
    """The fingerprint of ``count`` items whose lifted ids sum to ``lifted_sum``."""
    data = (lifted_sum % _ID_MODULUS).to_bytes(32, "little") + _varint(count)
    return hashlib.sha256(data).digest()[:FINGERPRINT_SIZE]


# --- encoding --------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_size(value: int) -> int:
    """The number of bytes of ``value`` as an unsigned LEB128 varint."""
    return max(1, (value.bit_length() + 6) // 7)


def _encode_bound(out: bytearray, bound: Bound, lower: Bound) -> None:
    if bound.is_infinity:
        out += b"\x00\x00"
        return
    out += _varint(1 + bound.created_ms - lower.created_ms)
    out += _varint(len(bound.id_prefix))
    out += bound.id_prefix


def _encode_items(out: bytearray, items: tuple[SyncItem, ...], lower: Bound) -> None:
    out += _varint(len(items))
    previous = lower.created_ms
    for item in items:
        out += _varint(item.created_ms - previous)
        out += item.record_id
        previous = item.created_ms


def _encode_range(out: bytearray, item_range: Range, lower: Bound) -> None:
    _encode_bound(out, item_range.upper, lower)
    out.append(_MODE[type(item_range)])
    if isinstance(item_range, Fingerprint):
        out += item_range.fingerprint
    elif isinstance(item_range, IdList):
        _encode_items(out, item_range.items, lower)
    elif isinstance(item_range, Diff):
        _encode_items(out, item_range.items, lower)
        bits = item_range.lacking
        out += _varint(len(bits))
        packed = bytearray((len(bits) + 7) // 8)
        for index, bit in enumerate(bits):
            if bit:
                packed[index >> 3] |= 1 << (index & 7)
        out += packed


def encode_message(message: Message) -> bytes:
    """The canonical bytes of ``message``."""
    out = bytearray((message.kind,))
    ranges = message.ranges
    if isinstance(ranges[-1], Skip):  # a final skip to infinity is implicit
        ranges = ranges[:-1]
    lower = MINIMUM
    for item_range in ranges:
        _encode_range(out, item_range, lower)
        lower = item_range.upper
    return bytes(out)


# --- limits and the builder --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncLimits:
    """Bounds on one session, and how a side splits ranges.

    The bounds are protocol constants: a node uses the defaults, which is what
    its peers expect (tests shrink them on both sides). ``max_message_size``,
    ``max_ranges`` and ``max_ids`` bound every message either way;
    ``max_messages`` bounds the messages of a session (both directions);
    ``max_differences`` bounds what one session learns (the side reaching it
    ends the session with ``STOP``). ``buckets`` and ``id_list_threshold`` only
    shape what this side sends.
    """

    max_message_size: int = 256 * 1024
    max_ranges: int = 8192
    max_ids: int = 8192  # items listed per message; also bits of DIFF bit fields
    max_messages: int = 1024
    max_differences: int = 262_144
    buckets: int = 16
    id_list_threshold: int = 20

    def __post_init__(self) -> None:
        if not 2 <= self.buckets <= 256 or not self.buckets <= self.id_list_threshold:
            raise LocalProtocolError("bad-limits", "2 <= buckets <= id_list_threshold")
        if not self.id_list_threshold - 1 <= self.max_ids < 2**21:  # counts fit 3 varint bytes
            raise LocalProtocolError("bad-limits", "id_list_threshold - 1 <= max_ids < 2**21")
        split = self.buckets * (MAX_BOUND_SIZE + 1 + FINGERPRINT_SIZE)
        id_list = MAX_BOUND_SIZE + 1 + 3 + (self.id_list_threshold - 1) * (8 + ID_SIZE)
        smallest = 1 + (MAX_BOUND_SIZE + 1) + max(split, id_list) + _CLOSE_BYTES
        if self.max_message_size < smallest:
            raise LocalProtocolError("bad-limits", f"max_message_size must be >= {smallest}")
        if self.max_ranges < self.buckets + 1 + _CLOSE_RANGES:
            raise LocalProtocolError("bad-limits", "max_ranges must be >= buckets + 3")
        if self.max_messages < 2 or self.max_differences < 1:
            raise LocalProtocolError("bad-limits", "max_messages >= 2, max_differences >= 1")


class MessageBuilder:
    """Encodes a message range by range within ``limits``, always keeping room to close it.

    Ranges are added in ascending order. ``skip`` extends a pending skip;
    ``try_add`` encodes the pending skip and a group of ranges, or refuses
    (changing nothing) when the group would not leave room for ``close``.
    """

    __slots__ = ("_bits", "_body", "_emitted", "_has_work", "_ids", "_limits", "_lower", "_ranges")

    def __init__(self, limits: SyncLimits) -> None:
        self._limits = limits
        self._body = bytearray()
        self._emitted = MINIMUM  # the upper bound of the last encoded range
        self._lower = MINIMUM  # where the next range starts: past any pending skip
        self._ranges = self._ids = self._bits = 0
        self._has_work = False

    @property
    def lower(self) -> Bound:
        return self._lower

    @property
    def has_work(self) -> bool:
        """Whether a FINGERPRINT or ID_LIST range was added (the peer must answer)."""
        return self._has_work

    def skip(self, upper: Bound) -> None:
        self._lower = upper

    def _pending(self) -> bytearray:
        out = bytearray()
        if self._lower != self._emitted:
            _encode_range(out, Skip(self._lower), self._emitted)
        return out

    def room(self) -> tuple[int, int, int, int]:
        """Bytes, ranges, ids and bits still free for ranges added after the pending skip."""
        limits = self._limits
        pending = self._pending()
        used = 1 + len(self._body) + len(pending) + _CLOSE_BYTES
        ranges = self._ranges + (1 if pending else 0) + _CLOSE_RANGES
        return (
            limits.max_message_size - used,
            limits.max_ranges - ranges,
            limits.max_ids - self._ids,
            limits.max_ids - self._bits,
        )

    def try_add(self, ranges: Sequence[Range]) -> bool:
        """Encode the pending skip and ``ranges`` if they fit; otherwise change nothing."""
        out = self._pending()
        count = 1 if out else 0
        lower = self._lower
        ids = bits = 0
        for item_range in ranges:
            _encode_range(out, item_range, lower)
            lower = item_range.upper
            count += 1
            if isinstance(item_range, IdList | Diff):
                ids += len(item_range.items)
            if isinstance(item_range, Diff):
                bits += len(item_range.lacking)
        limits = self._limits
        if (
            1 + len(self._body) + len(out) + _CLOSE_BYTES > limits.max_message_size
            or self._ranges + count + _CLOSE_RANGES > limits.max_ranges
            or self._ids + ids > limits.max_ids
            or self._bits + bits > limits.max_ids
        ):
            return False
        self._body += out
        self._ranges += count
        self._ids += ids
        self._bits += bits
        self._emitted = self._lower = lower
        self._has_work = self._has_work or any(isinstance(r, WORK_RANGES) for r in ranges)
        return True

    def close(self, fingerprint: bytes) -> None:
        """End the message with one fingerprint over everything from ``lower`` to infinity."""
        out = self._pending()
        self._ranges += 2 if out else 1
        _encode_range(out, Fingerprint(INFINITY, fingerprint), self._lower)
        self._body += out
        self._emitted = self._lower = INFINITY
        self._has_work = True

    def finish(self, kind: Kind) -> bytes:
        """The message's bytes. A pending skip to infinity is implicit."""
        if (kind in (Kind.INIT, Kind.RANGES)) != self._has_work:
            raise LocalProtocolError("bad-mode-for-kind", f"{kind.name}, work: {self._has_work}")
        return bytes((kind,)) + self._body


# --- decoding --------------------------------------------------------------------


class _Reader:
    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def take(self, size: int) -> bytes:
        end = self._offset + size
        if end > len(self._data):
            raise SyncError("truncated", f"{size} bytes needed at offset {self._offset}")
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def varint(self) -> int:
        value = shift = 0
        data, offset = self._data, self._offset
        while True:
            if offset >= len(data):
                raise SyncError("truncated", "inside a varint")
            byte = data[offset]
            offset += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 63:
                raise SyncError("bad-varint", "longer than 64 bits")
        if byte == 0 and shift:
            raise SyncError("bad-varint", "not minimal")
        if value > _MAX_UINT64:
            raise SyncError("bad-varint", "longer than 64 bits")
        self._offset = offset
        return value

    def timestamp(self, base: int, delta: int) -> int:
        if base + delta > MAX_TIMESTAMP:
            raise SyncError("timestamp-out-of-range", str(base + delta))
        return base + delta

    def bound(self, lower: Bound) -> Bound:
        encoded = self.varint()
        length = self.varint()
        if encoded == 0:
            if length:
                raise SyncError("bad-bound", "the infinity bound has an id prefix")
            return INFINITY
        created_ms = self.timestamp(lower.created_ms, encoded - 1)
        if length > ID_SIZE:
            raise SyncError("bad-bound", f"id prefix of {length} bytes")
        prefix = self.take(length)
        if prefix and prefix[-1] == 0:
            raise SyncError("non-canonical", "id prefix ends with a zero byte")
        return Bound(created_ms, prefix)

    def items(self, lower: Bound, room: int) -> tuple[SyncItem, ...]:
        count = self.varint()
        if count > room:
            raise SyncError("too-many-ids", f"{count} more ids than the {room} allowed")
        if count * (1 + ID_SIZE) > self.remaining:
            raise SyncError("truncated", f"{count} ids")
        previous = lower.created_ms
        items = []
        for _ in range(count):
            previous = self.timestamp(previous, self.varint())
            items.append(SyncItem(previous, self.take(ID_SIZE)))
        return tuple(items)

    def bits(self, room: int) -> tuple[bool, ...]:
        count = self.varint()
        if count > room:
            raise SyncError("too-many-ids", f"a bit field of {count} bits")
        packed = self.take((count + 7) // 8)
        if count % 8 and packed[-1] >> (count % 8):
            raise SyncError("non-canonical", "bits set past the end of a bit field")
        return tuple(bool(packed[i >> 3] >> (i & 7) & 1) for i in range(count))


def decode_message(data: bytes, limits: SyncLimits) -> Message:
    """The message encoded by ``data``. Raises ``SyncError`` and nothing else."""
    if len(data) > limits.max_message_size:
        raise SyncError("message-too-large", f"{len(data)} > {limits.max_message_size}")
    reader = _Reader(bytes(data))
    kind_byte = reader.take(1)[0]
    try:
        kind = Kind(kind_byte)
    except ValueError:
        raise SyncError("unknown-kind", hex(kind_byte)) from None
    ranges: list[Range] = []
    lower = MINIMUM
    ids = bits = 0
    while reader.remaining:
        if lower.is_infinity:
            raise SyncError("trailing-bytes", f"{reader.remaining} bytes after infinity")
        if len(ranges) == limits.max_ranges:
            raise SyncError("too-many-ranges", f"more than {limits.max_ranges}")
        upper = reader.bound(lower)
        mode = reader.varint()
        item_range: Range
        if mode == Mode.SKIP:
            item_range = Skip(upper)
        elif mode == Mode.FINGERPRINT:
            item_range = Fingerprint(upper, reader.take(FINGERPRINT_SIZE))
        elif mode == Mode.ID_LIST:
            items = reader.items(lower, limits.max_ids - ids)
            ids += len(items)
            item_range = IdList(upper, items)
        elif mode == Mode.DIFF:
            items = reader.items(lower, limits.max_ids - ids)
            ids += len(items)
            lacking = reader.bits(limits.max_ids - bits)
            bits += len(lacking)
            item_range = Diff(upper, items, lacking)
        else:
            raise SyncError("unknown-mode", str(mode))
        ranges.append(item_range)
        lower = upper
    if ranges and isinstance(ranges[-1], Skip) and lower.is_infinity:
        raise SyncError("non-canonical", "a final skip to infinity is implicit")
    if not lower.is_infinity:
        ranges.append(Skip(INFINITY))
    try:
        return Message(kind, tuple(ranges))
    except LocalProtocolError as error:  # the shared validation of ranges and items
        raise SyncError(error.reason, error.detail) from None
