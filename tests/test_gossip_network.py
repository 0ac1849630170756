"""Announcements and catch-up sync between real ``remixnet daemon`` processes on 127.0.0.1.

Each test starts daemons in subprocesses (``tests.daemon_fixtures.DaemonProcess``)
and drives them with the CLI and their JSON-RPC sockets, as artists would: a
chain of six daemons, a daemon that was down during an announcement, a rogue
libp2p host (in this process: py-libp2p with a raw GossipSub that publishes
whatever it is given) and two daemons whose stores differ by a few records out
of thousands. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import msgpack
import pytest
import trio
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from node.client import connect_to_daemon
from node.datadir import DataDir, Identity
from node.gossip import ANNOUNCE_TOPIC, collab_topic
from node.host import Host
from node.store import Store
from protocol.cid import Cid
from protocol.records import MAX_RECORD_SIZE, Collab, Contribution, SignedRecord, sign_record
from tests.conftest import Cli
from tests.daemon_fixtures import DaemonProcess, Daemons, daemons_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.slow


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def prepare(
    daemons: Daemons,
    name: str,
    *,
    bootstrap: tuple[str, ...] = (),
    sync_interval: int = 300,
    auto_fetch: str = "lineage-of-mine",
) -> Cli:
    """An initialised data directory on loopback with these gossip settings; not started."""
    gossip = f"[gossip]\nsync_interval = {sync_interval}\nauto_fetch = {json.dumps(auto_fetch)}\n"
    return daemons.prepare(name, bootstrap=bootstrap, extra=gossip)


def status(daemon: DaemonProcess) -> dict[str, Any]:
    """``node.status`` straight from the daemon's socket."""
    client = connect_to_daemon(DataDir(daemon.cli.data_dir))
    assert client is not None
    with client:
        return cast(dict[str, Any], client.call("node.status"))


def gossip_stats(daemon: DaemonProcess) -> dict[str, Any]:
    return cast(dict[str, Any], status(daemon)["services"]["gossip"])


def record_count(daemon: DaemonProcess) -> int:
    return int(status(daemon)["store"]["records"])


def has_record(daemon: DaemonProcess, record_id: str) -> bool:
    """The daemon's store holds the record (read-only SQLite: ``records.get`` would fetch it)."""
    return has_record_offline(daemon.cli, record_id)


def has_record_offline(cli: Cli, record_id: str) -> bool:
    path = cli.data_dir / "remixnet.db"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT 1 FROM records WHERE id = ?", (Cid.parse(record_id).to_bytes(),)
        ).fetchone()
    return row is not None


def address(daemon: DaemonProcess) -> str:
    return str(daemon.node_info()["listen_addrs"][0])


def eventually(condition: Callable[[], bool], seconds: float, what: str) -> None:
    assert wait_for(condition, seconds), f"not within {seconds} s: {what}"


def signed_contributions(
    identity: Identity, count: int, *, first: int = 0, tag: str = "work"
) -> list[SignedRecord]:
    created = now_ms() - 60_000
    return [
        sign_record(
            Contribution(
                title=f"{tag} {number}",
                content=Cid.for_raw(f"{tag} content {number}".encode()),
                size=10,
                media_type="text/plain",
                license="CC-BY-4.0",
            ),
            private_key=identity.private_key,
            created_ms=created + number,
        )
        for number in range(first, first + count)
    ]


# --- (a) a chain of six daemons ------------------------------------------------------------


def offline_copy(cli: Cli, root: Path) -> Cli:
    """A data directory of its own with ``cli``'s identity: the artist working offline."""
    copy = Cli(root)
    copy.run("init")
    key = copy.data_dir / "identity.key"
    key.write_bytes((cli.data_dir / "identity.key").read_bytes())
    return copy


def publish_by_import(daemon: DaemonProcess, work: Cli, record_id: str, car: Path) -> None:
    """Export ``record_id`` from ``work`` and import it into the running ``daemon``.

    The daemon announces what it imports, like what it adds, but (unlike ``add``)
    does not provide it on the DHT, whose lookups would dial peers of peers and
    turn the chain into a mesh.
    """
    work.run("export", record_id, "-o", car)
    daemon.cli.run("import", car)


