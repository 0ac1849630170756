"""Messages of the catch-up sync protocol ``/remixnet/sync/1.0.0`` as typed values.

This module owns what a sync message is: items, bounds, the four kinds of
range, and the rules that make a message valid. ``protocol/sync_wire.py``
turns messages into bytes and back; ``protocol/sync.py`` runs the sessions;
``docs/protocol.md ("Catch-up sync")`` is the normative description.

Invariants:

* Items are ``(created_ms, record_id)`` with ``0 <= created_ms < 2**53`` and a
  32-byte ``record_id``; they sort by that pair. Bounds sort the same way, a
  bound's id prefix padded with zero bytes.
* A ``Message`` is valid by construction: its ranges tile ``[MINIMUM,
  INFINITY)`` with strictly increasing upper bounds, no two adjacent skips, the
  items of every list strictly ascending inside their range, no id twice, and
  only the modes its kind allows; otherwise constructing it raises
  ``LocalProtocolError``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from protocol.cid import DIGEST_SIZE, RAW, Cid
from protocol.errors import LocalProtocolError, RemoteProtocolError

ID_SIZE: Final = DIGEST_SIZE  # the sha2-256 digest of a record id (a raw CIDv1)
FINGERPRINT_SIZE: Final = 16
MAX_TIMESTAMP: Final = 2**53 - 1  # records.MAX_SAFE_INTEGER
INFINITY_MS: Final = 2**53  # the timestamp of the infinity bound: above every item

ItemKey: TypeAlias = tuple[int, bytes]  # (created_ms, record_id): the sort key of an item


class SyncError(RemoteProtocolError):
    """The peer sent a sync message that is malformed or breaks the protocol.

    ``reason`` is one of: ``message-too-large``, ``truncated``, ``unknown-kind``,
    ``unknown-mode``, ``bad-varint``, ``bad-bound``, ``timestamp-out-of-range``,
    ``non-canonical``, ``trailing-bytes``, ``ranges-out-of-order``, ``not-tiling``,
    ``items-out-of-order``, ``item-outside-range``, ``duplicate-id``,
    ``bad-mode-for-kind``, ``too-many-ranges``, ``too-many-ids`` (from decoding);
    ``unexpected-message``, ``too-many-messages``, ``unexpected-diff``,
    ``bad-bitfield-length``, ``diff-lists-known-item``, ``timestamp-mismatch``
    (from a session).
    """


class Kind(enum.IntEnum):
    """What a message is in the session (docs/protocol.md ("Catch-up sync"), "State machine")."""

    INIT = 1  # the initiator's first message
    RANGES = 2  # holds at least one FINGERPRINT or ID_LIST range: the peer must answer
    DONE = 3  # holds only SKIP and DIFF ranges: reconciliation is complete
    STOP = 4  # like DONE, but the sender stopped at a limit; some ranges are unreconciled


class Mode(enum.IntEnum):
    SKIP = 0
    FINGERPRINT = 1
    ID_LIST = 2
    DIFF = 3


@dataclass(frozen=True, slots=True, order=True)
class SyncItem:
    """One record as sync sees it. Items sort by ``(created_ms, record_id)``.

    ``record_id`` is the 32-byte sha2-256 digest of the record id: record ids are
    always raw CIDv1 sha2-256, so the four CID prefix bytes carry nothing.
    """

    created_ms: int
    record_id: bytes

    def __post_init__(self) -> None:
        if type(self.created_ms) is not int or not 0 <= self.created_ms <= MAX_TIMESTAMP:
            raise LocalProtocolError("bad-item", f"created_ms {self.created_ms!r}")
        if type(self.record_id) is not bytes or len(self.record_id) != ID_SIZE:
            raise LocalProtocolError("bad-item", f"record_id must be {ID_SIZE} bytes")

    @classmethod
    def for_record(cls, created_ms: int, record_id: Cid) -> SyncItem:
        """The item of the record with this id (a raw CID) and creation time."""
        if record_id.codec != RAW:
            raise LocalProtocolError("bad-item", "a record id is a raw CID")
        return cls(created_ms, record_id.digest)

    @property
    def cid(self) -> Cid:
        """The record id as a CID."""
        return Cid(RAW, self.record_id)


@dataclass(frozen=True, slots=True, order=True)
class Bound:
    """A point between items: an item is at or above it when ``(created_ms, record_id)``
    is at least ``(created_ms, id_prefix + zero bytes)``.

    ``id_prefix`` is canonical (no trailing zero byte), so bounds compare with each
    other and with ``ItemKey`` tuples by plain tuple order.
    """

    created_ms: int
    id_prefix: bytes = b""

    def __post_init__(self) -> None:
        if type(self.created_ms) is not int or not 0 <= self.created_ms <= INFINITY_MS:
            raise LocalProtocolError("bad-bound", f"created_ms {self.created_ms!r}")
        prefix = self.id_prefix
        if type(prefix) is not bytes or len(prefix) > ID_SIZE:
            raise LocalProtocolError("bad-bound", "id_prefix must be at most 32 bytes")
        if prefix and prefix[-1] == 0:
            raise LocalProtocolError("non-canonical", "id_prefix ends with a zero byte")
        if self.created_ms == INFINITY_MS and prefix:
            raise LocalProtocolError("bad-bound", "the infinity bound has no id prefix")

    @property
    def is_infinity(self) -> bool:
        return self.created_ms == INFINITY_MS

    @property
    def key(self) -> ItemKey:
        return (self.created_ms, self.id_prefix)


MINIMUM: Final = Bound(0)
INFINITY: Final = Bound(INFINITY_MS)


def separator_bound(below: ItemKey, above: ItemKey) -> Bound:
    """The shortest bound ``b`` with ``below < b <= above`` (``below < above``)."""
    if below[0] != above[0]:
        return Bound(above[0])
    low, high = below[1], above[1]
    shared = 0
    while low[shared] == high[shared]:  # the ids differ, so this stops inside them
        shared += 1
    return Bound(above[0], high[: shared + 1])  # high[shared] > low[shared] >= 0


# --- ranges and messages --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Skip:
    """Nothing more to do in this range."""

    upper: Bound


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The sender's fingerprint of its items in this range."""

    upper: Bound
    fingerprint: bytes

    def __post_init__(self) -> None:
        if type(self.fingerprint) is not bytes or len(self.fingerprint) != FINGERPRINT_SIZE:
            raise LocalProtocolError("bad-fingerprint", "a fingerprint is 16 bytes")


