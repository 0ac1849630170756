"""The daemon's methods over its socket (in-process daemon, trio client): results, errors,
progress, events, slow subscribers, concurrency, TCP with a token."""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from node.cli_daemon_backend import DaemonBackend
from node.client import DaemonGone, RpcClient, TrioRpcClient, open_trio_client
from node.config import Config, LimitsConfig, RpcConfig
from node.daemon import STATUS_CACHE_SECONDS, Daemon
from node.daemon_process import rpc_socket_path
from node.datadir import DataDir
from node.jsonrpc import RpcError
from node.operations import WorkFields, publish
from node.rpc_api import METHODS, METHODS_BY_NAME
from node.rpc_methods import PROGRESS_INTERVAL
from node.rpc_params import MAX_CAT_BYTES
from node.store import Store
from node.transfer import export_car
from protocol.cid import Cid
from tests.conftest import corrupt_block, indexed_blocks, write_random_file
from tests.daemon_fixtures import SEED, loopback_config, open_raw, rpc_daemon  # noqa: F401

CHUNK = 262_144


def socket_of(daemon: Daemon) -> Path:
    return rpc_socket_path(daemon.data_dir)


def assert_shape(method: str, result: dict[str, Any]) -> None:
    """The result has exactly the fields its definition (and docs/rpc.md) lists."""
    assert set(result) == {field.name for field in METHODS_BY_NAME[method].result}, method


async def call(client: TrioRpcClient, method: str, params: Any = None, **kw: Any) -> Any:
    result = await client.call(method, params, **kw)
    assert_shape(method, result)
    return result


async def test_every_defined_method_is_served(rpc_daemon: Daemon) -> None:  # noqa: F811
    assert rpc_daemon.node is not None
    assert rpc_daemon.node.methods.names() == sorted(spec.name for spec in METHODS)


async def test_add_read_list_and_lineage(rpc_daemon: Daemon, tmp_path: Path) -> None:  # noqa: F811
    poem_path = tmp_path / "poem.txt"
    poem_path.write_text("snow on snow")
    film = write_random_file(tmp_path / "film.bin", 3 * CHUNK + 5, seed=4)
    async with open_trio_client(socket_of(rpc_daemon)) as client:
        status = await call(client, "node.status")
        assert status["author"] == status["peer_id"]
        assert status["author"].startswith("12D3KooW")
        assert status["rpc_socket"] == str(socket_of(rpc_daemon))
        poem = await call(
            client, "content.add", {"path": str(poem_path), "title": "Poem", "tags": ["poetry"]}
        )
        assert poem["size"] == 12
        remix = await call(
            client,
            "content.add",
            {
                "path": str(tmp_path / "film.bin"),
                "parents": [{"id": poem["id"], "weight": None}],
                "upstream_bps": 4000,
            },
        )
        shown = await call(client, "records.get", {"id": poem["id"]})
        assert shown["record"]["title"] == "Poem"
        assert shown["remixed_by"] == [remix["id"]]

        cat = await call(client, "content.cat", {"cid": remix["id"], "offset": CHUNK - 2})
        assert cat["content"] == remix["content"]
        assert base64.b64decode(cat["data"]) == film[CHUNK - 2 : CHUNK - 2 + 64 * 1024]
        assert cat["eof"] is False
        tail = await call(client, "content.cat", [remix["content"], len(film) - 3, 100])
        assert (base64.b64decode(tail["data"]), tail["bytes"], tail["eof"]) == (film[-3:], 3, True)
        whole = await call(client, "content.cat", [remix["content"], 0, len(film)])
        assert base64.b64decode(whole["data"]) == film
        assert whole["eof"] is True

        copy = tmp_path / "out" / "copy.bin"
        copy.parent.mkdir()
        got = await call(client, "content.get", {"cid": remix["id"], "path": str(copy)})
        assert got == {
            "content": remix["content"],
            "path": str(copy),
            "size": len(film),
            "fetched": None,  # every block was here
        }
        assert copy.read_bytes() == film

        listed = await call(client, "records.list", {"tag": "poetry"})
        assert [record["id"] for record in listed["records"]] == [poem["id"]]
        mine = await call(client, "records.list", {"author": "me", "limit": 1})
        assert [record["id"] for record in mine["records"]] == [remix["id"]]  # newest first
        images = await call(client, "records.list", {"media_type": "image/*"})
        assert images["records"] == []

        up = await call(client, "lineage.ancestors", {"id": remix["id"]})
        assert [record["id"] for record in up["records"]] == [poem["id"]]
        assert (up["missing"], up["truncated"]) == ([], False)
        down = await call(client, "lineage.descendants", {"id": poem["id"], "depth": 1})
        assert [record["id"] for record in down["records"]] == [remix["id"]]

        pins = await call(client, "pins.list")
        assert {pin["cid"] for pin in pins["pins"]} == {poem["content"], remix["content"]}


