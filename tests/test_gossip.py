"""Announcements (GossipSub) and catch-up sync: real libp2p hosts on 127.0.0.1, real stores.

Every node here runs a ``Host``, a ``Gossip`` and a ``SyncService`` in one
trio process; a misbehaving peer is an ordinary node whose validator lets
everything through. Every wait is bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
import pytest
import trio

from node.client import open_trio_client
from node.daemon import Daemon, default_services
from node.datadir import DataDir, Identity
from node.events import EventBus
from node.fetch_schedule import FetchLimits
from node.gossip import (
    ANNOUNCE_TOPIC,
    FetchFunction,
    Gossip,
    GossipConfig,
    collab_topic,
    validate_announcement,
)
from node.gossip_service import GossipService
from node.host import Host
from node.network import Network, NetworkConfig
from node.social import follow_collab, followed_collabs, list_notifications, unfollow_collab
from node.store import Store
from node.sync_service import SyncService
from protocol.cid import Cid
from protocol.records import (
    MAX_RECORD_SIZE,
    Collab,
    Contribution,
    InvalidRecord,
    Parent,
    SignedRecord,
    sign_record,
    to_json,
)
from protocol.sync_wire import PROTOCOL_ID as SYNC_PROTOCOL
from tests.conftest import Cli
from tests.daemon_fixtures import loopback_config, running_daemons

if TYPE_CHECKING:
    from trio_typing import TaskStatus

LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)
FETCH = FetchLimits(give_up_after=10.0, stall_timeout=2.0, provider_search_interval=1.0)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def contribution(
    identity: Identity,
    number: int,
    *,
    parents: tuple[Cid, ...] = (),
    created_ms: int = 0,
    collab: Cid | None = None,
) -> SignedRecord:
    body = Contribution(
        title=f"work {number}",
        content=Cid.for_raw(f"content {number}".encode()),
        size=10,
        media_type="text/plain",
        license="CC-BY-4.0",
        parents=tuple(Parent(parent) for parent in parents),
        collab=collab,
    )
    return sign_record(
        body, private_key=identity.private_key, created_ms=created_ms or now_ms() - number
    )


@dataclass
class GossipNode:
    name: str
    identity: Identity
    host: Host
    store: Store
    gossip: Gossip
    sync: SyncService
    events: list[tuple[str, Mapping[str, object]]] = field(default_factory=list)

    @property
    def peer_id(self) -> str:
        return self.host.peer_id

    @property
    def addr(self) -> str:
        return self.host.listen_addrs()[0]

    def origins(self) -> list[object]:
        return [data["origin"] for name, data in self.events if name == "record.added"]

    async def record_count(self) -> int:
        return int((await trio.to_thread.run_sync(self.store.statistics))["records"])

    async def publish(self, record: SignedRecord) -> None:
        """What ``content.add`` does: store, then emit ``record.added`` (origin local)."""
        await trio.to_thread.run_sync(self.store.put_record, record)
        self.gossip.events.publish("record.added", {"record": to_json(record), "origin": "local"})


class Nodes:
    def __init__(self, nursery: trio.Nursery, root: Path) -> None:
        self.nursery = nursery
        self.root = root

    async def start(
        self, name: str, *, fetch: FetchFunction | None = None, **config: Any
    ) -> GossipNode:
        data_dir = DataDir(self.root / name)
        data_dir.init()
        identity = data_dir.load_identity()
        store = Store(data_dir)
        network = Network(store, identity.seed, NetworkConfig(listen_addrs=LOOPBACK, fetch=FETCH))
        host = network.host
        bus = EventBus()
        gossip = Gossip(host, store, bus, identity.public_key, GossipConfig(**config), fetch=fetch)
        sync = SyncService(
            host,
            store,
            gossip.accept_many,
            gossip.validate,
            strike=gossip.strike_peer,
        )
        node = GossipNode(name, identity, host, store, gossip, sync)
        bus.subscribe(
            frozenset({"record.added", "notification"}),
            lambda event, data: node.events.append((event, data)),
        )

        async def run(*, task_status: TaskStatus[None]) -> None:
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(network.run)
                    await nursery.start(gossip.run)
                    await nursery.start(sync.run)
                    task_status.started()
            finally:
                store.close()

        with trio.fail_after(10):
            await self.nursery.start(run)
        return node


@asynccontextmanager
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    async with trio.open_nursery() as nursery:
        yield Nodes(nursery, tmp_path)
        nursery.cancel_scope.cancel()


async def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    with trio.fail_after(seconds):
        while True:
            if condition():
                return
            await trio.sleep(0.02)


async def connect(a: GossipNode, b: GossipNode) -> None:
    """Connect and wait until each has the other in its announce-topic mesh."""
    with trio.fail_after(10):
        await a.host.connect(b.addr)

    def meshed(x: GossipNode, y: GossipNode) -> bool:
        mesh = x.gossip.router.mesh.get(ANNOUNCE_TOPIC, set())
        return any(str(peer.to_base58()) == y.peer_id for peer in mesh)

    await eventually(lambda: meshed(a, b) and meshed(b, a))


# --- validation, without a network ------------------------------------------------------


def test_validate_announcement_rejects_future_records(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "a")
    data_dir.init()
    identity = data_dir.load_identity()
    now = now_ms()
    record = contribution(identity, 1, created_ms=now + 11 * 60 * 1000)
    with pytest.raises(InvalidRecord) as caught:
        validate_announcement(record.encoded, now_ms=now, max_clock_skew_ms=10 * 60 * 1000)
    assert caught.value.reason == "from-the-future"
    fine = contribution(identity, 1, created_ms=now + 9 * 60 * 1000)
    assert validate_announcement(fine.encoded, now_ms=now, max_clock_skew_ms=10 * 60 * 1000)


# --- gossip between hosts -------------------------------------------------------------


@pytest.mark.slow
async def test_announcements_reach_peers_of_peers(tmp_path: Path) -> None:
    async with nodes(tmp_path) as started:
        a = await started.start("a")
        b = await started.start("b")
        c = await started.start("c")
        await connect(b, a)
        await connect(c, b)  # C only knows B: it hears of A's record by forwarding
        record = contribution(a.identity, 1)
        await a.publish(record)
        await eventually(lambda: c.origins() == ["gossip"] and b.origins() == ["gossip"])
        assert await trio.to_thread.run_sync(c.store.has_record, record.id)
        assert a.gossip.statistics()["announced"] == 1


@pytest.mark.slow
async def test_records_the_cli_stored_directly_are_announced(tmp_path: Path) -> None:
    async with nodes(tmp_path) as started:
        a = await started.start("a", own_records_poll=0.1)
        b = await started.start("b")
        await connect(b, a)
        record = contribution(a.identity, 1)
        # `remixnet collab open` while the daemon runs: straight into the store, no event.
        await trio.to_thread.run_sync(a.store.put_record, record)
        await eventually(lambda: b.origins() == ["gossip"])
        assert a.gossip.statistics()["announced"] == 1


@pytest.mark.slow
async def test_invalid_announcements_are_dropped_and_the_sender_banned(tmp_path: Path) -> None:
    async with nodes(tmp_path) as started:
        bad = await started.start("bad")
        b = await started.start("b", invalid_before_ban=4)
        c = await started.start("c")
        await connect(b, bad)
        await connect(c, b)
        bad.gossip.pubsub.validator = lambda forwarder, message: True  # lets anything out
        good = contribution(bad.identity, 1)
        signature_at = good.encoded.index(good.signature)
        forged = bytearray(good.encoded)
        forged[signature_at] ^= 1
        top = msgpack.unpackb(good.encoded, raw=False)
        reordered = msgpack.packb(dict(reversed(list(top.items()))), use_bin_type=True)
        future = contribution(bad.identity, 2, created_ms=now_ms() + 3600 * 1000)
        oversize = good.encoded + b"\x00" * MAX_RECORD_SIZE
        for data in (bytes(forged), reordered, future.encoded, oversize):
            await bad.gossip.pubsub.publish([ANNOUNCE_TOPIC], data)
        await eventually(lambda: b.gossip.statistics()["invalid_messages"] == 4)
        stats = b.gossip.statistics()
        assert stats["invalid_reasons"] == {
            "bad-signature": 1,
            "non-canonical": 1,
            "from-the-future": 1,
            "too-large": 1,
        }
        assert stats["strikes"] == {bad.peer_id: 4}
        await eventually(lambda: not b.host.is_connected(bad.peer_id))
        assert stats["banned_peers"] == [bad.peer_id]
        assert await b.record_count() == 0
        await trio.sleep(0.5)  # C would have had them by now
        assert c.gossip.statistics().get("invalid_messages", 0) == 0
        assert c.gossip.statistics().get("valid_messages", 0) == 0
        assert await c.record_count() == 0


@pytest.mark.slow
async def test_a_burst_of_200_records_all_arrive(tmp_path: Path) -> None:
    async with nodes(tmp_path) as started:
        a = await started.start("a")
        b = await started.start("b")
        c = await started.start("c")
        await connect(b, a)
        await connect(c, b)  # B relays the whole burst to C
        records = [contribution(a.identity, number) for number in range(200)]
        await trio.to_thread.run_sync(lambda: [a.store.put_record(r) for r in records])
        for record in records:  # within a fraction of a second
            a.gossip.events.publish("record.added", {"record": to_json(record), "origin": "local"})
        await eventually(lambda: len(b.origins()) == len(c.origins()) == 200, seconds=20)
        assert set(b.origins()) == set(c.origins()) == {"gossip"}
        assert await c.record_count() == 200
        assert b.gossip.statistics()["receive_dropped"] == 0


@pytest.mark.slow
async def test_a_remix_of_my_work_notifies_me(tmp_path: Path) -> None:
    async with nodes(tmp_path) as started:
        fetched: list[tuple[Cid, list[str]]] = []

        async def fetch(root: Cid, providers: Sequence[str]) -> None:
            fetched.append((root, list(providers)))

        a = await started.start("a")
        b = await started.start("b", fetch=fetch)  # auto_fetch: lineage-of-mine
        await connect(b, a)
        unrelated = contribution(a.identity, 3)
        await a.publish(unrelated)
        mine = contribution(b.identity, 1)
        await b.publish(mine)
        await eventually(lambda: "gossip" in a.origins() and "gossip" in b.origins())
        remix = contribution(a.identity, 2, parents=(mine.id,))
        await a.publish(remix)
        await eventually(lambda: any(name == "notification" for name, _ in b.events))
        notification = next(data for name, data in b.events if name == "notification")
        assert notification["record"] == str(remix.id)
        assert notification["subject"] == str(mine.id)
        stored = await trio.to_thread.run_sync(
            lambda: list_notifications(b.store, unread_only=True, limit=10)
        )
        assert [n.record_id for n in stored] == [remix.id]
        assert not any(name == "notification" for name, _ in a.events)
        # Only the remix of B's work is fetched: its content, from its author.
        assert isinstance(remix.body, Contribution)
        await eventually(lambda: len(fetched) == 1)
        assert fetched == [(remix.body.content, [a.peer_id])]


# --- catch-up sync ---------------------------------------------------------------------


@pytest.mark.slow
async def test_sync_brings_what_a_node_missed_offline(tmp_path: Path) -> None:
    async with nodes(tmp_path) as started:
        a = await started.start("a", own_records_poll=3600)
        records = [contribution(a.identity, number) for number in range(50)]
        for record in records[:25]:  # nobody listens: announced to nobody
            await a.publish(record)
        # Made offline (the CLI without a daemon): never announced at all.
        await trio.to_thread.run_sync(lambda: [a.store.put_record(r) for r in records[25:]])
        b = await started.start("b", own_records_poll=3600)  # B's new records: by sync only
        theirs = [contribution(b.identity, number) for number in range(5)]
        await trio.to_thread.run_sync(lambda: [b.store.put_record(r) for r in theirs])
        with trio.fail_after(10):
            await b.host.connect(a.addr)  # B dialled: B initiates; both fetch what they need
        await eventually(lambda: len(b.origins()) == 50 and len(a.origins()) == 25 + 5)
        assert a.origins()[25:] == ["sync"] * 5  # the responder fetched too
        # py-libp2p replays its recent-message cache to a new peer, so some of
        # the announced ones may come by gossip; each record is stored once.
        assert set(b.origins()) <= {"sync", "gossip"}
        assert int(b.sync.statistics()["records_received"]) >= 25
        assert await b.record_count() == 55
        await eventually(lambda: not b.sync.busy(a.peer_id) and not a.sync.busy(b.peer_id))
        # Nothing differs now: a session costs a few hundred bytes (one round of
        # range fingerprints), a fraction of the records themselves.
        before = b.sync.statistics()
        with trio.fail_after(10):
            assert await b.sync.sync_with(a.peer_id) == 0
        after = b.sync.statistics()
        exchanged = int(after["bytes_sent"]) + int(after["bytes_received"])
        exchanged -= int(before["bytes_sent"]) + int(before["bytes_received"])
        assert 0 < exchanged < 1024
        assert exchanged * 10 < sum(len(record.encoded) for record in records)


# --- following a collab ----------------------------------------------------------------


def collab_record(identity: Identity, title: str = "Winter sounds") -> SignedRecord:
    return sign_record(Collab(title=title), private_key=identity.private_key, created_ms=now_ms())


def knows_subscribed(publisher: Gossip, peer_id: str, topic: str) -> bool:
    """``publisher`` has heard that ``peer_id`` subscribed to ``topic``."""
    peers = publisher.pubsub.peer_topics.get(topic, set())
    return any(str(peer.to_base58()) == peer_id for peer in peers)


async def test_topics_joined_or_left_while_a_peer_is_added_reach_it(tmp_path: Path) -> None:
    """EDGE (py-libp2p): a subscription changed between B's hello and B's registering A
    was told to nobody. B's hello to A is held until B has joined one topic and left another."""
    async with nodes(tmp_path) as started:
        a = await started.start("a")
        b = await started.start("b")
        joined, left = collab_topic(collab_record(a.identity).id), "remixnet/test/left"
        await b.gossip.pubsub.subscribe(left)
        hello_held, release = trio.Event(), trio.Event()
        libp2p_host = b.gossip.pubsub.host
        open_stream = libp2p_host.new_stream

        async def hold_the_hello(peer_id: Any, protocols: Sequence[Any]) -> Any:
            stream = await open_stream(peer_id, protocols)
            if list(protocols) != list(b.gossip.pubsub.protocols):
                return stream
            write = stream.write

            async def held_write(data: bytes) -> None:
                setattr(stream, "write", write)  # noqa: B010 - only the hello is held
                hello_held.set()
                await release.wait()
                await write(data)

            setattr(stream, "write", held_write)  # noqa: B010
            return stream

        setattr(libp2p_host, "new_stream", hold_the_hello)  # noqa: B010
        with trio.fail_after(10):
            await a.host.connect(b.addr)
            await hello_held.wait()
        await b.gossip.pubsub.subscribe(joined)
        await b.gossip.pubsub.unsubscribe(left)
        release.set()
        # B sends "joined" after its hello (which names "left"), and "left" after "joined".
        await eventually(
            lambda: (
                knows_subscribed(a.gossip, b.peer_id, joined)
                and not knows_subscribed(a.gossip, b.peer_id, left)
            ),
            seconds=5,
        )
        assert knows_subscribed(a.gossip, b.peer_id, ANNOUNCE_TOPIC)


