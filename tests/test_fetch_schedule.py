"""Fetch scheduling (node/fetch_schedule.py), driven directly: no network, no clock."""

from __future__ import annotations

from collections import deque

import pytest

from node.fetch_schedule import MIB, FetchLimits, FetchSchedule, Item
from protocol.cid import Cid
from protocol.content import CHUNK_SIZE, MAX_BLOCK_SIZE
from protocol.wire import WireError


def leaf(n: int) -> Cid:
    return Cid.for_raw(n.to_bytes(4, "big"))


def schedule_of(count: int, **limits: float) -> FetchSchedule:
    schedule = FetchSchedule(FetchLimits(**limits))  # type: ignore[arg-type]
    for n in range(count):
        schedule.add_missing(leaf(n), 1, CHUNK_SIZE)
    return schedule


def test_the_windows_bound_what_is_asked() -> None:
    schedule = schedule_of(20, window_bytes=5 * CHUNK_SIZE, peer_window_bytes=2 * CHUNK_SIZE)
    for peer in ("p1", "p2", "p3", "p4"):
        schedule.add_peer(peer, 0.0)
    taken = [len(schedule.take_work(peer, 0.0, walk_done=False)) for peer in ("p1", "p2", "p3")]
    assert taken == [2, 2, 1]  # per provider 2 blocks; 5 in all
    assert schedule.take_work("p4", 0.0, walk_done=False) == []
    item = schedule.on_block("p1", leaf(0), CHUNK_SIZE, 0.1)
    assert item is not None
    assert schedule.take_work("p4", 0.1, walk_done=False) == []  # still in memory: storing
    schedule.on_stored(item, CHUNK_SIZE)
    assert [i.cid for i in schedule.take_work("p4", 0.2, walk_done=False)] == [leaf(5)]


def test_a_block_of_unknown_size_counts_as_the_largest() -> None:
    schedule = FetchSchedule(FetchLimits(window_bytes=MAX_BLOCK_SIZE + CHUNK_SIZE))
    schedule.add_missing(Cid.for_dag_pb(b"node"), 1, None)
    schedule.add_missing(leaf(1), 2, CHUNK_SIZE)
    schedule.add_missing(leaf(2), 2, CHUNK_SIZE)
    schedule.add_peer("p", 0.0)
    assert len(schedule.take_work("p", 0.0, walk_done=False)) == 2
    assert schedule.asked_bytes == MAX_BLOCK_SIZE + CHUNK_SIZE


def test_declined_blocks_go_to_others_and_then_wait_for_a_newcomer() -> None:
    schedule = schedule_of(1)
    schedule.add_peer("p1", 0.0)
    schedule.add_peer("p2", 0.0)
    schedule.take_work("p1", 0.0, walk_done=True)
    schedule.on_dont_have("p1", leaf(0), 0.1)
    assert schedule.take_work("p1", 0.2, walk_done=True) == []
    assert [i.cid for i in schedule.take_work("p2", 0.2, walk_done=True)] == [leaf(0)]
    schedule.on_dont_have("p2", leaf(0), 0.3)
    assert [i.cid for i in schedule.unavailable] == [leaf(0)]
    schedule.add_peer("p3", 0.4)
    assert [i.cid for i in schedule.take_work("p3", 0.4, walk_done=True)] == [leaf(0)]


def test_a_departed_provider_hands_its_requests_back() -> None:
    schedule = schedule_of(3)
    schedule.add_peer("p1", 0.0)
    schedule.add_peer("p2", 0.0)
    assert len(schedule.take_work("p1", 0.0, walk_done=False)) == 3
    assert schedule.stalled(10.0) == ["p1"]
    schedule.remove_peer("p1")
    assert schedule.asked_bytes == 0
    assert [i.cid for i in schedule.take_work("p2", 10.0, walk_done=False)] == [
        leaf(0),
        leaf(1),
        leaf(2),
    ]


def test_the_end_game_asks_an_idle_provider_and_the_first_answer_wins() -> None:
    schedule = schedule_of(1, endgame_after=1.0)
    schedule.add_peer("slow", 0.0)
    schedule.add_peer("idle", 0.0)
    schedule.take_work("slow", 0.0, walk_done=True)
    assert schedule.take_work("idle", 0.5, walk_done=True) == []
    assert [i.cid for i in schedule.take_work("idle", 1.5, walk_done=True)] == [leaf(0)]
    item = schedule.on_block("idle", leaf(0), CHUNK_SIZE, 1.6)
    assert item is not None
    assert schedule.on_block("slow", leaf(0), CHUNK_SIZE, 1.7) is None
    assert schedule.duplicates == 1
    schedule.on_stored(item, CHUNK_SIZE)
    assert schedule.finished
    assert schedule.asked_bytes == schedule.storing_bytes == 0