def ignore_progress(done: int) -> None:
    pass


async def test_car_export_import_and_fsck(rpc_daemon: Daemon, tmp_path: Path) -> None:  # noqa: F811
    # A CAR made by another node (another key), straight from its store.
    other = DataDir(tmp_path / "other")
    other.init(seed=bytes(32))
    (tmp_path / "gift.txt").write_text("a gift")
    with Store(other) as store:
        identity = other.load_identity()
        gift = publish(store, identity, tmp_path / "gift.txt", WorkFields(), ignore_progress)
        export_car(store, gift.record.id, tmp_path / "gift.car", ignore_progress)
    write_random_file(tmp_path / "film.bin", 2 * CHUNK + 1, seed=7)
    path = socket_of(rpc_daemon)
    async with open_trio_client(path) as client, open_trio_client(path) as listener:
        await listener.call("events.subscribe", {"events": ["record.added"]})
        imported = await call(client, "car.import", {"path": str(tmp_path / "gift.car")})
        assert imported == {
            "roots": [str(gift.record.id)],
            "records": 1,
            "blocks": 2,
            "incomplete": [],
        }
        with trio.fail_after(10):
            event = await listener.events.receive()
        assert event["data"]["origin"] == "import"
        assert event["data"]["record"]["id"] == str(gift.record.id)
        await call(client, "car.import", {"path": str(tmp_path / "gift.car")})  # nothing new
        await listener.call("node.status")  # an event sent before this would have arrived
        with trio.move_on_after(0.3) as nothing:
            await listener.events.receive()
        assert nothing.cancelled_caught

        film = await call(
            client,
            "content.add",
            {"path": str(tmp_path / "film.bin"), "parents": [{"id": str(gift.record.id)}]},
        )
        car = tmp_path / "film.car"
        exported = await call(client, "car.export", {"id": film["id"], "path": str(car)})
        assert exported == {"root": film["id"], "path": str(car), "blocks": 2 + 4 + 1}
        assert car.read_bytes().count(b"a gift") == 1  # the ancestor's content travels too

        checked = await call(client, "store.fsck")
        assert checked["clean"] is True
        assert checked["records_checked"] == 2
        leaf = next(
            cid for cid in indexed_blocks(rpc_daemon.data_dir.root) if cid.startswith("bafkrei")
        )
        corrupt_block(rpc_daemon.data_dir.root, leaf)
        damaged = await call(client, "store.fsck", [False])
        assert (damaged["clean"], damaged["corrupt_blocks"]) == (False, [leaf])
        repaired = await call(client, "store.fsck", {"repair": True})
        assert repaired["repaired"] is True
        assert (await call(client, "store.fsck"))["clean"] is True
        with pytest.raises(RpcError) as caught:
            await client.call("car.export", {"id": film["id"], "path": str(car)})
        assert (caught.value.code, caught.value.data) == (-32002, {"what": "block", "name": leaf})
        with pytest.raises(RpcError) as caught:
            await client.call("car.import", {"path": str(tmp_path / "film.bin")})
        assert caught.value.code == -32001
        assert isinstance(caught.value.data, dict)
        assert caught.value.data["error"] == "InvalidCar"