async def test_a_message_read_as_pubsub_stops_does_not_take_the_host_down(
    tmp_path: Path,
) -> None:
    """EDGE (py-libp2p): for one scheduling pass as pubsub stops, its task nursery is
    closed while its manager still says it runs; a message read by a reader (a task
    of the host, which lives on) then raised out of the host. The pass is held open
    here by hand: the service has stopped, and its manager is made to say it runs."""
    async with nodes(tmp_path) as started:
        a = await started.start("a")
        b = await started.start("b")
        await connect(a, b)
        manager = b.gossip.pubsub.manager
        with trio.fail_after(10):
            await manager.stop()
        finished = manager._finished  # type: ignore[attr-defined]
        manager._finished = trio.Event()  # type: ignore[attr-defined]
        record = contribution(a.identity, 1)
        try:
            assert manager.is_running
            await a.gossip.announce(record)
            await eventually(lambda: a.gossip.statistics()["announced"] == 1)
            await trio.sleep(0.5)  # B's reader has read it: without the EDGE, B's host fails
        finally:
            manager._finished = finished  # type: ignore[attr-defined]
        assert not await trio.to_thread.run_sync(b.store.has_record, record.id)


@pytest.mark.slow
async def test_a_followed_collab_brings_its_contributions_until_unfollowed(
    tmp_path: Path,
) -> None:
    async with nodes(tmp_path) as started:
        a = await started.start("a")
        b = await started.start("b")
        await connect(b, a)
        await eventually(lambda: not b.sync.busy(a.peer_id))  # the sync on connect is over
        collab = collab_record(a.identity)
        topic = collab_topic(collab.id)
        await trio.to_thread.run_sync(follow_collab, b.store, collab.id)
        await b.gossip.set_collab_followed(collab.id, True)
        assert topic in b.gossip.pubsub.topic_ids
        await eventually(lambda: knows_subscribed(a.gossip, b.peer_id, topic))
        # Published on the collab's topic only: B hears of it only because it follows it.
        answer = contribution(a.identity, 1, collab=collab.id)
        await a.gossip.pubsub.publish([topic], answer.encoded)
        await eventually(lambda: b.origins() == ["gossip"])
        assert await trio.to_thread.run_sync(b.store.has_record, answer.id)
        # A record that does not answer this collab is refused on its topic.
        a.gossip.pubsub.validator = lambda forwarder, message: True
        elsewhere = contribution(a.identity, 2, collab=collab_record(a.identity, "Other").id)
        await a.gossip.pubsub.publish([topic], elsewhere.encoded)
        await eventually(lambda: b.gossip.statistics()["invalid_reasons"] == {"wrong-topic": 1})
        assert not await trio.to_thread.run_sync(b.store.has_record, elsewhere.id)

        await trio.to_thread.run_sync(unfollow_collab, b.store, collab.id)
        await b.gossip.set_collab_followed(collab.id, False)
        assert topic not in b.gossip.pubsub.topic_ids
        await eventually(lambda: not knows_subscribed(a.gossip, b.peer_id, topic))
        late = contribution(a.identity, 3, collab=collab.id)
        await a.gossip.pubsub.publish([topic], late.encoded)
        await trio.sleep(1.0)  # it arrived within 0.1 s while B followed the collab
        assert not await trio.to_thread.run_sync(b.store.has_record, late.id)
        assert b.origins() == ["gossip"]