def test_a_corrupt_block_is_asked_of_someone_else() -> None:
    schedule = schedule_of(1)
    schedule.add_peer("liar", 0.0)
    schedule.add_peer("honest", 0.0)
    schedule.take_work("liar", 0.0, walk_done=True)
    item = schedule.on_block("liar", leaf(0), CHUNK_SIZE, 0.1)
    assert item is not None
    schedule.on_bad_block(item, "liar", CHUNK_SIZE)
    schedule.remove_peer("liar")
    assert [i.cid for i in schedule.take_work("honest", 0.2, walk_done=True)] == [leaf(0)]


def test_answers_nobody_asked_for_are_protocol_errors() -> None:
    schedule = schedule_of(2)
    schedule.add_peer("p", 0.0)
    schedule.take_work("p", 0.0, walk_done=False)
    with pytest.raises(WireError, match="unsolicited-block"):
        schedule.on_block("p", leaf(99), 10, 0.1)
    with pytest.raises(WireError, match="unsolicited-dont-have"):
        schedule.on_dont_have("stranger", leaf(0), 0.1)


def test_a_provider_is_first_asked_for_its_first_window_only() -> None:
    """So that the first provider to answer cannot take the whole of a small file."""
    schedule = schedule_of(16)  # 4 MiB
    schedule.add_peer("first", 0.0)
    schedule.add_peer("second", 0.0)
    first = schedule.take_work("first", 0.0, walk_done=True)
    assert len(first) * CHUNK_SIZE == FetchLimits().first_peer_window_bytes  # 2 MiB
    assert len(schedule.take_work("second", 0.0, walk_done=True)) == 8  # the other half


def answer(schedule: FetchSchedule, peer: str, items: list[Item], start: float, gap: float) -> None:
    """``peer`` answers ``items`` one every ``gap`` seconds from ``start``; all are stored."""
    for n, item in enumerate(items):
        stored = schedule.on_block(peer, item.cid, CHUNK_SIZE, start + n * gap)
        assert stored is not None
        schedule.on_stored(stored, CHUNK_SIZE)


def fetch_over_a_link(blocks: int, gap: float, wait: float) -> tuple[FetchSchedule, float]:
    """One provider behind a link that sends a block every ``gap`` seconds and answers
    ``wait`` seconds after being asked at the soonest; asked as the schedule says.
    Returns the schedule and when the last block arrived."""
    schedule = schedule_of(blocks)
    schedule.add_peer("p", 0.0)
    queue = deque((item, 0.0) for item in schedule.take_work("p", 0.0, walk_done=False))
    now = 0.0
    while queue:
        item, asked_at = queue.popleft()
        now = max(asked_at + wait, now + gap)
        stored = schedule.on_block("p", item.cid, CHUNK_SIZE, now)
        assert stored is not None
        schedule.on_stored(stored, CHUNK_SIZE)
        queue.extend((new, now) for new in schedule.take_work("p", now, walk_done=False))
    assert schedule.finished
    return schedule, now


@pytest.mark.parametrize(
    ("gap", "wait", "window"),
    [
        # 26 MB/s, 10 ms round trip (counted as 20): 4 x 524 KB is the first window.
        (0.010, 0.010, 2 * MIB),
        # 6.6 MB/s, 100 ms: 4 x 655 KB.
        (0.040, 0.100, 4 * CHUNK_SIZE / 0.040 * 0.100),
        # 65 MB/s, 30 ms: 4 x 2 MB.
        (0.004, 0.030, 4 * CHUNK_SIZE / 0.004 * 0.030),
        # 262 MB/s, 2 ms (loopback: counted as 20 ms): 4 x 5 MB, over the cap of 16 MiB.
        (0.001, 0.002, 16 * MIB),
        # 2.6 GB/s, 50 ms: far beyond the cap.
        (0.0001, 0.050, 16 * MIB),
    ],
)
def test_a_providers_window_becomes_four_bandwidth_delay_products(
    gap: float, wait: float, window: float
) -> None:
    schedule, _ = fetch_over_a_link(400, gap, wait)
    peer = schedule.peers["p"]
    assert peer.min_wait == pytest.approx(wait)
    if window < 16 * MIB:  # (capped, the window rather than the link sets the pace)
        assert peer.rate == pytest.approx(CHUNK_SIZE / gap, rel=0.05)
    assert peer.window == pytest.approx(window, rel=0.05)


