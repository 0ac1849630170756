"""Fetch scheduling (node/fetch_schedule.py), driven directly: no network, no clock."""

from __future__ import annotations

import pytest

from node.fetch_schedule import FetchLimits, FetchSchedule
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