@pytest.mark.slow
async def test_the_daemon_follows_collabs_at_start_and_through_rpc(tmp_path: Path) -> None:
    """social.follow_collab / unfollow_collab change a running daemon's subscriptions."""
    data_dirs = [DataDir(tmp_path / name) for name in ("a", "b")]
    for data_dir in data_dirs:
        data_dir.init()
    a_identity = data_dirs[0].load_identity()
    at_start, live = collab_record(a_identity, "Followed before"), collab_record(a_identity)
    with Store(data_dirs[1]) as store:  # `remixnet follow --collab` while no daemon runs
        follow_collab(store, at_start.id)
    async with trio.open_nursery() as nursery:
        daemons = []
        for data_dir in data_dirs:
            daemon = Daemon(data_dir, loopback_config(), services=default_services())
            with trio.fail_after(20):
                await nursery.start(daemon.run)
            daemons.append(daemon)
        gossip_a, gossip_b = (
            next(s for s in daemon.services if isinstance(s, GossipService)).gossip
            for daemon in daemons
        )
        assert gossip_a is not None
        assert gossip_b is not None
        assert collab_topic(at_start.id) in gossip_b.pubsub.topic_ids
        b_rpc = daemons[1].rpc
        assert b_rpc is not None
        async with open_trio_client(b_rpc.unix_path) as client_b:
            with trio.fail_after(10):
                await client_b.call("peers.connect", {"address": gossip_a.host.listen_addrs()[0]})
            followed = await client_b.call("social.follow_collab", {"collab": str(live.id)})
            assert followed == {"collab": str(live.id), "changed": True}
            topic = collab_topic(live.id)
            assert topic in gossip_b.pubsub.topic_ids
            listed = await client_b.call("social.following")
            assert [entry["collab"] for entry in listed["collabs"]] == [
                str(at_start.id),
                str(live.id),
            ]
            await eventually(lambda: knows_subscribed(gossip_a, gossip_b.host.peer_id, topic))
            answer = contribution(a_identity, 1, collab=live.id)
            await gossip_a.pubsub.publish([topic], answer.encoded)
            store_b = daemons[1].node.store if daemons[1].node else None
            assert store_b is not None
            await eventually(lambda: gossip_b.statistics()["stored_gossip"] == 1)
            assert await trio.to_thread.run_sync(store_b.has_record, answer.id)

            unfollowed = await client_b.call("social.unfollow_collab", [str(live.id)])
            assert unfollowed == {"collab": str(live.id), "changed": True}
            assert topic not in gossip_b.pubsub.topic_ids
            await eventually(lambda: not knows_subscribed(gossip_a, gossip_b.host.peer_id, topic))
            late = contribution(a_identity, 2, collab=live.id)
            await gossip_a.pubsub.publish([topic], late.encoded)
            await trio.sleep(1.0)
            assert not await trio.to_thread.run_sync(store_b.has_record, late.id)
            assert gossip_b.statistics()["stored_gossip"] == 1
            assert await trio.to_thread.run_sync(followed_collabs, store_b) == [at_start.id]
        for daemon in daemons:
            daemon.request_shutdown()


