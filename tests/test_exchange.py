"""Block exchange: real libp2p hosts on 127.0.0.1 in one trio process, real stores.

Providers that misbehave on purpose (slow, partial, lying) are subclasses of
``BlockServer`` defined here; production code has no such switches. Every
wait is bounded with ``trio.fail_after``. The scheduling
bookkeeping is tested without a network in ``test_fetch_schedule.py``.
"""

from __future__ import annotations

import gc
import os
import socket
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import multiaddr
import pytest
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.transport.tcp.tcp import TCPListener

from node.datadir import DataDir
from node.exchange import WRITE_SIZE, BlockServer, ServeLimits
from node.fetch_outcome import FetchError, FetchProgress
from node.fetch_schedule import MIB, FetchLimits
from node.host import NETWORK_ERRORS, Host, HostConfig, ListenError, Stream
from node.network import Network, NetworkConfig
from node.store import Store
from node.transfer import add_file, iter_content
from protocol.cid import RAW, Cid
from protocol.content import CHUNK_SIZE, dag_cids
from protocol.identity import author_id
from protocol.wire import (
    MAX_RESPONSE_FRAME_SIZE,
    PROTOCOL_ID,
    Abort,
    BlockData,
    DontHave,
    FrameDecoder,
    Message,
    Want,
    encode,
)
from tests.conftest import write_random_file

if TYPE_CHECKING:
    from trio_typing import TaskStatus

LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)
DEFAULT_SERVE = ServeLimits()
TEST_FETCH = FetchLimits(
    give_up_after=10.0, stall_timeout=2.0, provider_search_interval=1.0, retry_peer_after=1.0
)


# --- nodes ---------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    network: Network
    store: Store
    scope: trio.CancelScope
    stopped: trio.Event

    @property
    def peer_id(self) -> str:
        return self.network.peer_id

    @property
    def addr(self) -> str:
        return self.network.listen_addrs()[0]

    @property
    def served(self) -> dict[str, int]:
        return self.network.server.statistics()

    async def stop(self) -> None:
        self.scope.cancel()
        with trio.fail_after(10):
            await self.stopped.wait()


class Nodes:
    """Starts nodes in one nursery; they all stop when the ``nodes`` block ends."""

    def __init__(self, nursery: trio.Nursery, root: Path) -> None:
        self.nursery = nursery
        self.root = root

    async def start(
        self,
        name: str,
        *,
        server: Callable[[Store], BlockServer] | None = None,
        fetch: FetchLimits = TEST_FETCH,
        serve: ServeLimits = DEFAULT_SERVE,
        bootstrap: tuple[str, ...] = (),
    ) -> Node:
        data_dir = DataDir(self.root / name)
        data_dir.init()
        store = Store(data_dir)
        config = NetworkConfig(listen_addrs=LOOPBACK, bootstrap=bootstrap, fetch=fetch, serve=serve)
        network = Network(
            store,
            data_dir.load_identity().seed,
            config,
            block_server=server(store) if server is not None else None,
        )
        node = Node(name, network, store, trio.CancelScope(), trio.Event())

        async def run(*, task_status: TaskStatus[None]) -> None:
            try:
                with node.scope:
                    await network.run(task_status=task_status)
            finally:
                store.close()
                node.stopped.set()

        with trio.fail_after(10):
            await self.nursery.start(run)
        return node


@asynccontextmanager
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    async with trio.open_nursery() as nursery:
        yield Nodes(nursery, tmp_path)
        nursery.cancel_scope.cancel()


async def add_random(node: Node, tmp_path: Path, size: int, seed: int) -> tuple[Cid, bytes]:
    path = tmp_path / f"{node.name}-{seed}.bin"
    data = write_random_file(path, size, seed)
    added = await trio.to_thread.run_sync(add_file, node.store, path)
    return added.root, data