def test_a_remix_crosses_a_chain_of_six_daemons_and_notifies_the_far_end(
    daemons: Daemons, tmp_path: Path
) -> None:
    # No content is fetched: a fetch looks for providers on the DHT, whose lookups dial
    # peers of peers and would turn the chain into a mesh.
    chain = [
        daemons.start(prepare(daemons, f"n{number}", auto_fetch="none")) for number in range(6)
    ]
    for this, following in itertools.pairwise(chain):  # 0 - 1 - 2 - 3 - 4 - 5
        this.cli.run("connect", address(following))
    expected_peers = [1, 2, 2, 2, 2, 1]

    def peer_counts() -> list[int]:
        return [len(cast(list[Any], daemon.cli.json("peers"))) for daemon in chain]

    eventually(
        lambda: [gossip_stats(daemon)["mesh_peers"] for daemon in chain] == expected_peers,
        30,
        "the chain is meshed",
    )
    first, last = chain[0], chain[-1]

    # The far end's artist publishes a poem; it crosses the chain to the first node.
    poet = offline_copy(last.cli, tmp_path / "poet")
    poem = tmp_path / "poem.txt"
    poem.write_text("snow on snow\n")
    original = cast(dict[str, Any], poet.json("add", poem, "--title", "Winter poem"))
    publish_by_import(last, poet, original["id"], tmp_path / "poem.car")
    eventually(lambda: has_record(first, original["id"]), 20, "the poem reaches the other end")

    # The first node's artist remixes it; the remix crosses the chain back.
    painter = offline_copy(first.cli, tmp_path / "painter")
    painter.run("import", tmp_path / "poem.car")
    drawing = tmp_path / "drawing.txt"
    drawing.write_text("* * *\n")
    remix = cast(dict[str, Any], painter.json("remix", original["id"], drawing, "--title", "Snow"))
    publish_by_import(first, painter, remix["id"], tmp_path / "remix.car")
    eventually(lambda: has_record(last, remix["id"]), 20, "the remix reaches the far end")
    for daemon in chain:  # every hop stored both on their way, as announced (not synced)
        stats = gossip_stats(daemon)
        assert stats["stored_gossip"] == (1 if daemon in (first, last) else 2)
        assert stats["invalid_messages"] == 0
        assert stats["sync"]["records_received"] == 0
    assert peer_counts() == expected_peers  # still a chain: every record went hop by hop

    notifications = cast(dict[str, Any], last.cli.json("notifications"))["notifications"]
    assert [(n["kind"], n["record"], n["subject"]) for n in notifications] == [
        ("remix", remix["id"], original["id"])
    ]
    assert cast(dict[str, Any], first.cli.json("notifications"))["notifications"] == []


# --- (b) a daemon that was down ------------------------------------------------------------


def test_a_daemon_down_during_an_announcement_has_it_after_restarting(
    daemons: Daemons, tmp_path: Path
) -> None:
    sync_interval = 3
    a = daemons.start(prepare(daemons, "a", sync_interval=sync_interval))
    b_cli = prepare(daemons, "b", bootstrap=(address(a),), sync_interval=sync_interval)
    b = daemons.start(b_cli)
    eventually(lambda: gossip_stats(a)["mesh_peers"] == 1, 20, "A and B are meshed")
    assert b.stop() == 0

    work = tmp_path / "while-away.txt"
    work.write_text("announced while B was down\n")
    added = cast(dict[str, Any], a.cli.json("add", work))
    assert record_count(a) == 1
    time.sleep(6)  # older than GossipSub's message cache (5 heartbeats): only sync brings it
    assert not has_record_offline(b_cli, added["id"])

    b = daemons.start(b_cli)  # the same data directory: dials A again (bootstrap)
    eventually(
        lambda: has_record(b, added["id"]),
        sync_interval * 1.2 + 1,
        "B catches up within one sync period of restarting",
    )
    assert gossip_stats(b)["stored_sync"] == 1


# --- (c) a rogue host ----------------------------------------------------------------------


def bad_messages(identity: Identity, collab: SignedRecord) -> dict[str, bytes]:
    """One message of each kind an honest node must refuse, by the reason it gives."""
    good = signed_contributions(identity, 1, tag="rogue")[0]
    signature_at = good.encoded.index(good.signature)
    forged = bytearray(good.encoded)
    forged[signature_at] ^= 1
    top = msgpack.unpackb(good.encoded, raw=False)
    reordered = msgpack.packb(dict(reversed(list(top.items()))), use_bin_type=True)
    future = sign_record(
        good.body, private_key=identity.private_key, created_ms=now_ms() + 3_600_000
    )
    return {
        "bad-signature": bytes(forged),
        "non-canonical": reordered,
        "too-large": good.encoded + b"\x00" * MAX_RECORD_SIZE,
        "from-the-future": future.encoded,
        "random": os.urandom(300),
    }


async def wait_async(
    condition: Callable[[], bool], seconds: float, what: str, *, blocking: bool = True
) -> None:
    """Poll ``condition`` (in a worker thread if ``blocking``: the rogue host needs the loop)."""
    with trio.move_on_after(seconds):
        while True:
            if await trio.to_thread.run_sync(condition) if blocking else condition():
                return
            await trio.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