def test_follow_a_collab_offline(initialised_cli: Cli, tmp_path: Path) -> None:
    me = initialised_cli
    opened = me.json("collab", "open", "--title", "Winter sounds")
    collab_id = str(opened["id"])  # type: ignore[index]
    assert "following collab" in me.run("follow", "--collab", collab_id).text
    assert me.json("follow", "--collab", collab_id)["changed"] is False  # type: ignore[index]
    assert me.json("following") == {
        "following": [],
        "collabs": [{"collab": collab_id, "title": "Winter sounds"}],
    }
    work = tmp_path / "poem.txt"
    work.write_text("a poem\n")
    added = str(me.json("add", work)["id"])  # type: ignore[index]
    assert "is not a collab" in me.fail("follow", "--collab", added).stderr
    assert "one of them" in me.run("follow", check=False).stderr
    assert me.run("follow", "me", "--collab", collab_id, check=False).returncode == 2
    assert "unfollowed collab" in me.run("unfollow", "--collab", collab_id).text
    assert me.json("following") == {"following": [], "collabs": []}


# --- the social commands, offline ------------------------------------------------------


def test_follow_feed_and_profiles_offline(initialised_cli: Cli, tmp_path: Path) -> None:
    me = initialised_cli
    other = Cli(tmp_path / "other")
    other.run("init")
    other_author = str(other.json("id")["author"])  # type: ignore[index]
    work = tmp_path / "poem.txt"
    work.write_text("a poem\n")
    added = other.json("add", work, "--title", "A poem")
    record_id = str(added["id"])  # type: ignore[index]
    car = tmp_path / "poem.car"
    other.run("export", record_id, "-o", car)
    me.run("import", car)

    assert "following" in me.run("follow", other_author).text
    assert me.json("following") == {
        "following": [{"author": other_author, "name": None}],
        "collabs": [],
    }
    records = me.json("feed")["records"]  # type: ignore[index]
    assert [view["id"] for view in records] == [record_id]
    me.run("profile", "set", "--name", "Me", "--bio", "Poems.")
    shown = me.json("profile", "show", "me")["profile"]  # type: ignore[index]
    assert (shown["name"], shown["bio"]) == ("Me", "Poems.")
    assert "unfollowed" in me.run("unfollow", other_author).text
    assert me.json("feed") == {"records": []}
    assert "not a valid author id" in me.fail("follow", "nobody").stderr
    assert me.json("notifications") == {"notifications": []}


