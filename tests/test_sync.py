"""Catch-up sync: two sessions run against each other in memory, the wire format, bounds.

The worked example and hex dumps live in docs/protocol.md ("Catch-up sync") and are parsed
from it here, so the specification and the code cannot drift apart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.cid import Cid
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.sync import (
    DEFAULT_LIMITS,
    RecordSet,
    Role,
    SyncError,
    SyncItem,
    SyncLimits,
    SyncSession,
    SyncState,
)
from protocol.sync_messages import (
    FINGERPRINT_SIZE,
    INFINITY,
    MAX_TIMESTAMP,
    Bound,
    Diff,
    Fingerprint,
    IdList,
    Kind,
    Message,
    Skip,
    separator_bound,
)
from protocol.sync_wire import decode_message, encode_message, fingerprint_of, lift

SPEC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
T0 = 1_700_000_000_000
SMALL = SyncLimits(buckets=2, id_list_threshold=2)


def record_id(name: object) -> bytes:
    return hashlib.sha256(str(name).encode()).digest()


def item(number: int) -> SyncItem:
    """Item ``number``: one record a second, from T0."""
    return SyncItem(T0 + number * 1000, record_id(number))


def ids(items: Iterable[SyncItem]) -> set[bytes]:
    return {i.record_id for i in items}


@dataclass
class Transcript:
    initiator: SyncSession
    responder: SyncSession
    messages: list[tuple[Role, bytes]] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(len(data) for _, data in self.messages)


def run(
    initiator_items: Iterable[SyncItem],
    responder_items: Iterable[SyncItem],
    limits: SyncLimits = DEFAULT_LIMITS,
    *,
    responder_limits: SyncLimits | None = None,
) -> Transcript:
    """Run a whole session in memory; every message must decode and re-encode identically."""
    initiator, message = SyncSession.initiate(RecordSet(initiator_items), limits=limits)
    responder = SyncSession.respond(RecordSet(responder_items), limits=responder_limits or limits)
    transcript = Transcript(initiator, responder)
    receiver, sender = responder, initiator
    next_message: bytes | None = message
    while next_message is not None:
        assert len(transcript.messages) < 10_000, "the session does not end"
        assert encode_message(decode_message(next_message, limits)) == next_message
        transcript.messages.append((sender.role, next_message))
        next_message = receiver.receive(next_message)
        receiver, sender = sender, receiver
    assert initiator.done
    assert responder.done
    return transcript


def assert_reconciled(transcript: Transcript, a: Iterable[SyncItem], b: Iterable[SyncItem]) -> None:
    a_ids, b_ids = ids(a), ids(b)
    assert transcript.initiator.have == a_ids - b_ids
    assert transcript.initiator.need == b_ids - a_ids
    assert transcript.responder.have == b_ids - a_ids
    assert transcript.responder.need == a_ids - b_ids
    assert transcript.initiator.complete
    assert transcript.responder.complete


# --- the specification's worked example -----------------------------------------------


def spec_blocks(tag: str) -> list[tuple[str, str]]:
    text = SPEC.read_text()
    return re.findall(rf"```{tag}(.*?)\n(.*?)```", text, re.DOTALL)


def test_worked_example_matches_the_spec() -> None:
    [(_, block)] = spec_blocks("sync-example")
    limits: dict[str, int] = {}
    sides: dict[str, list[SyncItem]] = {"initiator": [], "responder": []}
    messages: list[tuple[str, bytes]] = []
    expected: dict[tuple[str, str], set[bytes]] = {}
    for line in block.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "limits":
            limits = {key: int(value) for key, value in (w.split("=") for w in words[1:])}
        elif words[0] == "item":
            for side in words[1].split("+"):
                sides[side].append(SyncItem(int(words[2]), bytes.fromhex(words[3])))
        elif words[0] == "message":
            messages.append((words[1], bytes.fromhex("".join(words[2:]))))
        else:
            expected.setdefault((words[1], words[0]), set()).add(bytes.fromhex(words[2]))
    assert len(messages) >= 3
    transcript = run(sides["initiator"], sides["responder"], SyncLimits(**limits))
    assert [(role.value, data) for role, data in transcript.messages] == messages
    assert_reconciled(transcript, sides["initiator"], sides["responder"])
    for (side, what), values in expected.items():
        assert getattr(getattr(transcript, side), what) == values


def test_hex_dumps_in_the_spec_are_the_example_messages() -> None:
    [(_, example)] = spec_blocks("sync-example")
    messages = [
        bytes.fromhex("".join(line.split()[2:]))
        for line in example.splitlines()
        if line.startswith("message")
    ]
    dumps = spec_blocks("sync-hexdump")
    assert len(dumps) >= 2
    for number, dump in dumps:
        data = bytes.fromhex("".join(line.split("#")[0] for line in dump.splitlines()))
        assert data == messages[int(number) - 1]


# --- sessions between honest peers -------------------------------------------------


def test_identical_sets_take_one_round_trip_of_fingerprints() -> None:
    items = [item(n) for n in range(1000)]
    transcript = run(items, items)
    assert [role for role, _ in transcript.messages] == [Role.INITIATOR, Role.RESPONDER]
    first = decode_message(transcript.messages[0][1], DEFAULT_LIMITS)
    assert all(isinstance(r, Fingerprint) for r in first.ranges)
    assert len(first.ranges) == DEFAULT_LIMITS.buckets
    assert transcript.messages[1][1] == bytes([Kind.DONE])  # every range matched
    assert_reconciled(transcript, items, items)


@pytest.mark.parametrize("size", [0, 1, 19])
def test_small_sets_are_listed_and_answered_in_one_round_trip(size: int) -> None:
    items = [item(n) for n in range(size)]
    transcript = run(items, items)
    assert len(transcript.messages) == 2
    assert_reconciled(transcript, items, items)


def test_disjoint_sets_exchange_everything() -> None:
    a = [item(n) for n in range(0, 3000, 2)]
    b = [item(n) for n in range(1, 3000, 2)]
    assert_reconciled(run(a, b), a, b)


@pytest.mark.parametrize("empty_side", ["initiator", "responder"])
def test_one_empty_side_gets_everything(empty_side: str) -> None:
    full = [item(n) for n in range(5000)]
    a, b = ([], full) if empty_side == "initiator" else (full, [])
    transcript = run(a, b)
    assert_reconciled(transcript, a, b)
    assert len(transcript.messages) <= 4


def test_a_small_difference_in_huge_sets_costs_little() -> None:
    common = [item(n) for n in range(100_000)]
    only_a = [item(n) for n in range(100_000, 100_005)]
    only_b = [
        SyncItem(i.created_ms + 1, record_id(("b", n))) for n, i in enumerate(common[::20000])
    ]
    a, b = common + only_a, common + only_b
    transcript = run(a, b)
    assert_reconciled(transcript, a, b)
    full_id_list = 32 * len(common)
    assert transcript.total_bytes < 50 * 1024
    assert transcript.total_bytes < full_id_list // 20  # the target: <= 5 % of the full list
    assert len(transcript.messages) <= 8


def test_many_differences_are_paged_within_every_bound() -> None:
    limits = SyncLimits(max_message_size=4096, max_ranges=64, max_ids=40)
    a = [item(n) for n in range(0, 6000) if n % 3]
    b = [item(n) for n in range(0, 6000) if n % 5]
    transcript = run(a, b, limits)
    assert_reconciled(transcript, a, b)
    assert len(transcript.messages) > 20  # paged across many rounds
    for _, data in transcript.messages:
        assert len(data) <= limits.max_message_size
        message = decode_message(data, limits)  # enforces max_ranges and max_ids too
        explicit = len(message.ranges) - isinstance(message.ranges[-1], Skip)
        assert explicit <= limits.max_ranges


def test_a_huge_one_sided_difference_fills_messages_up_to_the_default_size() -> None:
    full = [item(n) for n in range(100_000)]
    transcript = run([], full)
    assert_reconciled(transcript, [], full)
    sizes = [len(data) for _, data in transcript.messages]
    assert max(sizes) <= DEFAULT_LIMITS.max_message_size
    assert max(sizes) > DEFAULT_LIMITS.max_message_size * 0.9  # pages are full, not tiny


def test_equal_timestamps_are_separated_by_id_prefixes() -> None:
    a = [SyncItem(5, bytes(31) + bytes([n])) for n in range(0, 200, 2)]
    b = [SyncItem(5, bytes(31) + bytes([n])) for n in range(0, 200, 3)]
    transcript = run(a, b, SMALL)
    assert_reconciled(transcript, a, b)
    bounds = [
        r.upper
        for _, data in transcript.messages
        for r in decode_message(data, SMALL).ranges
        if not r.upper.is_infinity
    ]
    assert any(len(bound.id_prefix) == 32 for bound in bounds)


def test_need_items_carry_the_peers_timestamps_oldest_first() -> None:
    a = [item(n) for n in range(50)]
    b = [item(n) for n in range(100)]
    transcript = run(a, b)
    assert list(transcript.initiator.need_items) == b[50:]


def test_stop_at_max_differences_leaves_both_sides_agreeing() -> None:
    limits = SyncLimits(max_differences=300, max_message_size=4096, max_ids=100)
    a = [item(n) for n in range(0, 4000, 2)]
    b = [item(n) for n in range(1, 4000, 2)]
    transcript = run(a, b, limits)
    initiator, responder = transcript.initiator, transcript.responder
    assert not initiator.complete
    assert not responder.complete
    assert transcript.messages[-1][1][0] == Kind.STOP
    assert 300 <= len(initiator.have) + len(initiator.need) < 300 + 2 * limits.max_ids
    assert initiator.have == responder.need
    assert initiator.need == responder.have
    assert initiator.have <= ids(a) - ids(b)
    assert initiator.need <= ids(b) - ids(a)


def test_stop_at_max_messages_ends_the_session_gracefully() -> None:
    limits = SyncLimits(max_messages=4)
    a = [item(n) for n in range(0, 20000, 2)]
    b = [item(n) for n in range(1, 20000, 3)]
    transcript = run(a, b, limits)
    assert len(transcript.messages) == 4
    assert transcript.messages[-1][1][0] == Kind.STOP
    assert transcript.initiator.have == transcript.responder.need
    assert transcript.initiator.need == transcript.responder.have
    assert not transcript.initiator.complete


def test_records_inserted_during_a_session_do_not_break_it() -> None:
    a_items = [item(n) for n in range(0, 3000, 2)]
    b_items = [item(n) for n in range(0, 3000, 3)]
    a, b = RecordSet(a_items), RecordSet(b_items)
    initiator, message = SyncSession.initiate(a, limits=SMALL)
    responder = SyncSession.respond(b, limits=SMALL)
    sessions = [responder, initiator]
    turn = 0
    next_message: bytes | None = message
    while next_message is not None:
        next_message = sessions[turn % 2].receive(next_message)
        for target in (a, b):  # gossip delivers records to both sides meanwhile
            target.insert(item(3000 + turn))
            target.insert(item(turn * 7 % 3000))
        turn += 1
    # Each session reconciles the sets as they were when it began.
    assert_reconciled(Transcript(initiator, responder), a_items, b_items)


def test_statistics_count_both_directions() -> None:
    a = [item(n) for n in range(100)]
    transcript = run(a, a[:90])
    stats = transcript.initiator.statistics()
    sent = [data for role, data in transcript.messages if role is Role.INITIATOR]
    received = [data for role, data in transcript.messages if role is Role.RESPONDER]
    assert stats.messages_sent == len(sent)
    assert stats.bytes_sent == sum(map(len, sent))
    assert stats.messages_received == len(received)
    assert stats.bytes_received == sum(map(len, received))


# --- Hypothesis: random pairs of sets ------------------------------------------------

structured_ids = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 255).map(lambda n: bytes(31) + bytes([n])),
    st.integers(0, 255).map(lambda n: bytes([n]) + b"\xff" * 31),
    st.integers(0, 2**16 - 1).map(lambda n: b"\x80" * 30 + n.to_bytes(2, "big")),
)
timestamps = st.one_of(st.integers(0, 3), st.integers(0, MAX_TIMESTAMP), st.just(MAX_TIMESTAMP))


@st.composite
def set_pairs(draw: st.DrawFn) -> tuple[list[SyncItem], list[SyncItem]]:
    universe = draw(st.dictionaries(structured_ids, timestamps, max_size=300))
    items = [SyncItem(ts, rid) for rid, ts in universe.items()]
    where = draw(st.lists(st.sampled_from("ab+"), min_size=len(items), max_size=len(items)))
    a = [i for i, w in zip(items, where, strict=True) if w in "a+"]
    b = [i for i, w in zip(items, where, strict=True) if w in "b+"]
    return a, b


limit_sets = st.builds(
    lambda buckets, extra, size, ids: SyncLimits(
        buckets=buckets,
        id_list_threshold=buckets + extra,
        max_message_size=size,
        max_ranges=buckets + 3 + ids,
        max_ids=buckets + extra + ids,
    ),
    st.integers(2, 6),
    st.integers(0, 6),
    st.integers(1200, 5000),
    st.integers(0, 40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(set_pairs(), limit_sets)
def test_any_two_sets_are_reconciled_exactly(
    pair: tuple[list[SyncItem], list[SyncItem]], limits: SyncLimits
) -> None:
    a, b = pair
    assert_reconciled(run(a, b, limits), a, b)


# --- the decoder ------------------------------------------------------------------


@settings(max_examples=2000)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_to_a_message_or_a_sync_error(data: bytes) -> None:
    try:
        message = decode_message(data, SMALL)
    except SyncError:
        return
    assert encode_message(message) == data  # what is accepted is canonical


@settings(max_examples=1000)
@given(st.data())
def test_mutated_messages_decode_canonically_or_fail_typed(data: st.DataObject) -> None:
    [(_, example)] = spec_blocks("sync-example")
    messages = [
        bytearray.fromhex("".join(line.split()[2:]))
        for line in example.splitlines()
        if line.startswith("message")
    ]
    message = bytearray(data.draw(st.sampled_from(messages)))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(message)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and position < len(message):
            message[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "insert":
            message.insert(position, data.draw(st.integers(0, 255)))
        elif action == "delete" and position < len(message):
            del message[position]
        elif action == "truncate":
            del message[position:]
    try:
        decoded = decode_message(bytes(message), SMALL)
    except SyncError:
        return
    assert encode_message(decoded) == bytes(message)


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def bound(ts_delta: int, prefix: bytes = b"") -> bytes:
    """A finite bound, its timestamp ``ts_delta`` above the range's lower bound."""
    return varint(1 + ts_delta) + varint(len(prefix)) + prefix