async def test_a_rogue_host_gets_nothing_into_honest_stores(
    daemons: Daemons, tmp_path: Path
) -> None:
    # rogue - honest1 - honest2; honest1 follows a collab, so that topic is open to the rogue too.
    honest2 = daemons.start(prepare(daemons, "honest2"))
    honest1_cli = prepare(daemons, "honest1", bootstrap=(address(honest2),))
    rogue_dir = DataDir(tmp_path / "rogue")
    rogue_dir.init()
    rogue_identity = rogue_dir.load_identity()
    collab = sign_record(
        Collab(title="Open call"), private_key=rogue_identity.private_key, created_ms=now_ms()
    )
    honest1_cli.run("follow", "--collab", str(collab.id))
    honest1 = daemons.start(honest1_cli)
    eventually(lambda: gossip_stats(honest2)["mesh_peers"] == 1, 20, "honest nodes meshed")

    host = Host(rogue_identity.seed)
    router = GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        max_messages_per_topic_per_second=1000.0,
    )
    pubsub = Pubsub(host.libp2p_host(), router)  # no validator: it sends anything
    messages = bad_messages(rogue_identity, collab)
    # On the collab's topic: a valid record that is no contribution to it.
    stray = signed_contributions(rogue_identity, 1, tag="stray")[0]
    topic = collab_topic(collab.id)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            await pubsub.subscribe(ANNOUNCE_TOPIC)
            await pubsub.subscribe(topic)
            with trio.fail_after(10):
                await host.connect(address(honest1))
            honest1_id = str(honest1.node_info()["peer_id"])
            await wait_async(
                lambda: any(str(peer.to_base58()) == honest1_id for peer in router.mesh[topic]),
                20,
                "the rogue is in honest1's mesh of the collab's topic",
                blocking=False,
            )
            await pubsub.publish([topic], stray.encoded)
            for data in messages.values():
                await pubsub.publish([ANNOUNCE_TOPIC], data)

            await wait_async(
                lambda: gossip_stats(honest1)["invalid_messages"] >= 5,
                20,
                "honest1 refuses the rogue's messages",
            )
            await wait_async(
                lambda: (
                    not any(
                        peer["peer_id"] == host.peer_id
                        for peer in cast(list[dict[str, Any]], honest1.cli.json("peers"))
                    )
                ),
                20,
                "honest1 bans the rogue",
            )
            nursery.cancel_scope.cancel()

    stats = gossip_stats(honest1)
    reasons = stats["invalid_reasons"]
    # Everything refused, each for its own reason (the rogue is banned at its fifth offence,
    # so what it sent after that may never have been looked at).
    assert sum(reasons.values()) >= 5
    assert set(reasons) <= {*messages, "wrong-topic", "malformed", "invalid-value"}
    assert {"wrong-topic", "bad-signature", "non-canonical", "too-large"} <= set(reasons)
    assert host.peer_id in stats["banned_peers"]
    assert record_count(honest1) == 0
    assert record_count(honest2) == 0
    assert gossip_stats(honest2)["valid_messages"] == 0
    assert not has_record(honest1, str(stray.id))


# --- (d) two large stores that differ a little -----------------------------------------------


def fill(cli: Cli, records: list[SignedRecord]) -> None:
    with Store(DataDir(cli.data_dir)) as store:
        for record in records:
            store.put_record(record)


def test_two_daemons_with_5000_records_in_common_converge(daemons: Daemons) -> None:
    a_cli = prepare(daemons, "a")
    b_cli = prepare(daemons, "b")
    author = DataDir(a_cli.data_dir).load_identity()
    common = signed_contributions(author, 5000)
    only_a = signed_contributions(author, 10, tag="only a")
    only_b = signed_contributions(DataDir(b_cli.data_dir).load_identity(), 10, tag="only b")
    fill(a_cli, common + only_a)
    fill(b_cli, common + only_b)
    a = daemons.start(a_cli)
    b_cli = prepare(daemons, "b", bootstrap=(address(a),))
    b = daemons.start(b_cli)  # B dials A: B initiates, and both fetch what they lack
    eventually(lambda: record_count(a) == record_count(b) == 5020, 30, "the stores converge")
    for daemon, theirs in ((a, only_b), (b, only_a)):
        for record in theirs:
            assert has_record(daemon, str(record.id))
        assert gossip_stats(daemon)["stored_sync"] == 10
    sync_a = gossip_stats(a)["sync"]
    sync_b = gossip_stats(b)["sync"]
    # Reconciliation cost a few KiB, not the 5,000 common ids (~180 KiB).
    assert sync_a["bytes_sent"] + sync_a["bytes_received"] < 32 * 1024
    assert sync_b["records_received"] == 10