# --- the daemon's wiring -----------------------------------------------------------------


@pytest.mark.slow
async def test_daemons_announce_what_content_add_publishes(tmp_path: Path) -> None:
    """Two daemons with the default services: `content.add` on one reaches the other."""
    async with running_daemons(tmp_path, "a", "b") as (a, b):
        assert a.rpc is not None
        assert b.rpc is not None
        work = tmp_path / "poem.txt"
        work.write_text("a poem\n")
        async with (
            open_trio_client(a.rpc.unix_path) as client_a,
            open_trio_client(b.rpc.unix_path) as client_b,
        ):
            address = (await client_a.call("node.status"))["listen_addrs"][0]
            with trio.fail_after(10):
                await client_b.call("peers.connect", {"address": address})
            gossip_a = next(s for s in a.services if isinstance(s, GossipService)).gossip
            assert gossip_a is not None
            await eventually(lambda: bool(gossip_a.router.mesh.get(ANNOUNCE_TOPIC)))
            added = await client_a.call("content.add", {"path": str(work)})

            async def received() -> bool:
                listed = await client_b.call("records.list", {"author": None})
                return any(view["id"] == added["id"] for view in listed["records"])

            with trio.fail_after(10):
                while True:
                    if await received():
                        break
                    await trio.sleep(0.05)
            status = await client_b.call("node.status")
            assert status["services"]["gossip"]["stored_gossip"] == 1


@pytest.mark.slow
async def test_a_malformed_sync_message_is_a_strike(tmp_path: Path) -> None:
    async with nodes(tmp_path) as started:
        a = await started.start("a")
        bad = await started.start("bad")
        with trio.fail_after(10):
            await bad.host.connect(a.addr)
        await eventually(lambda: a.sync.statistics()["sessions_answered"] == 1)
        await eventually(lambda: not a.sync.busy(bad.peer_id))  # the session on connect
        with trio.fail_after(10):
            stream = await bad.host.open_stream(a.peer_id, SYNC_PROTOCOL)
            await stream.write(b"\x03\x01\xff\xff")  # INIT with a range that is no range
        await eventually(lambda: a.gossip.strikes[bad.peer_id] == 1)
        assert a.sync.statistics()["peer_errors"] == 1