async def test_errors_carry_documented_codes_and_data(
    rpc_daemon: Daemon,  # noqa: F811
    tmp_path: Path,
) -> None:
    unknown = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    (tmp_path / "x.txt").write_text("x")
    cases: list[tuple[str, dict[str, Any], int, Any]] = [
        ("records.get", {"id": unknown}, -32002, {"what": "record", "name": unknown}),
        ("content.cat", {"cid": unknown}, -32002, {"what": "block", "name": unknown}),
        (
            "content.add",
            {"path": str(tmp_path / "x.txt"), "parents": [{"id": unknown, "weight": None}]},
            -32002,
            {"what": "parent record", "name": unknown},
        ),
        (
            "content.add",
            {"path": str(tmp_path / "missing.txt")},
            -32005,
            {"errno": "ENOENT", "path": str(tmp_path / "missing.txt")},
        ),
        (
            "content.add",
            {"path": str(tmp_path)},
            -32005,
            {"errno": "EISDIR", "path": str(tmp_path)},
        ),
        (
            "content.add",
            {"path": str(tmp_path / "x.txt"), "license": "not a license!"},
            -32001,
            {"reason": "invalid-value", "error": "InvalidRecord"},
        ),
        (
            "events.unsubscribe",
            {"subscription": 99},
            -32002,
            {"what": "subscription", "name": "99"},
        ),
        ("events.subscribe", {"events": ["no.such.event"]}, -32602, None),
    ]
    with RpcClient.connect(socket_of(rpc_daemon)) as blocking:
        for method, params, code, data in cases:
            with pytest.raises(RpcError) as caught:
                await trio.to_thread.run_sync(blocking.call, method, params)
            assert caught.value.code == code, (method, params, caught.value)
            if data is not None:
                assert caught.value.data == data, (method, params)
            assert "\n" not in caught.value.message


async def test_clients_validate_params_before_sending(rpc_daemon: Daemon) -> None:  # noqa: F811
    async with open_trio_client(socket_of(rpc_daemon)) as client:
        with pytest.raises(RpcError) as caught:
            await client.call("content.cat", {"cid": "not-a-cid"})
        assert caught.value.code == -32602
        assert rpc_daemon.rpc is not None
        assert rpc_daemon.rpc.counters["requests_total"] == 0  # nothing reached the daemon


async def test_progress_notifications_reach_the_caller(
    rpc_daemon: Daemon,  # noqa: F811
    tmp_path: Path,
) -> None:
    size = 16 << 20
    write_random_file(tmp_path / "big.bin", size, seed=5)
    seen: list[tuple[int, int | None]] = []
    async with open_trio_client(socket_of(rpc_daemon)) as client:
        added = await client.call(
            "content.add",
            {"path": str(tmp_path / "big.bin")},
            on_progress=lambda done, total: seen.append((done, total)),
        )
        assert added["size"] == size
        assert seen
        assert seen[-1] == (size, size)  # the last report is the whole file, before the result
        assert [done for done, _ in seen] == sorted(done for done, _ in seen)
        out = tmp_path / "big.copy"
        seen.clear()
        await client.call(
            "content.get",
            {"cid": added["id"], "path": str(out)},
            on_progress=lambda done, total: seen.append((done, total)),
        )
        assert seen[-1] == (size, size)


async def test_events_reach_subscribers_and_unsubscribe_stops_them(
    rpc_daemon: Daemon,  # noqa: F811
    tmp_path: Path,
) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    path = socket_of(rpc_daemon)
    async with open_trio_client(path) as listener, open_trio_client(path) as publisher:
        subscribed = await call(listener, "events.subscribe", {"events": ["record.added"]})
        assert subscribed["events"] == ["record.added"]
        added = await publisher.call("content.add", {"path": str(tmp_path / "a.txt")})
        with trio.fail_after(10):
            event = await listener.events.receive()
        assert event["subscription"] == subscribed["subscription"]
        assert event["event"] == "record.added"
        assert event["data"]["record"]["id"] == added["id"]
        assert event["data"]["origin"] == "local"
        await call(listener, "events.unsubscribe", [subscribed["subscription"]])
        await publisher.call("content.add", {"path": str(tmp_path / "b.txt")})
        await listener.call("node.status")  # anything sent before this would have arrived
        with trio.move_on_after(0.3) as nothing:
            await listener.events.receive()
        assert nothing.cancelled_caught