END = b"\x00\x00"  # the infinity bound
FP = b"\x01" + bytes(16)  # mode FINGERPRINT and a fingerprint
ID = bytes(range(32))


def id_list(*entries: tuple[int, bytes]) -> bytes:
    return b"\x02" + varint(len(entries)) + b"".join(varint(d) + i for d, i in entries)


MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "truncated"),
    "unknown kind": (b"\x05", "unknown-kind"),
    "unknown mode": (b"\x02" + END + b"\x04", "unknown-mode"),
    "non-minimal varint": (b"\x02\x80\x00\x00" + FP, "bad-varint"),
    "varint over 64 bits": (b"\x02" + b"\xff" * 10 + b"\x01", "bad-varint"),
    "truncated fingerprint": (b"\x02" + END + b"\x01" + bytes(15), "truncated"),
    "infinity with a prefix": (b"\x02\x00\x01\x05" + FP, "bad-bound"),
    "prefix over 32 bytes": (b"\x02\x01\x21" + bytes(33) + FP, "bad-bound"),
    "prefix ending in zero": (b"\x02\x01\x02\x05\x00" + FP + END + FP, "non-canonical"),
    "timestamp past 2**53": (b"\x02" + varint(2**53 + 1) + b"\x00" + FP, "timestamp-out-of-range"),
    "bytes after infinity": (b"\x02" + END + FP + b"\x00", "trailing-bytes"),
    "explicit final skip": (b"\x02" + bound(5) + FP + END + b"\x00", "non-canonical"),
    "adjacent skips": (
        b"\x02" + bound(5) + b"\x00" + bound(5) + b"\x00" + END + FP,
        "non-canonical",
    ),
    "empty first range": (b"\x02\x01\x00" + FP + END + FP, "ranges-out-of-order"),
    "overlapping ranges": (
        b"\x02" + bound(5, b"\x07") + FP + bound(0, b"\x06") + FP + END + FP,
        "ranges-out-of-order",
    ),
    "repeated bound": (b"\x02" + bound(5) + FP + bound(0) + FP + END + FP, "ranges-out-of-order"),
    "ids out of order": (b"\x02" + END + id_list((3, ID), (0, bytes(32))), "items-out-of-order"),
    "an id twice": (b"\x02" + END + id_list((3, ID), (0, ID)), "items-out-of-order"),
    "same id in two ranges": (
        b"\x02" + bound(9) + id_list((3, ID)) + END + id_list((0, ID)),
        "duplicate-id",
    ),
    "id below its range": (
        b"\x02" + bound(5, b"\x07") + FP + END + id_list((0, bytes(32))),
        "item-outside-range",
    ),
    "id above its range": (b"\x02" + bound(5) + id_list((5, ID)) + END + FP, "item-outside-range"),
    "truncated id": (b"\x02" + END + b"\x02\x01\x00" + bytes(31), "truncated"),
    "id timestamp past 2**53": (b"\x02" + END + id_list((2**53, ID)), "timestamp-out-of-range"),
    "bits past the bit field": (b"\x03" + END + b"\x03\x00\x03\x08", "non-canonical"),
    "diff in INIT": (b"\x01" + END + b"\x03\x00\x00", "bad-mode-for-kind"),
    "fingerprint in DONE": (b"\x03" + END + FP, "bad-mode-for-kind"),
    "id list in STOP": (b"\x04" + END + id_list(), "bad-mode-for-kind"),
    "RANGES without work": (b"\x02" + bound(5) + b"\x03\x00\x00", "bad-mode-for-kind"),
    "INIT without work": (b"\x01", "bad-mode-for-kind"),
}