@dataclass(frozen=True, slots=True)
class IdList:
    """All the sender's items in this range; the receiver answers with ``Diff``."""

    upper: Bound
    items: tuple[SyncItem, ...]


@dataclass(frozen=True, slots=True)
class Diff:
    """The answer to an ``IdList`` range (or the start of one).

    ``items``: the sender's items in this range that the ``IdList`` did not hold.
    ``lacking[i]``: whether the sender lacks the i-th listed item in this range.
    """

    upper: Bound
    items: tuple[SyncItem, ...]
    lacking: tuple[bool, ...]


Range: TypeAlias = Skip | Fingerprint | IdList | Diff
WORK_RANGES: Final = (Fingerprint, IdList)  # ranges the receiver must answer
_ALLOWED: Final[dict[Kind, tuple[type, ...]]] = {
    Kind.INIT: (Skip, Fingerprint, IdList),
    Kind.RANGES: (Skip, Fingerprint, IdList, Diff),
    Kind.DONE: (Skip, Diff),
    Kind.STOP: (Skip, Diff),
}


@dataclass(frozen=True, slots=True)
class Message:
    """One sync message. ``ranges`` tile the universe; the last one ends at ``INFINITY``."""

    kind: Kind
    ranges: tuple[Range, ...]

    def __post_init__(self) -> None:
        _check_message(self.kind, self.ranges)


def _check_message(kind: Kind, ranges: Sequence[Range]) -> None:
    if not isinstance(kind, Kind):
        raise LocalProtocolError("unknown-kind", repr(kind))
    if not ranges or ranges[-1].upper != INFINITY:
        raise LocalProtocolError("not-tiling", "the last range must end at infinity")
    allowed = _ALLOWED[kind]
    seen: set[bytes] = set()
    lower = MINIMUM
    previous: Range | None = None
    for index, item_range in enumerate(ranges):
        if type(item_range) not in allowed:
            raise LocalProtocolError("bad-mode-for-kind", f"{type(item_range).__name__} in {kind}")
        if not item_range.upper > lower:
            raise LocalProtocolError("ranges-out-of-order", f"range {index}")
        if isinstance(item_range, Skip) and isinstance(previous, Skip):
            raise LocalProtocolError("non-canonical", f"adjacent skips at range {index}")
        if isinstance(item_range, IdList | Diff):
            _check_items(item_range.items, lower, item_range.upper, seen)
        previous = item_range
        lower = item_range.upper
    if kind in (Kind.INIT, Kind.RANGES) and not any(isinstance(r, WORK_RANGES) for r in ranges):
        raise LocalProtocolError("bad-mode-for-kind", f"{kind.name} without a range to answer")


def _check_items(items: tuple[SyncItem, ...], lower: Bound, upper: Bound, seen: set[bytes]) -> None:
    previous = lower.key
    for position, item in enumerate(items):
        key = (item.created_ms, item.record_id)
        if position == 0:
            if key < previous:
                raise LocalProtocolError("item-outside-range", item.record_id.hex())
        elif key <= previous:
            raise LocalProtocolError("items-out-of-order", item.record_id.hex())
        if item.record_id in seen:
            raise LocalProtocolError("duplicate-id", item.record_id.hex())
        seen.add(item.record_id)
        previous = key
    if items and not previous < upper.key:
        raise LocalProtocolError("item-outside-range", items[-1].record_id.hex())
