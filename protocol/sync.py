"""Catch-up sync ``/remixnet/sync/1.0.0``: the record set and one side of a session.

Sans-IO, after h11: ``SyncSession`` takes message bytes and returns message
bytes; the node carries them over a libp2p stream and then fetches the records
the session says it ``need``s. The wire format is ``protocol/sync_wire.py``;
``docs/protocol.md ("Catch-up sync")`` explains the algorithm (range-based set
reconciliation, as Negentropy does it) and is normative.

This module owns:

* ``RecordSet``: the sorted items of one node with range fingerprints in
  O(log n) (prefix sums of the ids, refreshed lazily from the lowest insert, so
  appending recent records is cheap).
* ``SyncSession``: one side of one reconciliation. Its state machine is the
  table ``_ON_RECEIVE`` (what a message of each kind does in each state) and
  ``_AFTER_SENDING``; a pair not in the table is the peer's fault.

Invariants:

* Cost follows the difference: ranges whose fingerprints match end at once;
  only mismatching ranges are split (into ``buckets``) or listed (below
  ``id_list_threshold`` items).
* Every message sent is within ``SyncLimits``; work that does not fit is folded
  into one fingerprint from where it stopped to infinity and done in later rounds.
* Both sides learn the same facts: every difference is learned from a ``DIFF``
  range, by its sender when building it and by its receiver when reading it, so
  at the end ``a.have == b.need`` and ``a.need == b.have``, even after a STOP.
* A message is applied entirely or not at all: a ``SyncError`` leaves ``have``
  and ``need`` as they were, and the session ``FAILED``.
* A session reconciles a copy of the record set taken when it began, so
  records arriving by gossip meanwhile cannot make the tail of the set move
  under it; the next session (or gossip itself) covers them. The node skips
  ``need`` ids it has received since.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate, islice
from typing import Final

from protocol.errors import LocalProtocolError
from protocol.sync_messages import (
    ID_SIZE,
    INFINITY,
    MINIMUM,
    Bound,
    Diff,
    Fingerprint,
    IdList,
    ItemKey,
    Kind,
    Message,
    Range,
    SyncError,
    SyncItem,
    separator_bound,
)
from protocol.sync_wire import (
    MAX_BOUND_SIZE,
    MessageBuilder,
    SyncLimits,
    decode_message,
    fingerprint_of,
    lift,
    varint_size,
)

__all__ = [
    "DEFAULT_LIMITS",
    "RecordSet",
    "Role",
    "SyncError",
    "SyncItem",
    "SyncLimits",
    "SyncSession",
    "SyncState",
    "SyncStatistics",
]

DEFAULT_LIMITS: Final = SyncLimits()
# A DIFF range besides its items and bits: bound, mode, two counts of at most 3 bytes.
_DIFF_OVERHEAD: Final = MAX_BOUND_SIZE + 1 + 3 + 3


class RecordSet:
    """The items of one node, sorted by ``(created_ms, record_id)``, with fingerprints.

    An id appears once; adding it again with another ``created_ms`` is a
    ``LocalProtocolError`` (a record id fixes its creation time).
    """

    __slots__ = ("_clean", "_created", "_keys", "_sums")

    def __init__(self, items: Iterable[SyncItem] = ()) -> None:
        created: dict[bytes, int] = {}
        for item in items:
            if not isinstance(item, SyncItem):
                raise LocalProtocolError("bad-item", type(item).__name__)
            known = created.setdefault(item.record_id, item.created_ms)
            if known != item.created_ms:
                raise LocalProtocolError("conflicting-item", item.record_id.hex())
        self._created = created
        self._keys: list[ItemKey] = sorted(zip(created.values(), created.keys(), strict=True))
        # _sums[i] is the sum of the first i lifted ids, valid for i <= _clean.
        self._sums = [0]
        self._clean = 0

    def copy(self) -> RecordSet:
        """An independent copy (O(n), a few milliseconds for 100 000 items)."""
        self._refresh()
        duplicate = RecordSet()
        duplicate._created = dict(self._created)
        duplicate._keys = list(self._keys)
        duplicate._sums = list(self._sums)
        duplicate._clean = self._clean
        return duplicate

    def insert(self, item: SyncItem) -> bool:
        """Add ``item``; False if it was already there. O(n) list insert, lazy sums."""
        if not isinstance(item, SyncItem):
            raise LocalProtocolError("bad-item", type(item).__name__)
        known = self._created.get(item.record_id)
        if known is not None:
            if known != item.created_ms:
                raise LocalProtocolError("conflicting-item", item.record_id.hex())
            return False
        key = (item.created_ms, item.record_id)
        position = bisect_left(self._keys, key)
        self._keys.insert(position, key)
        self._created[item.record_id] = item.created_ms
        self._clean = min(self._clean, position)
        return True

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[SyncItem]:
        return (SyncItem(created_ms, record_id) for created_ms, record_id in self._keys)

    def __getitem__(self, index: int) -> SyncItem:
        return SyncItem(*self._keys[index])

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, SyncItem):
            return False
        return self._created.get(item.record_id) == item.created_ms

    def created_ms_of(self, record_id: bytes) -> int | None:
        """The creation time of the item with this id, or None if it is not here."""
        return self._created.get(record_id)

    def position(self, bound: Bound) -> int:
        """The index of the first item at or above ``bound``."""
        return bisect_left(self._keys, bound.key)

    def fingerprint(self, start: int, stop: int) -> bytes:
        """The fingerprint of the items ``start`` to ``stop`` (exclusive), in O(1) amortised."""
        if not 0 <= start <= stop <= len(self._keys):
            raise LocalProtocolError("bad-slice", f"{start}:{stop} of {len(self._keys)}")
        if self._clean < stop:
            self._refresh()
        return fingerprint_of(self._sums[stop] - self._sums[start], stop - start)

    def _refresh(self) -> None:
        clean = self._clean
        if clean == len(self._keys):
            return
        del self._sums[clean + 1 :]
        lifted = (lift(key[1]) for key in islice(self._keys, clean, None))
        sums = accumulate(lifted, initial=self._sums[clean])
        next(sums)  # the initial value, already in place
        self._sums.extend(sums)
        self._clean = len(self._keys)


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class SyncState(enum.Enum):
    IDLE = "idle"  # a responder before the initiator's first message
    AWAITING = "awaiting"  # we sent a message the peer must answer
    DONE = "done"  # we sent or received DONE or STOP
    FAILED = "failed"  # a SyncError was raised; the session is over


class _Action(enum.Enum):
    ANSWER = "answer"  # apply the message and build the reply
    FINISH = "finish"  # apply the message; nothing more to send


# The state machine, in one table: what a received message of each kind does in
# each state. Every pair not listed is the peer's fault (SyncError
# "unexpected-message"); receiving in DONE or FAILED is ours (LocalProtocolError).
_ON_RECEIVE: Final[Mapping[tuple[SyncState, Kind], _Action]] = {
    (SyncState.IDLE, Kind.INIT): _Action.ANSWER,
    (SyncState.AWAITING, Kind.RANGES): _Action.ANSWER,
    (SyncState.AWAITING, Kind.DONE): _Action.FINISH,
    (SyncState.AWAITING, Kind.STOP): _Action.FINISH,
}
_AFTER_SENDING: Final[Mapping[Kind, SyncState]] = {
    Kind.INIT: SyncState.AWAITING,
    Kind.RANGES: SyncState.AWAITING,
    Kind.DONE: SyncState.DONE,
    Kind.STOP: SyncState.DONE,
}


@dataclass(frozen=True, slots=True)
class SyncStatistics:
    messages_sent: int
    messages_received: int
    bytes_sent: int
    bytes_received: int


@dataclass(frozen=True, slots=True)
class _Listed:
    """An ID_LIST range we sent, with the keys it held (what a DIFF's bits refer to)."""

    lower: Bound
    upper: Bound
    keys: tuple[ItemKey, ...]


@dataclass(slots=True)
class _Learned:
    """What one message teaches; applied to the session only if the message is valid."""

    have: set[bytes] = field(default_factory=set)
    need: dict[bytes, int] = field(default_factory=dict)


class SyncSession:
    """One side of one reconciliation. Create with ``initiate`` or ``respond``.

    Feed every message from the peer to ``receive`` and send what it returns;
    when it returns None, or ``done`` is true after a send, the session is over.
    """

    __slots__ = (
        "_bytes_received",
        "_bytes_sent",
        "_have",
        "_items",
        "_limits",
        "_listed",
        "_messages_received",
        "_messages_sent",
        "_need",
        "_role",
        "_state",
        "_stopped",
    )

    def __init__(self, items: RecordSet, role: Role, limits: SyncLimits) -> None:
        if not isinstance(items, RecordSet) or not isinstance(limits, SyncLimits):
            raise LocalProtocolError("bad-argument", "a RecordSet and SyncLimits are needed")
        self._items = items.copy()  # a session reconciles the set as it was when it began
        self._role = role
        self._limits = limits
        self._state = SyncState.IDLE
        self._have: set[bytes] = set()
        self._need: dict[bytes, int] = {}
        self._listed: list[_Listed] = []
        self._stopped = False
        self._messages_sent = self._messages_received = 0
        self._bytes_sent = self._bytes_received = 0

    @classmethod
    def initiate(
        cls, items: RecordSet, *, limits: SyncLimits = DEFAULT_LIMITS
    ) -> tuple[SyncSession, bytes]:
        """A session that opens the reconciliation, and its first message (INIT)."""
        session = cls(items, Role.INITIATOR, limits)
        builder = MessageBuilder(limits)
        listed: list[_Listed] = []
        if not session._describe(builder, MINIMUM, INFINITY, 0, len(items), listed):
            raise LocalProtocolError("limits-too-small", "the first message does not fit")
        return session, session._sent(builder.finish(Kind.INIT), Kind.INIT, listed)

    @classmethod
    def respond(cls, items: RecordSet, *, limits: SyncLimits = DEFAULT_LIMITS) -> SyncSession:
        """A session that answers the peer's INIT, given to ``receive``."""
        return cls(items, Role.RESPONDER, limits)

    @property
    def role(self) -> Role:
        return self._role

    @property
    def state(self) -> SyncState:
        return self._state

    @property
    def done(self) -> bool:
        """The session is over: nothing more to send or receive."""
        return self._state is SyncState.DONE

    @property
    def complete(self) -> bool:
        """Done, and the sets were reconciled entirely (no side stopped at a limit)."""
        return self._state is SyncState.DONE and not self._stopped

    @property
    def have(self) -> frozenset[bytes]:
        """Ids (32-byte digests) of records we have and the peer lacks, learned so far."""
        return frozenset(self._have)

    @property
    def need(self) -> frozenset[bytes]:
        """Ids (32-byte digests) of records the peer has and we lack, learned so far."""
        return frozenset(self._need)

    @property
    def need_items(self) -> tuple[SyncItem, ...]:
        """``need`` with the creation times the peer claimed, oldest first (fetch order)."""
        return tuple(SyncItem(ts, rid) for ts, rid in sorted((t, r) for r, t in self._need.items()))

    def statistics(self) -> SyncStatistics:
        return SyncStatistics(
            self._messages_sent, self._messages_received, self._bytes_sent, self._bytes_received
        )

    def receive(self, message: bytes) -> bytes | None:
        """Apply the peer's message; return the next message to send, or None when done.

        Raises ``SyncError`` if the message is malformed or breaks the protocol
        (the session is then FAILED), ``LocalProtocolError`` if the session is over.
        """
        if self._state in (SyncState.DONE, SyncState.FAILED):
            raise LocalProtocolError("session-over", f"receive in state {self._state.value}")
        try:
            return self._receive(message)
        except SyncError:
            self._state = SyncState.FAILED
            raise

    # --- the steps ----------------------------------------------------------------

    def _receive(self, data: bytes) -> bytes | None:
        message = decode_message(data, self._limits)
        action = _ON_RECEIVE.get((self._state, message.kind))
        if action is None:
            raise SyncError("unexpected-message", f"{message.kind.name} while {self._state.value}")
        number = self._messages_sent + self._messages_received + 1
        if number >= self._limits.max_messages and message.kind in (Kind.INIT, Kind.RANGES):
            raise SyncError("too-many-messages", f"message {number} asks for an answer")
        learned = _Learned()
        self._read_diffs(message, learned)
        if action is _Action.FINISH:
            self._commit(learned)
            self._count_received(data)
            self._stopped = message.kind is Kind.STOP
            self._state = SyncState.DONE
            return None
        listed: list[_Listed] = []
        builder = MessageBuilder(self._limits)
        final = number + 1 >= self._limits.max_messages or (
            len(self._have) + len(self._need) + len(learned.have) + len(learned.need)
            >= self._limits.max_differences
        )
        unresolved = self._answer(message, builder, learned, listed, final=final)
        self._commit(learned)
        self._count_received(data)
        kind = Kind.RANGES if builder.has_work else Kind.STOP if unresolved else Kind.DONE
        self._stopped = kind is Kind.STOP
        return self._sent(builder.finish(kind), kind, listed)

    def _count_received(self, data: bytes) -> None:
        self._messages_received += 1
        self._bytes_received += len(data)

    def _sent(self, data: bytes, kind: Kind, listed: list[_Listed]) -> bytes:
        self._listed = listed
        self._messages_sent += 1
        self._bytes_sent += len(data)
        self._state = _AFTER_SENDING[kind]
        return data

    def _commit(self, learned: _Learned) -> None:
        for record_id, created_ms in learned.need.items():
            if self._need.get(record_id, created_ms) != created_ms:
                raise SyncError("timestamp-mismatch", record_id.hex())
        self._have |= learned.have
        self._need |= learned.need

    def _read_diffs(self, message: Message, learned: _Learned) -> None:
        """Check the DIFF ranges against the ID_LIST ranges we sent, and learn from them."""
        listed = iter(self._listed)
        current: _Listed | None = None
        lower = MINIMUM
        for item_range in message.ranges:
            if isinstance(item_range, Diff):
                while current is None or current.upper <= lower:
                    current = next(listed, None)
                    if current is None:
                        raise SyncError("unexpected-diff", "no ID_LIST range of ours there")
                if not (current.lower <= lower and item_range.upper <= current.upper):
                    raise SyncError("unexpected-diff", "a DIFF range across our ID_LIST ranges")
                self._read_diff(item_range, lower, current, learned)
            lower = item_range.upper

    def _read_diff(self, diff: Diff, lower: Bound, listed: _Listed, learned: _Learned) -> None:
        keys = listed.keys
        start = bisect_left(keys, lower.key)
        ours = keys[start : bisect_left(keys, diff.upper.key, start)]
        if len(diff.lacking) != len(ours):
            raise SyncError("bad-bitfield-length", f"{len(diff.lacking)} bits, {len(ours)} items")
        listed_ids = {record_id for _, record_id in listed.keys}
        created_ms_of = self._items.created_ms_of
        for item in diff.items:
            if item.record_id in listed_ids:
                raise SyncError("diff-lists-known-item", item.record_id.hex())
            known = created_ms_of(item.record_id)
            if known is not None and known != item.created_ms:
                raise SyncError("timestamp-mismatch", item.record_id.hex())
            learned.need[item.record_id] = item.created_ms
        learned.have.update(
            key[1] for key, lacking in zip(ours, diff.lacking, strict=True) if lacking
        )

    def _answer(
        self,
        message: Message,
        builder: MessageBuilder,
        learned: _Learned,
        listed: list[_Listed],
        *,
        final: bool,
    ) -> bool:
        """Build the reply to ``message``; True if ``final`` left something unreconciled.

        Not final: mismatching fingerprints are split or listed, ID_LIST ranges
        answered with DIFF, and what does not fit is folded into one fingerprint
        to infinity. Final: only ID_LIST ranges are answered (so both sides learn
        the same), everything else is skipped.
        """
        items = self._items
        unresolved = False
        lower = MINIMUM
        for item_range in message.ranges:
            low, high = lower, item_range.upper
            lower = high
            if not isinstance(item_range, Fingerprint | IdList):
                builder.skip(high)
                continue
            start, stop = items.position(low), items.position(high)
            if isinstance(item_range, Fingerprint):
                if items.fingerprint(start, stop) == item_range.fingerprint:
                    builder.skip(high)
                elif final:
                    unresolved = True
                    builder.skip(high)
                elif not self._describe(builder, low, high, start, stop, listed):
                    break
            elif not self._answer_list(builder, item_range, low, start, stop, learned):
                if not final:
                    break
                unresolved = True
                builder.skip(high)
        else:
            return unresolved
        # Out of room: fold everything from here to infinity into one fingerprint.
        builder.close(items.fingerprint(items.position(builder.lower), len(items)))
        return unresolved

    def _describe(
        self,
        builder: MessageBuilder,
        lower: Bound,
        upper: Bound,
        start: int,
        stop: int,
        listed: list[_Listed],
    ) -> bool:
        """Add our view of a mismatching range: all our items, or bucket fingerprints."""
        limits = self._limits
        keys = self._items._keys
        count = stop - start
        if count < limits.id_list_threshold:
            held = tuple(keys[start:stop])
            id_list = IdList(upper, tuple(SyncItem(ts, record_id) for ts, record_id in held))
            if not builder.try_add((id_list,)):
                return False
            listed.append(_Listed(lower, upper, held))
            return True
        ranges: list[Range] = []
        begin = start
        for bucket in range(1, limits.buckets + 1):
            end = start + count * bucket // limits.buckets
            bound = upper if bucket == limits.buckets else separator_bound(keys[end - 1], keys[end])
            ranges.append(Fingerprint(bound, self._items.fingerprint(begin, end)))
            begin = end
        return builder.try_add(ranges)

    def _answer_list(
        self,
        builder: MessageBuilder,
        id_list: IdList,
        lower: Bound,
        start: int,
        stop: int,
        learned: _Learned,
    ) -> bool:
        """Answer an ID_LIST range with a DIFF, as much of it as fits; True if all of it."""
        created_ms_of = self._items.created_ms_of
        for item in id_list.items:
            known = created_ms_of(item.record_id)
            if known is not None and known != item.created_ms:
                raise SyncError("timestamp-mismatch", item.record_id.hex())
        room_bytes, room_ranges, room_ids, room_bits = builder.room()
        if room_ranges < 1:
            return False
        budget = room_bytes - _DIFF_OVERHEAD
        keys = self._items._keys
        theirs = [(item.created_ms, item.record_id) for item in id_list.items]
        missing: list[ItemKey] = []  # ours, which they lack
        lacking: list[bool] = []  # one per their item: do we lack it?
        used = 0  # bytes of the missing items
        previous_ms = lower.created_ms
        last: ItemKey | None = None
        cut: ItemKey | None = None  # the first key left out
        their_index, our_index = 0, start
        while their_index < len(theirs) or our_index < stop:
            their_key = theirs[their_index] if their_index < len(theirs) else None
            our_key = keys[our_index] if our_index < stop else None
            if our_key is not None and (their_key is None or our_key < their_key):
                cost = varint_size(our_key[0] - previous_ms) + ID_SIZE
                too_much = used + cost + (len(lacking) + 7) // 8 > budget
                if too_much or len(missing) == room_ids:
                    cut = our_key
                    break
                missing.append(our_key)
                used += cost
                previous_ms = our_key[0]
                last = our_key
                our_index += 1
            else:
                assert their_key is not None
                if used + (len(lacking) + 8) // 8 > budget or len(lacking) == room_bits:
                    cut = their_key
                    break
                have_it = their_key == our_key
                lacking.append(not have_it)
                last = their_key
                their_index += 1
                our_index += have_it
        if cut is None:
            upper = id_list.upper
        elif last is None:
            return False
        else:
            upper = separator_bound(last, cut)
        diff = Diff(upper, tuple(SyncItem(ts, rid) for ts, rid in missing), tuple(lacking))
        if not builder.try_add((diff,)):
            raise LocalProtocolError("diff-does-not-fit", "the size estimate is wrong")
        learned.have.update(record_id for _, record_id in missing)
        for (created_ms, record_id), lack in zip(theirs, lacking, strict=False):
            if lack:
                learned.need[record_id] = created_ms
        return cut is None