@pytest.mark.parametrize(("data", "reason"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(SyncError) as caught:
        decode_message(data, SMALL)
    assert caught.value.reason == reason
    assert isinstance(caught.value, RemoteProtocolError)


def test_too_many_ranges_are_rejected() -> None:
    limits = SyncLimits(max_ranges=20, buckets=2, id_list_threshold=2)
    ranges = b"".join(bound(1) + FP for _ in range(20)) + END + FP
    assert decode_message(b"\x02" + ranges[len(bound(1) + FP) :], limits)
    with pytest.raises(SyncError, match="too-many-ranges"):
        decode_message(b"\x02" + ranges, limits)


def test_too_many_ids_are_rejected_before_they_are_read() -> None:
    limits = SyncLimits(max_ids=20, buckets=2, id_list_threshold=2)
    entries = [(0, bytes([n + 1]) + bytes(31)) for n in range(21)]
    assert decode_message(b"\x02" + END + id_list(*entries[:20]), limits)
    with pytest.raises(SyncError, match="too-many-ids"):
        decode_message(b"\x02" + END + id_list(*entries), limits)
    with pytest.raises(SyncError, match="too-many-ids"):  # a count alone is enough
        decode_message(b"\x02" + END + b"\x02" + varint(2**40), limits)


def test_oversized_messages_are_rejected_before_parsing() -> None:
    limits = SyncLimits(max_message_size=4096)
    with pytest.raises(SyncError, match="message-too-large"):
        decode_message(b"\x02" + END + FP + bytes(4096), limits)


# --- misbehaving peers in a session -------------------------------------------------


def answer_of(message: bytes, items: Iterable[SyncItem] = (), limits: SyncLimits = SMALL) -> bytes:
    responder = SyncSession.respond(RecordSet(items), limits=limits)
    reply = responder.receive(message)
    assert reply is not None
    return reply


def expect_sync_error(session: SyncSession, message: bytes, reason: str) -> None:
    have, need = session.have, session.need
    with pytest.raises(SyncError) as caught:
        session.receive(message)
    assert caught.value.reason == reason
    assert session.state is SyncState.FAILED
    assert (session.have, session.need) == (have, need)  # nothing half-applied
    with pytest.raises(LocalProtocolError, match="session-over"):
        session.receive(message)


def listed_session(items: list[SyncItem]) -> SyncSession:
    """An initiator whose INIT lists ``items`` in one ID_LIST range."""
    session, message = SyncSession.initiate(RecordSet(items), limits=DEFAULT_LIMITS)
    assert isinstance(decode_message(message, DEFAULT_LIMITS).ranges[0], IdList)
    return session


def diff_message(kind: Kind, ranges: tuple[Diff | Skip, ...]) -> bytes:
    return encode_message(Message(kind, ranges))


def test_a_peer_that_ignores_the_message_limit_is_stopped() -> None:
    strict = SyncLimits(max_messages=3)
    a = [item(n) for n in range(0, 20000, 2)]
    b = [item(n) for n in range(1, 20000, 3)]
    with pytest.raises(SyncError, match="too-many-messages"):
        run(a, b, DEFAULT_LIMITS, responder_limits=strict)


def test_a_diff_we_did_not_ask_for_is_rejected() -> None:
    initiator, _ = SyncSession.initiate(RecordSet(item(n) for n in range(100)))  # fingerprints
    message = diff_message(Kind.DONE, (Diff(INFINITY, (), ()),))
    expect_sync_error(initiator, message, "unexpected-diff")


def test_a_bit_field_of_the_wrong_length_is_rejected() -> None:
    session = listed_session([item(1), item(2)])
    message = diff_message(Kind.DONE, (Diff(INFINITY, (), (False,)),))
    expect_sync_error(session, message, "bad-bitfield-length")


def test_a_diff_listing_an_item_we_listed_is_rejected() -> None:
    session = listed_session([item(1)])
    message = diff_message(Kind.DONE, (Diff(INFINITY, (item(1),), (False,)),))
    expect_sync_error(session, message, "diff-lists-known-item")


def test_a_diff_with_a_known_id_at_another_time_is_rejected() -> None:
    items = [item(n) for n in range(100)]
    responder = SyncSession.respond(RecordSet(items))
    rest = RecordSet(items[5:]).fingerprint(0, 95)
    init = Message(Kind.INIT, (MISMATCH_BELOW_5, Fingerprint(INFINITY, rest)))
    reply = decode_message(responder.receive(encode_message(init)) or b"", SMALL)
    assert isinstance(reply.ranges[0], IdList)  # items 0 to 4, then a skip
    assert len(reply.ranges) == 2
    forged = SyncItem(item(2).created_ms + 1, item(50).record_id)  # ours, but at 50 s
    diff = Diff(MISMATCH_BELOW_5.upper, (forged,), (False,) * 5)
    message = diff_message(Kind.DONE, (diff, Skip(INFINITY)))
    expect_sync_error(responder, message, "timestamp-mismatch")


MISMATCH_BELOW_5 = Fingerprint(Bound(item(5).created_ms), bytes(FINGERPRINT_SIZE))


def test_an_id_list_with_a_known_id_at_another_time_is_rejected() -> None:
    responder = SyncSession.respond(RecordSet([item(1)]), limits=SMALL)
    forged = SyncItem(item(1).created_ms + 1, item(1).record_id)
    message = encode_message(Message(Kind.INIT, (IdList(INFINITY, (forged,)),)))
    expect_sync_error(responder, message, "timestamp-mismatch")


def test_a_failed_message_changes_nothing() -> None:
    session = listed_session([item(1), item(2)])
    good = Diff(Bound(item(2).created_ms), (), (True,))  # the peer lacks item 1
    bad = Diff(INFINITY, (), (True, True))  # one bit too many for item 2
    expect_sync_error(session, diff_message(Kind.DONE, (good, bad)), "bad-bitfield-length")


# --- the state machine, swept ---------------------------------------------------------


def reach(state: str) -> SyncSession:
    """A session in ``state``: idle, awaiting-initiator, awaiting-responder, done, failed."""
    items = RecordSet(item(n) for n in range(100))
    if state == "idle":
        return SyncSession.respond(items)
    if state == "awaiting-initiator":
        return SyncSession.initiate(items)[0]
    session = SyncSession.respond(items)
    if state == "awaiting-responder":
        assert session.receive(MESSAGES[Kind.INIT]) is not None
    elif state == "done":
        assert session.receive(SyncSession.initiate(items)[1]) == bytes([Kind.DONE])
    else:
        with pytest.raises(SyncError):
            session.receive(b"\xff")
    return session


MISMATCH = Fingerprint(INFINITY, bytes(FINGERPRINT_SIZE))
MESSAGES: dict[Kind, bytes] = {
    Kind.INIT: encode_message(Message(Kind.INIT, (MISMATCH,))),
    Kind.RANGES: encode_message(Message(Kind.RANGES, (MISMATCH,))),
    Kind.DONE: bytes([Kind.DONE]),
    Kind.STOP: bytes([Kind.STOP]),
}
# The table of docs/protocol.md ("Catch-up sync"), "State machine": the state after receiving.
LEGAL: dict[tuple[str, Kind], SyncState] = {
    ("idle", Kind.INIT): SyncState.AWAITING,
    ("awaiting-initiator", Kind.RANGES): SyncState.AWAITING,
    ("awaiting-initiator", Kind.DONE): SyncState.DONE,
    ("awaiting-initiator", Kind.STOP): SyncState.DONE,
    ("awaiting-responder", Kind.RANGES): SyncState.AWAITING,
    ("awaiting-responder", Kind.DONE): SyncState.DONE,
    ("awaiting-responder", Kind.STOP): SyncState.DONE,
}
STATES = ["idle", "awaiting-initiator", "awaiting-responder", "done", "failed"]


@pytest.mark.parametrize("kind", list(Kind), ids=[k.name for k in Kind])
@pytest.mark.parametrize("state", STATES)
def test_every_state_and_message_kind(state: str, kind: Kind) -> None:
    session = reach(state)
    if state in ("done", "failed"):
        with pytest.raises(LocalProtocolError, match="session-over"):
            session.receive(MESSAGES[kind])
        return
    expected = LEGAL.get((state, kind))
    if expected is None:
        expect_sync_error(session, MESSAGES[kind], "unexpected-message")
        return
    reply = session.receive(MESSAGES[kind])
    assert session.state is expected
    assert (reply is None) == (kind in (Kind.DONE, Kind.STOP))
    assert session.complete == (kind is Kind.DONE)


# --- the record set and values ------------------------------------------------------


def test_fingerprints_are_order_independent_and_incremental() -> None:
    items = [item(n) for n in range(500)]
    built = RecordSet(items)
    grown = RecordSet()
    for position in [*range(0, 500, 2), *range(499, 0, -2)]:
        assert grown.insert(items[position])
        grown.fingerprint(0, len(grown))  # queries between inserts keep the sums right
    assert not grown.insert(items[0])
    assert list(grown) == list(built) == items
    expected = fingerprint_of(sum(lift(i.record_id) for i in items), 500)
    assert grown.fingerprint(0, 500) == built.fingerprint(0, 500) == expected
    assert built.fingerprint(10, 20) == RecordSet(items[10:20]).fingerprint(0, 10)


def test_record_set_lookups() -> None:
    items = RecordSet([item(3), item(1), item(2), item(1)])
    assert len(items) == 3
    assert items[0] == item(1)
    assert item(2) in items
    assert items.created_ms_of(item(3).record_id) == item(3).created_ms
    assert items.created_ms_of(record_id("absent")) is None
    assert items.position(Bound(item(2).created_ms)) == 1
    assert items.position(INFINITY) == 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: RecordSet([item(1), SyncItem(item(1).created_ms + 1, item(1).record_id)]),
        lambda: RecordSet([item(1)]).insert(SyncItem(5, item(1).record_id)),
        lambda: SyncItem(-1, ID),
        lambda: SyncItem(MAX_TIMESTAMP + 1, ID),
        lambda: SyncItem(True, ID),
        lambda: SyncItem(1, ID[:31]),
        lambda: Bound(1, b"\x01\x00"),
        lambda: Bound(INFINITY.created_ms, b"\x01"),
        lambda: SyncLimits(max_message_size=100),
        lambda: SyncLimits(buckets=16, id_list_threshold=8),
        lambda: SyncLimits(max_messages=1),
        lambda: Message(Kind.DONE, (Skip(Bound(5)),)),
        lambda: SyncItem.for_record(1, Cid.for_dag_pb(b"x")),
    ],
)
def test_local_misuse_is_a_local_protocol_error(make: Callable[[], object]) -> None:
    with pytest.raises(LocalProtocolError):
        make()


def test_items_convert_to_and_from_record_ids() -> None:
    cid = Cid.for_raw(b"a signed record")
    sync_item = SyncItem.for_record(T0, cid)
    assert sync_item.record_id == cid.digest
    assert sync_item.cid == cid


@settings(max_examples=500)
@given(st.tuples(timestamps, structured_ids), st.tuples(timestamps, structured_ids))
def test_separator_bound_is_the_shortest_between_two_items(
    first: tuple[int, bytes], second: tuple[int, bytes]
) -> None:
    if first == second or first[1] == second[1]:
        return
    below, above = sorted([first, second])
    separator = separator_bound(below, above)
    assert below < separator.key <= above
    if separator.id_prefix:
        shorter = separator.id_prefix[:-1].rstrip(b"\x00")
        assert not below < (separator.created_ms, shorter)
