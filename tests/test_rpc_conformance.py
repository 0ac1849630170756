"""JSON-RPC 2.0 conformance of the daemon's socket: the specification's examples, framing.

The examples of https://www.jsonrpc.org/specification (section 7) with our
methods in place of ``subtract``/``sum``; the server runs in-process on a real
Unix socket.
"""

from __future__ import annotations

import contextlib
import json
import stat
from pathlib import Path

import trio

from node.daemon import Daemon
from node.daemon_process import rpc_socket_path
from tests.daemon_fixtures import RawConnection, open_raw, rpc_daemon  # noqa: F401

POEM_TEXT = b"snow on snow\n"


async def connect(daemon: Daemon) -> RawConnection:
    return await open_raw(rpc_socket_path(daemon.data_dir))


async def add_poem(raw: RawConnection, tmp_path: Path) -> dict[str, object]:
    poem = tmp_path / "poem.txt"
    poem.write_bytes(POEM_TEXT)
    response = await raw.call(
        {"jsonrpc": "2.0", "method": "content.add", "params": {"path": str(poem)}, "id": 0}
    )
    result: dict[str, object] = response["result"]
    return result


async def test_socket_is_private(rpc_daemon: Daemon) -> None:  # noqa: F811
    mode = rpc_socket_path(rpc_daemon.data_dir).stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


async def test_positional_and_named_params(rpc_daemon: Daemon, tmp_path: Path) -> None:  # noqa: F811
    raw = await connect(rpc_daemon)
    poem = await add_poem(raw, tmp_path)
    positional = await raw.call(
        {"jsonrpc": "2.0", "method": "content.cat", "params": [poem["id"], 0, 4], "id": 1}
    )
    assert positional == {
        "jsonrpc": "2.0",
        "result": {
            "content": poem["content"],
            "offset": 0,
            "data": "c25vdw==",
            "bytes": 4,
            "eof": False,
        },
        "id": 1,
    }
    named = await raw.call(
        {
            "jsonrpc": "2.0",
            "method": "content.cat",
            "params": {"max_bytes": 4, "cid": poem["id"]},
            "id": 3,
        }
    )
    assert named == {**positional, "id": 3}
    await raw.aclose()


async def test_notifications_get_no_response(rpc_daemon: Daemon) -> None:  # noqa: F811
    raw = await connect(rpc_daemon)
    await raw.send('{"jsonrpc": "2.0", "method": "node.status", "params": []}')
    await raw.send('{"jsonrpc": "2.0", "method": "no.such.method"}')  # even a failing one
    assert await raw.nothing_within(0.3)
    response = await raw.call({"jsonrpc": "2.0", "method": "pins.list", "id": "after"})
    assert response["id"] == "after"
    await raw.aclose()