async def test_slow_subscriber_is_disconnected_without_blocking_others(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    data_dir.init(seed=SEED)
    daemon = Daemon(data_dir, loopback_config(rpc_queue=64))
    async with trio.open_nursery() as nursery:
        node = await nursery.start(daemon.run)
        assert daemon.rpc is not None
        counters = daemon.rpc.counters
        path = socket_of(daemon)
        slow = await open_raw(path)
        await slow.send('{"jsonrpc":"2.0","method":"events.subscribe","id":1}')
        assert "result" in await slow.receive()
        async with open_trio_client(path) as reader:
            await reader.call("events.subscribe", {"events": ["progress"]})
            # The slow subscriber never reads again: its socket buffer, then its queue fill
            # up. The reader keeps up and must get every event; publishing never waits.
            sent = 0
            with trio.fail_after(30):
                while counters["slow_subscribers_disconnected"] == 0:
                    for _ in range(8):
                        data = {"operation": "x", "target": "y" * 200, "done": sent, "total": None}
                        node.events.publish("progress", data)
                        sent += 1
                    for expected in range(sent - 8, sent):
                        assert (await reader.events.receive())["data"]["done"] == expected
                status = await reader.call("node.status")
            assert status["rpc"]["slow_subscribers_disconnected"] == 1
            assert sent > 64  # it took more than the queue: the socket buffer filled first
        assert await slow.closed_by_daemon()
        await slow.aclose()
        daemon.request_shutdown()


async def test_fifty_clients_at_once(rpc_daemon: Daemon, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "poem.txt").write_text("snow")
    path = socket_of(rpc_daemon)
    async with open_trio_client(path) as first:
        poem = await first.call("content.add", {"path": str(tmp_path / "poem.txt")})
    results: dict[int, list[Any]] = {}

    async def client(number: int) -> None:
        # Several calls in flight on each connection.
        async with open_trio_client(path) as each, trio.open_nursery() as calls:

            async def one(method: str, params: Any) -> None:
                results.setdefault(number, []).append(await each.call(method, params))

            calls.start_soon(one, "node.status", None)
            calls.start_soon(one, "records.get", {"id": poem["id"]})
            calls.start_soon(one, "content.cat", {"cid": poem["id"]})
            calls.start_soon(one, "records.list", {"limit": 5})

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for number in range(50):
                nursery.start_soon(client, number)
    assert len(results) == 50
    assert all(len(answers) == 4 for answers in results.values())
    assert rpc_daemon.rpc is not None
    assert rpc_daemon.rpc.counters["connections_total"] >= 51


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def test_a_long_add_does_not_block_other_calls_and_stops_when_its_client_leaves(
    rpc_daemon: Daemon,  # noqa: F811
    tmp_path: Path,
) -> None:
    # A FIFO: the add lasts exactly as long as the test keeps writing into it.
    fifo = tmp_path / "stream.fifo"
    os.mkfifo(fifo)
    chunk = os.urandom(CHUNK)
    path = socket_of(rpc_daemon)
    assert rpc_daemon.node is not None
    store = rpc_daemon.node.store
    progress: list[int] = []
    async with open_trio_client(path) as other, trio.open_nursery() as nursery:
        adder_scope = trio.CancelScope()

        async def add() -> None:
            with adder_scope:
                async with open_trio_client(path) as adder:
                    await adder.call(
                        "content.add",
                        {"path": str(fifo)},
                        on_progress=lambda done, total: progress.append(done),
                    )

        nursery.start_soon(add)
        with trio.fail_after(10):
            fd = await trio.to_thread.run_sync(os.open, fifo, os.O_WRONLY)
        try:
            with trio.fail_after(10):
                while not progress:
                    await trio.to_thread.run_sync(write_all, fd, chunk)
                    await trio.sleep(PROGRESS_INTERVAL / 2)
            # The add runs in a worker thread: other calls are answered meanwhile.
            with trio.fail_after(2):
                status = await other.call("node.status")
            assert (status["store"]["records"], status["rpc"]["connections"]) == (0, 2)
            adder_scope.cancel()  # the client leaves (its socket is closed)
            with trio.fail_after(10):
                while (await other.call("node.status"))["rpc"]["connections"] > 1:
                    with contextlib.suppress(BrokenPipeError):
                        await trio.to_thread.run_sync(write_all, fd, chunk)
                    await trio.sleep(0.02)
        finally:
            os.close(fd)
    statistics = await trio.to_thread.run_sync(store.statistics)
    assert statistics["records"] == 0  # the add stopped before it published anything


async def test_tcp_listener_needs_the_token(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    data_dir.init(seed=SEED)
    config = Config(
        network=loopback_config().network, limits=LimitsConfig(), rpc=RpcConfig(tcp="127.0.0.1:0")
    )
    daemon = Daemon(data_dir, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert daemon.rpc is not None
        assert daemon.rpc.tcp_address is not None
        host, port = daemon.rpc.tcp_address
        token_file = data_dir.root / "rpc.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()

        def exchange(first: dict[str, Any]) -> tuple[dict[str, Any], bool]:
            with socket.create_connection((host, port), timeout=10) as sock:
                sock.sendall(json.dumps(first).encode())
                reply = sock.makefile("rb").readline()
                try:
                    closed = sock.recv(1) == b""
                except ConnectionResetError:
                    closed = True
            return json.loads(reply), closed

        status = {"jsonrpc": "2.0", "method": "node.status", "id": 1}
        reply, closed = await trio.to_thread.run_sync(exchange, status)
        assert (reply["error"]["code"], closed) == (-32008, True)
        wrong = {"jsonrpc": "2.0", "method": "rpc.authenticate", "params": ["x"], "id": 1}
        reply, closed = await trio.to_thread.run_sync(exchange, wrong)
        assert (reply["error"]["code"], closed) == (-32008, True)

        def authenticated_status() -> Any:
            with RpcClient.connect_tcp(host, port, token) as client:
                return client.call("node.status")

        result = await trio.to_thread.run_sync(authenticated_status)
        assert result["rpc_tcp"] == f"{host}:{port}"
        daemon.request_shutdown()


async def test_daemon_closes_connections_when_it_stops(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    data_dir.init(seed=SEED)
    daemon = Daemon(data_dir, loopback_config())
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        path = socket_of(daemon)
        async with open_trio_client(path) as client:
            await client.call("events.subscribe")
            assert (await client.call("node.shutdown")) == {"stopping": True}
            with trio.fail_after(10):
                async for _event in client.events:
                    pass  # the channel ends when the daemon closes the connection
            with pytest.raises(DaemonGone):
                await client.call("node.status")
    assert not path.exists()
    assert not (data_dir.root / "node.json").exists()


async def test_clients_beyond_the_limit_are_refused_with_an_error(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    data_dir.init(seed=SEED)
    daemon = Daemon(data_dir, loopback_config(rpc_clients=2))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        path = socket_of(daemon)
        async with open_trio_client(path) as one, open_trio_client(path) as two:
            await one.call("node.status")
            await two.call("node.status")
            third = await open_raw(path)
            refused = await third.receive()
            assert refused["error"] == {
                "code": -32007,
                "message": "too many connections",
                "data": {"limit": 2},
            }
            assert await third.closed_by_daemon()
            await third.aclose()
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()  # the daemon has seen them leave
        async with open_trio_client(path) as again:  # room again
            assert (await again.call("node.status"))["rpc"]["connections"] == 1
        daemon.request_shutdown()


async def test_data_dirs_deeper_than_a_socket_address_allows(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 5)
    data_dir = DataDir(deep)
    data_dir.init(seed=SEED)
    assert len(str(socket_of(Daemon(data_dir, loopback_config())))) > 108
    daemon = Daemon(data_dir, loopback_config())
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        async with open_trio_client(socket_of(daemon)) as client:
            assert (await client.call("node.status"))["rpc_socket"] == str(socket_of(daemon))
        blocking = await trio.to_thread.run_sync(RpcClient.connect, socket_of(daemon))
        with blocking:
            assert await trio.to_thread.run_sync(blocking.call, "pins.list")
        daemon.request_shutdown()
    assert not socket_of(daemon).exists()


async def test_shutdown_from_a_client_that_does_not_wait_for_the_answer(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    data_dir.init(seed=SEED)
    daemon = Daemon(data_dir, loopback_config())
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            raw = await open_raw(socket_of(daemon))
            await raw.send('{"jsonrpc":"2.0","method":"node.shutdown","id":1}')
            await raw.aclose()
        # The nursery only exits once daemon.run has returned: it stopped.
    assert not socket_of(daemon).exists()


async def test_cat_through_the_daemon_pipelines_slices_and_keeps_the_connection(
    rpc_daemon: Daemon,  # noqa: F811
    tmp_path: Path,
) -> None:
    film = write_random_file(tmp_path / "film.bin", 2 * MAX_CAT_BYTES + 5, seed=9)
    async with open_trio_client(socket_of(rpc_daemon)) as client:
        added = await call(
            client, "content.add", {"path": str(tmp_path / "film.bin"), "title": "F"}
        )

    def cat_twice_then_status() -> tuple[bytes, bytes, dict[str, Any]]:
        with RpcClient.connect(socket_of(rpc_daemon)) as blocking:
            backend = DaemonBackend(blocking)
            by_record, by_content = io.BytesIO(), io.BytesIO()
            backend.write_content(Cid.parse(added["id"]), by_record)
            backend.write_content(Cid.parse(added["content"]), by_content)
            # Nothing is left over on the connection: the next call gets its own answer.
            return by_record.getvalue(), by_content.getvalue(), blocking.call("node.status")

    by_record, by_content, status = await trio.to_thread.run_sync(cat_twice_then_status)
    assert by_record == film
    assert by_content == film
    assert status["author"].startswith("12D3KooW")


async def test_a_pipeline_stopped_early_or_failing_leaves_the_connection_usable(
    rpc_daemon: Daemon,  # noqa: F811
    tmp_path: Path,
) -> None:
    poem = b"snow on snow, " * 100
    (tmp_path / "poem.txt").write_bytes(poem)
    async with open_trio_client(socket_of(rpc_daemon)) as client:
        added = await call(client, "content.add", {"path": str(tmp_path / "poem.txt")})
    slices = (
        {"cid": added["content"], "offset": offset, "max_bytes": 10}
        for offset in itertools.count(0, 10)
    )
    unknown = str(Cid.for_raw(b"nobody has this"))

    def use_pipelines() -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
        with RpcClient.connect(socket_of(rpc_daemon)) as blocking:
            results = blocking.pipeline("content.cat", slices, window=8)
            taken = [next(results) for _ in range(3)]
            results.close()  # five more are in flight: read and dropped
            failing = [
                {"cid": added["content"]},
                {"cid": unknown},
                {"cid": added["content"], "offset": 10},
            ]
            with pytest.raises(RpcError) as failure:
                list(blocking.pipeline("content.cat", failing, window=3))
            return taken, failure.value.code, blocking.call("node.status")

    taken, code, status = await trio.to_thread.run_sync(use_pipelines)
    assert [piece["offset"] for piece in taken] == [0, 10, 20]
    assert b"".join(base64.b64decode(piece["data"]) for piece in taken) == poem[:30]
    assert code == -32002
    assert status["rpc"]["requests_total"] >= 3 + 8 + 3


async def test_status_counts_stay_live_and_store_figures_refresh(
    rpc_daemon: Daemon,  # noqa: F811
    tmp_path: Path,
) -> None:
    (tmp_path / "poem.txt").write_text("snow on snow")
    async with open_trio_client(socket_of(rpc_daemon)) as client:
        first = await call(client, "node.status")
        second = await call(client, "node.status")
        assert second["rpc"]["requests_total"] == first["rpc"]["requests_total"] + 1
        await call(client, "content.add", {"path": str(tmp_path / "poem.txt"), "title": "P"})
        await trio.sleep(STATUS_CACHE_SECONDS * 1.5)
        later = await call(client, "node.status")
    assert later["store"]["records"] == first["store"]["records"] + 1
    assert later["uptime_s"] > first["uptime_s"]