@pytest.mark.parametrize(("gap", "wait"), [(0.010, 0.010), (0.001, 0.005), (0.001, 0.020)])
def test_the_window_keeps_the_link_full(gap: float, wait: float) -> None:
    _, finished = fetch_over_a_link(400, gap, wait)
    assert finished < (400 * gap + wait) * 1.05  # the link never waited for a request


def test_an_idle_provider_is_not_timed() -> None:
    """A provider that owed nothing for a while is not slow: the gap does not count."""
    schedule = schedule_of(40)
    schedule.add_peer("p", 0.0)
    asked = schedule.take_work("p", 0.0, walk_done=False)
    answer(schedule, "p", asked[:2], 0.001, 0.001)
    answer(schedule, "p", asked[2:], 0.003, 0.001)  # owes nothing now
    rate = schedule.peers["p"].rate
    later = schedule.take_work("p", 10.0, walk_done=False)  # ten seconds idle
    answer(schedule, "p", later[:5], 10.001, 0.001)
    assert schedule.peers["p"].rate == pytest.approx(rate, rel=0.5)


def test_the_end_game_does_not_wait_for_a_much_slower_provider() -> None:
    schedule = schedule_of(4, endgame_after=1.0)
    schedule.add_peer("slow", 0.0)
    schedule.add_peer("fast", 0.0)
    owed = schedule.take_work("slow", 0.0, walk_done=True)
    assert len(owed) == 4
    assert schedule.endgame_at("fast") == 1.0  # neither rate known: the usual wait
    schedule.peers["slow"].rate = 2e6  # as measured from their answers
    schedule.peers["fast"].rate = 5e6  # not four times faster: still the usual wait
    assert schedule.take_work("fast", 0.1, walk_done=True) == []
    schedule.peers["fast"].rate = 9e6  # over four times faster: after 4 of its round trips
    schedule.peers["fast"].min_wait = 0.03
    assert schedule.endgame_at("fast") == pytest.approx(0.12)
    assert schedule.take_work("fast", 0.1, walk_done=True) == []
    assert {i.cid for i in schedule.take_work("fast", 0.13, walk_done=True)} == {
        item.cid for item in owed
    }
    assert schedule.endgame_at("fast") is None  # both owe them now
    assert schedule.take_work("slow", 0.2, walk_done=True) == []  # never back to the slow one


def test_the_end_game_does_not_wait_for_a_slow_providers_first_window() -> None:
    """Before a slow provider's rate is measured, what it delivered so far bounds it."""
    schedule = schedule_of(8, endgame_after=1.0)
    schedule.add_peer("slow", 0.0)
    schedule.add_peer("fast", 0.0)
    owed = schedule.take_work("slow", 0.0, walk_done=True)  # all 8 blocks, 2 MiB
    assert len(owed) == 8
    fast = schedule.peers["fast"]
    fast.rate, fast.min_wait = 26e6, 0.01  # measured on earlier blocks: 10 ms a block
    # Had "slow" delivered a block right now, 262 KB in 40 ms would be a quarter of
    # 26 MB/s; but the fast one waits four of its round trips (20 ms at the least).
    assert 4 * CHUNK_SIZE / 26e6 < 0.08
    assert schedule.endgame_at("fast") == pytest.approx(0.08)
    assert schedule.take_work("fast", 0.05, walk_done=True) == []
    answer(schedule, "slow", owed[:1], 0.06, 0)  # one block: 524 KB would take until 81 ms
    assert schedule.endgame_at("fast") == pytest.approx(4 * 2 * CHUNK_SIZE / 26e6)
    assert schedule.take_work("fast", 0.08, walk_done=True) == []
    assert len(schedule.take_work("fast", 0.085, walk_done=True)) == 7


def test_a_provider_that_keeps_up_is_not_taken_for_slow() -> None:
    schedule = schedule_of(8, endgame_after=1.0)
    schedule.add_peer("p", 0.0)
    schedule.add_peer("idle", 0.0)
    owed = schedule.take_work("p", 0.0, walk_done=True)
    idle = schedule.peers["idle"]
    idle.rate, idle.min_wait = 26e6, 0.01
    answer(schedule, "p", owed[:3], 0.001, 0.001)  # 262 MB/s, not yet measured
    assert schedule.endgame_at("idle") == pytest.approx(4 * 4 * CHUNK_SIZE / 26e6)
    assert schedule.take_work("idle", 0.1, walk_done=True) == []
    answer(schedule, "p", owed[3:4], 0.004, 0)  # its first 1 MiB: measured, and fast
    assert schedule.endgame_at("idle") == 1.0