async def test_error_examples(rpc_daemon: Daemon) -> None:  # noqa: F811
    raw = await connect(rpc_daemon)
    assert await raw.call({"jsonrpc": "2.0", "method": "foobar", "id": "1"}) == {
        "jsonrpc": "2.0",
        "error": {"code": -32601, "message": "Method not found", "data": "foobar"},
        "id": "1",
    }
    await raw.send('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    parse_error = await raw.receive()
    assert parse_error["error"]["code"] == -32700
    assert parse_error["id"] is None
    await raw.send('{"jsonrpc": "2.0", "method": "node.status", "id": nope}')
    assert (await raw.receive())["error"]["code"] == -32700
    invalid = await raw.call({"jsonrpc": "2.0", "method": 1, "params": "bar"})
    assert invalid["error"]["code"] == -32600
    assert invalid["id"] is None
    # The connection is still usable after errors whose text could be delimited.
    assert (await raw.call({"jsonrpc": "2.0", "method": "node.status", "id": 2}))["id"] == 2
    await raw.aclose()


async def test_batch_examples(rpc_daemon: Daemon) -> None:  # noqa: F811
    raw = await connect(rpc_daemon)
    await raw.send(
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        '{"jsonrpc": "2.0", "method"\n]'
    )
    assert (await raw.receive())["error"]["code"] == -32700
    await raw.send("[]")
    empty = await raw.receive()
    assert isinstance(empty, dict)
    assert empty["error"]["code"] == -32600
    await raw.send("[1]")
    assert [r["error"]["code"] for r in await raw.receive()] == [-32600]
    await raw.send("[1,2,3]")
    three = await raw.receive()
    assert [(r["error"]["code"], r["id"]) for r in three] == [(-32600, None)] * 3
    await raw.aclose()


async def test_mixed_batch_answers_in_request_order(rpc_daemon: Daemon) -> None:  # noqa: F811
    raw = await connect(rpc_daemon)
    batch = [
        {"jsonrpc": "2.0", "method": "node.status", "id": "1"},
        {"jsonrpc": "2.0", "method": "pins.list", "params": [7]},
        {"jsonrpc": "2.0", "method": "records.list", "params": {"limit": 2}, "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "records.list", "params": {"limit": 0}, "id": "9"},
    ]
    responses = await raw.call(batch)  # type: ignore[arg-type]
    assert [r["id"] for r in responses] == ["1", "2", None, "5", "9"]
    assert "result" in responses[0]
    assert responses[1]["result"] == {"records": []}
    assert responses[2]["error"]["code"] == -32600
    assert responses[3]["error"]["code"] == -32601
    assert responses[4]["error"]["code"] == -32602
    assert responses[4]["error"]["data"] == {
        "param": "limit",
        "reason": "must be between 1 and 10000",
    }
    await raw.send(json.dumps([{"jsonrpc": "2.0", "method": "node.status"}] * 2))
    assert await raw.nothing_within(0.3)  # a batch of notifications: no response at all
    await raw.aclose()


async def test_streamed_requests_without_newlines(rpc_daemon: Daemon) -> None:  # noqa: F811
    raw = await connect(rpc_daemon)
    one = json.dumps({"jsonrpc": "2.0", "method": "pins.list", "id": 1})
    two = json.dumps({"jsonrpc": "2.0", "method": "records.list", "id": 2})
    await raw.send(one + two)  # back to back in one write
    ids = {(await raw.receive())["id"], (await raw.receive())["id"]}
    assert ids == {1, 2}
    three = json.dumps({"jsonrpc": "2.0", "method": "node.status", "id": 3}).encode()
    for byte in range(len(three)):  # one byte per write
        await raw.send(three[byte : byte + 1])
        await trio.lowlevel.checkpoint()
    assert (await raw.receive())["id"] == 3
    await raw.send(" \r\n\t ")
    await raw.send(one)
    assert (await raw.receive())["id"] == 1
    await raw.aclose()


async def test_request_at_end_of_stream_is_answered(rpc_daemon: Daemon) -> None:  # noqa: F811
    raw = await connect(rpc_daemon)
    await raw.send(json.dumps({"jsonrpc": "2.0", "method": "node.status", "id": "last"}))
    await raw.stream.send_eof()
    assert (await raw.receive())["id"] == "last"
    assert await raw.closed_by_daemon()
    await raw.aclose()


async def test_oversized_request_gets_an_error_and_is_closed(rpc_daemon: Daemon) -> None:  # noqa: F811
    raw = await connect(rpc_daemon)
    huge = '{"jsonrpc": "2.0", "method": "node.status", "params": ["' + "x" * (2 << 20)
    # The daemon may close before it has read everything we write.
    with contextlib.suppress(trio.BrokenResourceError):
        await raw.send(huge)
    error = await raw.receive()
    assert error["error"]["code"] == -32006
    assert error["error"]["data"] == {"limit": 1 << 20}
    assert error["id"] is None
    assert await raw.closed_by_daemon()
    await raw.aclose()
    # Others are unaffected.
    other = await connect(rpc_daemon)
    assert "result" in await other.call({"jsonrpc": "2.0", "method": "node.status", "id": 1})
    await other.aclose()


async def test_too_deep_nesting_closes_the_connection(rpc_daemon: Daemon) -> None:  # noqa: F811
    raw = await connect(rpc_daemon)
    await raw.send("[" * 1000)
    assert (await raw.receive())["error"]["code"] == -32700
    assert await raw.closed_by_daemon()
    await raw.aclose()