async def content_of(node: Node, root: Cid) -> bytes:
    return await trio.to_thread.run_sync(lambda: b"".join(iter_content(node.store, root)))


async def blocks_under(node: Node, root: Cid) -> list[Cid]:
    return await trio.to_thread.run_sync(lambda: list(dag_cids(root, node.store.get_block)))


async def stored_count(node: Node, cids: list[Cid]) -> int:
    return await trio.to_thread.run_sync(lambda: sum(map(node.store.has_block, cids)))


async def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``condition`` (a statistic of another node, say) until it holds."""
    with trio.fail_after(seconds):
        while True:
            if condition():
                return
            await trio.sleep(0.01)


# --- providers that misbehave on purpose -----------------------------------------------


class SlowServer(BlockServer):
    """Takes ``delay`` seconds per block, so that a transfer lasts long enough to interrupt."""

    delay = 0.02

    async def load_blocks(self, cids: list[Cid]) -> list[bytes | None]:
        await trio.sleep(self.delay * len(cids))
        return await super().load_blocks(cids)


class LyingServer(BlockServer):
    """Serves every block it has with one bit flipped."""

    async def load_blocks(self, cids: list[Cid]) -> list[bytes | None]:
        return [
            None if data is None else bytes([data[0] ^ 1]) + data[1:] if data else b"?"
            for data in await super().load_blocks(cids)
        ]


class RecordedStream:
    """A real stream whose writes are recorded (their sizes) on their way out."""

    def __init__(self, stream: Stream, writes: list[int]) -> None:
        self.stream = stream
        self.writes = writes

    async def read(self, n: int | None = None) -> bytes:
        return await self.stream.read(n)

    async def write(self, data: bytes) -> None:
        self.writes.append(len(data))
        await self.stream.write(data)

    async def close(self) -> None:
        await self.stream.close()

    async def reset(self) -> None:
        await self.stream.reset()


class RecordingServer(BlockServer):
    """Serves as usual and records the size of every write to every stream it serves."""

    writes: list[int]

    async def handle_stream(self, stream: Stream, peer_id: str) -> None:
        if not hasattr(self, "writes"):
            self.writes = []
        await super().handle_stream(RecordedStream(stream, self.writes), peer_id)

    @staticmethod
    def writes_of(node: Node) -> list[int]:
        server = node.network.server
        assert isinstance(server, RecordingServer)
        return server.writes


def partial_server(allowed: set[Cid]) -> Callable[[Store], BlockServer]:
    class PartialServer(BlockServer):
        async def load_blocks(self, cids: list[Cid]) -> list[bytes | None]:
            blocks = await super().load_blocks(cids)
            return [
                data if cid in allowed else None for cid, data in zip(cids, blocks, strict=True)
            ]

    return PartialServer


# --- fetching ------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_peer_known_only_by_address_gives_identical_bytes(tmp_path: Path) -> None:
    async with nodes(tmp_path) as net:
        a = await net.start("a")
        b = await net.start("b")
        seed = DataDir(tmp_path / "a").load_identity()
        assert a.peer_id == author_id(seed.public_key)
        root, data = await add_random(a, tmp_path, 3 * CHUNK_SIZE + 1234, seed=1)
        progress: list[FetchProgress] = []
        with trio.fail_after(30):
            assert await b.network.connect(a.addr) == a.peer_id
            result = await b.network.fetch(root, pin=True, on_progress=progress.append)
        assert await content_of(b, root) == data
        assert result.blocks_fetched == 5  # 4 leaves and the root
        assert result.blocks_present == 0
        assert result.bytes_by_peer == {a.peer_id: result.bytes_fetched}
        assert result.total_bytes == len(data)
        assert result.pinned
        assert root in [cid for cid, _ in b.store.pins()]
        assert progress[-1].bytes_fetched == result.bytes_fetched
        assert progress[-1].total_bytes == len(data)
        assert [peer["peer_id"] for peer in b.network.peers()] == [a.peer_id]
        with trio.fail_after(30):
            again = await b.network.fetch(root)
        assert (again.blocks_fetched, again.blocks_present) == (0, 5)


@pytest.mark.slow
async def test_three_providers_from_the_dht_one_closing_mid_transfer(tmp_path: Path) -> None:
    spread = FetchLimits(
        peer_window_bytes=MIB, give_up_after=10.0, provider_search_interval=1.0, stall_timeout=2.0
    )
    async with nodes(tmp_path) as net:
        providers = [await net.start(name, server=SlowServer) for name in "acd"]
        a, c, d = providers
        b = await net.start("b", fetch=spread)
        size = 64 * CHUNK_SIZE
        for provider in providers:
            root, data = await add_random(provider, tmp_path, size, seed=2)
        with trio.fail_after(30):
            for node in (c, d, b):
                await node.network.connect(a.addr)  # a is everybody's bootstrap peer
            assert await c.network.provide(root)
            assert await d.network.provide(root)
        result: list[object] = []

        async def fetch() -> None:
            result.append(await b.network.fetch(root))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch)
                await eventually(lambda: c.served["blocks_served"] >= 3)
                await c.stop()
        (fetched,) = result
        assert await content_of(b, root) == data
        by_peer = fetched.bytes_by_peer  # type: ignore[attr-defined]
        assert set(by_peer) == {a.peer_id, c.peer_id, d.peer_id}  # c and d came from the DHT
        assert 0 < by_peer[c.peer_id] < size // 2
        assert sum(by_peer.values()) == fetched.bytes_fetched  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_a_provider_of_corrupt_blocks_is_banned_and_never_asked_again(
    tmp_path: Path,
) -> None:
    async with nodes(tmp_path) as net:
        liar = await net.start("liar", server=LyingServer)
        honest = [await net.start(name) for name in ("a", "d")]
        b = await net.start("b")
        for provider in (liar, *honest):
            root, data = await add_random(provider, tmp_path, 8 * CHUNK_SIZE, seed=3)
            second, second_data = await add_random(provider, tmp_path, 2 * CHUNK_SIZE, seed=4)
        result: list[object] = []

        async def fetch() -> None:
            result.append(await b.network.fetch(root))

        with trio.fail_after(60):
            await b.network.connect(liar.addr)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch)
                # Only the liar is known at first, so it is certainly asked.
                await eventually(lambda: b.network.bans.is_banned(liar.peer_id))
                for provider in honest:
                    await b.network.connect(provider.addr)
        (fetched,) = result
        assert await content_of(b, root) == data
        assert fetched.banned_peers == (liar.peer_id,)  # type: ignore[attr-defined]
        assert liar.peer_id not in fetched.bytes_by_peer  # type: ignore[attr-defined]
        await eventually(lambda: not b.network.host.is_connected(liar.peer_id))
        asked = liar.served["requests"]
        with trio.fail_after(30):
            await liar.network.connect(b.addr)  # even when the liar dials in again
            again = await b.network.fetch(second)
        assert await content_of(b, second) == second_data
        assert liar.served["requests"] == asked
        assert liar.peer_id not in again.bytes_by_peer


async def test_a_closing_tcp_listener_still_answers_for_its_addresses() -> None:
    # What identify asks when a peer's request arrives while the host closes.
    listener = TCPListener.__new__(TCPListener)  # only its address listing is under test
    listener.listeners = []
    for _ in range(2):
        sock = trio.socket.socket()
        await sock.bind(("127.0.0.1", 0))
        sock.listen()
        listener.listeners.append(trio.SocketListener(sock))
    port = listener.listeners[0].socket.getsockname()[1]
    listener.listeners[1].socket.close()  # as closing the host does
    try:
        assert [str(addr) for addr in listener.get_addrs()] == [f"/ip4/127.0.0.1/tcp/{port}"]
    finally:
        listener.listeners[0].socket.close()


async def test_peer_changes_name_the_peer_as_its_connection_opens_and_closes() -> None:
    """What the network service waits on to publish peer events (instead of polling)."""
    server = Host(os.urandom(32), HostConfig(("/ip4/127.0.0.1/tcp/0",)))
    client = Host(os.urandom(32), HostConfig(("/ip4/127.0.0.1/tcp/0",)))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            await nursery.start(client.run)
            assert server.take_peer_changes() == set()
            opened = server.peer_changes()
            assert not opened.is_set()
            await client.connect(server.listen_addrs()[0])
            await opened.wait()
            assert server.take_peer_changes() == {client.peer_id}
            assert server.is_connected(client.peer_id)  # the state is current when notified
            closed = server.peer_changes()
            assert closed is not opened
            assert not closed.is_set()
            await client.disconnect(server.peer_id)
            await closed.wait()
            assert server.take_peer_changes() == {client.peer_id}
            assert not server.is_connected(client.peer_id)
            assert server.connected_peer_ids() == []
            nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_a_refused_peer_is_never_asked(tmp_path: Path) -> None:
    async with nodes(tmp_path) as net:
        blocked = await net.start("blocked")
        fine = await net.start("fine")
        b = await net.start("b", fetch=FetchLimits(give_up_after=1.0))
        for provider in (blocked, fine):
            root, data = await add_random(provider, tmp_path, 6 * CHUNK_SIZE, seed=8)
        b.network.fetcher.refuses_peer = lambda peer_id: peer_id == blocked.peer_id
        with trio.fail_after(30):
            await b.network.connect(blocked.addr)
            with pytest.raises(FetchError) as failed:  # the only provider known is refused
                await b.network.fetch(root)
            assert failed.value.reason == "no-providers"
            await b.network.connect(fine.addr)
            result = await b.network.fetch(root)
        assert await content_of(b, root) == data
        assert result.bytes_by_peer.keys() == {fine.peer_id}
        assert blocked.served["requests"] == 0


@pytest.mark.slow
async def test_an_interrupted_fetch_resumes_without_fetching_stored_blocks(
    tmp_path: Path,
) -> None:
    give_up_fast = FetchLimits(give_up_after=1.0, provider_search_interval=1.0)
    async with nodes(tmp_path) as net:
        full = await net.start("full")
        root, data = await add_random(full, tmp_path, 24 * CHUNK_SIZE, seed=5)
        cids = await blocks_under(full, root)
        half = await net.start("half", server=partial_server(set(cids[:11])))
        await add_random(half, tmp_path, 24 * CHUNK_SIZE, seed=5)
        b = await net.start("b", fetch=give_up_fast)
        with trio.fail_after(30):
            await b.network.connect(half.addr)
            with pytest.raises(FetchError) as failed:
                await b.network.fetch(root)
        assert failed.value.reason == "unavailable"
        stored = await stored_count(b, cids)
        assert stored == 11  # the root and the ten leaves the partial provider had
        await half.stop()
        with trio.fail_after(30):
            await b.network.connect(full.addr)
            result = await b.network.fetch(root)
        assert await content_of(b, root) == data
        assert result.blocks_present == stored
        assert result.blocks_fetched == len(cids) - stored
        assert full.served["blocks_served"] == len(cids) - stored


@pytest.mark.slow
async def test_a_fetch_with_no_provider_fails(tmp_path: Path) -> None:
    async with nodes(tmp_path) as net:
        b = await net.start("b", fetch=FetchLimits(give_up_after=0.5))
        with trio.fail_after(10), pytest.raises(FetchError) as failed:
            await b.network.fetch(Cid.for_raw(b"nobody has this"))
        assert failed.value.reason == "no-providers"


def seeded_store(path: Path) -> tuple[Store, bytes]:
    data_dir = DataDir(path)
    data_dir.init()
    return Store(data_dir), data_dir.load_identity().seed


async def test_a_network_that_is_not_running_refuses_to_fetch(tmp_path: Path) -> None:
    network = Network(*seeded_store(tmp_path / "idle"))
    with pytest.raises(RuntimeError):
        await network.fetch(Cid.for_raw(b"x"))
    network.store.close()


# --- the serving side under abuse ------------------------------------------------------


async def open_blocks_stream(client: Node, server: Node) -> Stream:
    with trio.fail_after(10):
        await client.network.connect(server.addr)
        return await client.network.host.open_stream(server.peer_id, PROTOCOL_ID)


async def read_until_end(stream: Stream) -> list[Message]:
    """Every message the server sends until it ends the stream (close or reset)."""
    decoder = FrameDecoder(max_frame_size=MAX_RESPONSE_FRAME_SIZE)
    messages: list[Message] = []
    with trio.fail_after(10):
        while True:
            try:
                data = await stream.read(1 << 20)
            except NETWORK_ERRORS:
                break
            if not data:
                break
            decoder.feed(data)
            while (message := decoder.next_message()) is not None:
                messages.append(message)
    return messages


async def fetch_works(client: Node, server: Node, root: Cid, data: bytes) -> None:
    with trio.fail_after(30):
        await client.network.connect(server.addr)
        await client.network.fetch(root)
    assert await content_of(client, root) == data


@pytest.mark.slow
async def test_unknown_cids_get_dont_have_and_the_stream_goes_on(tmp_path: Path) -> None:
    async with nodes(tmp_path) as net:
        a = await net.start("a")
        client = await net.start("client")
        root, data = await add_random(a, tmp_path, 1000, seed=6)  # one raw block
        unknown = Cid.for_raw(b"unknown")
        stream = await open_blocks_stream(client, a)
        await stream.write(encode(Want((unknown, root))))
        await stream.write(encode(Want((root,))))
        await stream.close()
        assert await read_until_end(stream) == [
            DontHave(unknown),
            BlockData(root, data),
            BlockData(root, data),
        ]
        assert a.served["protocol_errors"] == 0


@pytest.mark.slow
async def test_answers_go_out_in_pieces_of_one_noise_message_and_none_waits(
    tmp_path: Path,
) -> None:
    async with nodes(tmp_path) as net:
        a = await net.start("a", server=RecordingServer)
        client = await net.start("client")
        root, data = await add_random(a, tmp_path, 6 * CHUNK_SIZE + 100, seed=13)
        leaves = [cid for cid in await blocks_under(a, root) if cid.codec == RAW]
        stream = await open_blocks_stream(client, a)
        # One small block, the stream left open: it must arrive without a later one.
        await stream.write(encode(Want((leaves[-1],))))
        decoder = FrameDecoder(max_frame_size=MAX_RESPONSE_FRAME_SIZE)
        with trio.fail_after(5):
            while (first := decoder.next_message()) is None:
                decoder.feed(await stream.read(1 << 20))
        assert first == BlockData(leaves[-1], data[6 * CHUNK_SIZE :])
        await stream.write(encode(Want((*leaves, Cid.for_raw(b"unknown")))))
        await stream.close()
        answers = await read_until_end(stream)
        assert answers[:-1] == [
            BlockData(cid, data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE])
            for i, cid in enumerate(leaves)
        ]
        assert answers[-1] == DontHave(Cid.for_raw(b"unknown"))
        writes = RecordingServer.writes_of(a)
        assert max(writes) <= WRITE_SIZE  # each write is one Yamux frame, one Noise message
        sent = sum(len(encode(message)) for message in [first, *answers])
        assert sum(writes) == sent
        # Blocks are packed together, not one short write at the end of each block.
        assert len(writes) <= -(-sent // WRITE_SIZE) + 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\x01\x09", "unknown-message-type"),
        (b"\xff\xff\x01", "frame-too-large"),
        (encode(BlockData(Cid.for_raw(b"x"), b"x")), "unexpected-message"),
        (b"\x24\x01" + bytes(35), "bad-message-size"),
    ],
    ids=["unknown-type", "oversized", "block-from-client", "bad-size"],
)
async def test_a_malformed_frame_gets_abort_and_a_ban_and_others_are_served(
    tmp_path: Path, garbage: bytes, reason: str
) -> None:
    async with nodes(tmp_path) as net:
        a = await net.start("a")
        bad = await net.start("bad")
        good = await net.start("good")
        root, data = await add_random(a, tmp_path, 2 * CHUNK_SIZE, seed=7)
        stream = await open_blocks_stream(bad, a)
        await stream.write(garbage)
        assert await read_until_end(stream) == [Abort(reason)]
        assert a.served["protocol_errors"] == 1
        refused = a.served["streams_refused"]
        again = await open_blocks_stream(bad, a)
        await again.write(encode(Want((root,))))
        assert await read_until_end(again) == [Abort("banned")]
        assert a.served["streams_refused"] == refused + 1
        await fetch_works(good, a, root, data)


@pytest.mark.slow
async def test_too_many_requests_on_a_stream_is_a_protocol_error(tmp_path: Path) -> None:
    async with nodes(tmp_path) as net:
        a = await net.start("a", serve=ServeLimits(max_outstanding_per_stream=8))
        bad = await net.start("bad")
        good = await net.start("good")
        root, data = await add_random(a, tmp_path, 2 * CHUNK_SIZE, seed=8)
        stream = await open_blocks_stream(bad, a)
        await stream.write(encode(Want((root,) * 9)))
        assert await read_until_end(stream) == [Abort("too-many-requests")]
        await fetch_works(good, a, root, data)


@pytest.mark.slow
async def test_too_many_streams_from_one_peer_are_refused(tmp_path: Path) -> None:
    async with nodes(tmp_path) as net:
        a = await net.start("a", serve=ServeLimits(max_streams_per_peer=4))
        greedy = await net.start("greedy")
        good = await net.start("good")
        root, data = await add_random(a, tmp_path, 2 * CHUNK_SIZE, seed=9)
        streams = [await open_blocks_stream(greedy, a) for _ in range(4)]
        await eventually(lambda: a.served["streams_active"] == 4)
        fifth = await open_blocks_stream(greedy, a)
        assert await read_until_end(fifth) == [Abort("too-many-streams")]
        await fetch_works(good, a, root, data)  # other peers have their own streams
        await streams[0].write(encode(Want((root,))))
        await streams[0].close()
        assert [type(m) for m in await read_until_end(streams[0])] == [BlockData]


@pytest.mark.slow
async def test_a_peer_that_stops_reading_is_dropped_and_others_are_served(
    tmp_path: Path,
) -> None:
    async with nodes(tmp_path) as net:
        a = await net.start("a", serve=ServeLimits(send_timeout=0.5))
        sluggard = await net.start("sluggard")
        good = await net.start("good")
        root, data = await add_random(a, tmp_path, 16 * CHUNK_SIZE, seed=10)
        leaves = [cid for cid in await blocks_under(a, root) if cid.codec == RAW]
        stream = await open_blocks_stream(sluggard, a)
        await stream.write(encode(Want(tuple(leaves))))  # 4 MiB, and never read
        await fetch_works(good, a, root, data)
        await eventually(lambda: a.served["slow_peers_dropped"] == 1)
        await eventually(lambda: a.served["streams_active"] == 0)  # nothing left held


@pytest.mark.slow
async def test_bootstrap_peers_are_dialled_and_found_in_the_dht(tmp_path: Path) -> None:
    async with nodes(tmp_path) as net:
        seed = await net.start("seed")
        a = await net.start("a", bootstrap=(seed.addr,))
        b = await net.start("b", bootstrap=(seed.addr,))
        await eventually(lambda: a.network.host.is_connected(seed.peer_id))
        await eventually(lambda: b.network.host.is_connected(seed.peer_id))
        root, data = await add_random(a, tmp_path, CHUNK_SIZE + 1, seed=11)
        with trio.fail_after(30):
            assert await a.network.provide(root)  # the seed node keeps the record
            result = await b.network.fetch(root, pin=True)  # b never heard of a
        assert result.bytes_by_peer.keys() == {a.peer_id}
        assert await content_of(b, root) == data
        assert b.network.statistics()["providing"] == 1  # what b pinned, b now provides


@pytest.mark.slow
async def test_a_later_provider_lookup_asks_the_network_again(tmp_path: Path) -> None:
    # py-libp2p answers from its cached provider records once it has any.
    async with nodes(tmp_path) as net:
        seed = await net.start("seed")
        early, late, b = [await net.start(name) for name in ("early", "late", "b")]
        root = Cid.for_raw(b"a root")
        with trio.fail_after(30):
            for node in (early, late, b):
                await node.network.connect(seed.addr)
            assert await early.network.provide(root)
            first = await b.network.host.find_providers(root)
            assert await late.network.provide(root)
            second = await b.network.host.find_providers(root)
        assert [peer for peer, _ in first] == [early.peer_id]
        found = [peer for peer, _ in second]
        assert sorted(found) == sorted({early.peer_id, late.peer_id})  # each once
        assert all(addrs for _, addrs in second)


@pytest.mark.slow
async def test_a_cancelled_node_closes_its_sockets(tmp_path: Path) -> None:
    async def connect_and_cancel() -> None:
        async with nodes(tmp_path) as net:
            a = await net.start("a")
            b = await net.start("b")
            with trio.fail_after(10):
                await b.network.connect(a.addr)
        # Leaving ``nodes`` cancelled both while connected.

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        await connect_and_cancel()
        gc.collect()  # the nodes are garbage now: an open socket would warn here
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


@pytest.mark.slow
async def test_the_swarm_does_not_dial_known_peers_by_itself(tmp_path: Path) -> None:
    async with nodes(tmp_path) as net:
        a = await net.start("a")
        b = await net.start("b")
        address = a.addr.removesuffix(f"/p2p/{a.peer_id}")
        b.network.host.add_addresses(a.peer_id, [address])  # as from a provider record
        # What py-libp2p's AutoConnector runs every 30 s and on each disconnect:
        swarm = b.network.host._libp2p.get_network()
        with trio.fail_after(10):
            await swarm.auto_connector.maybe_connect()
        await trio.sleep(0.2)
        assert not b.network.host.is_connected(a.peer_id)


@pytest.mark.slow
async def test_a_second_node_on_a_taken_port_fails_to_start(tmp_path: Path) -> None:
    with socket.socket() as spare:  # a port that is free now
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    taken = (f"/ip4/127.0.0.1/tcp/{port}",)
    first = Network(*seeded_store(tmp_path / "first"), NetworkConfig(listen_addrs=taken))
    second = Network(*seeded_store(tmp_path / "second"), NetworkConfig(listen_addrs=taken))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            with pytest.raises(ListenError, match="in use"):
                await second.run()
            nursery.cancel_scope.cancel()
    first.store.close()
    second.store.close()


@pytest.mark.slow
async def test_peers_discovered_on_another_thread_are_dialled(tmp_path: Path) -> None:
    async with nodes(tmp_path) as net:
        a = await net.start("a")
        b = await net.start("b")
        on_discovered = a.network.host.discovery_callback()
        address = multiaddr.Multiaddr(b.addr).decapsulate(multiaddr.Multiaddr(f"/p2p/{b.peer_id}"))
        info = PeerInfo(ID.from_base58(b.peer_id), [address])
        await trio.to_thread.run_sync(on_discovered, info)  # as zeroconf's thread would
        await eventually(lambda: a.network.host.is_connected(b.peer_id))
