"""The CLI through the daemon prints exactly what it prints offline; its two backends agree.

``test_cli.py`` runs every scenario in both modes; here the outputs of both
modes are compared byte for byte on one data directory, records published
through the CLI reach event subscribers, and the backends are checked
directly: progress to the end, the lineage walk, the daemon's errors mapped
back to the offline lines.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from node.cli import main
from node.cli_backend import Backend, LineageGraph
from node.cli_daemon_backend import DaemonBackend, error_line
from node.cli_store_backend import StoreBackend
from node.client import RpcClient, open_trio_client
from node.daemon import Daemon
from node.daemon_process import rpc_socket_path
from node.jsonrpc import INTERNAL_ERROR, METHOD_NOT_FOUND, RpcError
from node.operations import ContentSlice, WorkFields, iter_content_from, read_content
from node.rpc_schema import FILE_ERROR
from node.store import Store
from node.transfer import add_file
from protocol.cid import Cid
from protocol.identity import private_key_from_seed
from protocol.records import Contribution, Parent, sign_record, to_json
from tests.conftest import Cli, write_random_file
from tests.daemon_fixtures import (
    DaemonProcess,
    OnlineCli,
    daemon_process,  # noqa: F401
    rpc_daemon,  # noqa: F401
)

CHUNK = 262_144
UNKNOWN = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


@dataclass
class InProcessCli:
    """Runs ``remixnet`` in this process (``node.cli.main``) from ``cwd``: many commands, fast.

    The subprocess scenarios of ``test_cli.py`` cover real processes; here the
    point is comparing the outputs of many commands in both modes.
    """

    data_dir: Path
    cwd: Path
    monkeypatch: pytest.MonkeyPatch
    mode: tuple[str, ...] = ()  # ("--online",), ("--offline",) or () for the default

    def run(self, *args: str) -> tuple[int, bytes, str]:
        """Exit code, stdout, stderr (random temporary file names replaced)."""
        out, err = io.BytesIO(), io.BytesIO()
        streams = [io.TextIOWrapper(buffer, "utf-8", write_through=True) for buffer in (out, err)]
        with self.monkeypatch.context() as patch:
            patch.chdir(self.cwd)
            patch.setattr(sys, "stdout", streams[0])
            patch.setattr(sys, "stderr", streams[1])
            try:
                main(["--data-dir", str(self.data_dir), *self.mode, *args])
                code = 0
            except SystemExit as exit_request:
                code = exit_request.code if isinstance(exit_request.code, int) else 1
        for stream in streams:
            stream.detach()  # keep the buffers open
        stderr = re.sub(r"\.[0-9a-f]{12}\.partial", ".RANDOM.partial", err.getvalue().decode())
        return code, out.getvalue(), stderr

    def json(self, *args: str) -> dict[str, Any]:
        code, stdout, stderr = self.run(*args, "--json")
        assert code == 0, stderr
        return cast(dict[str, Any], json.loads(stdout))


@pytest.mark.slow
def test_every_command_prints_the_same_through_the_daemon(
    daemon_process: DaemonProcess,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = daemon_process.cli.data_dir
    offline = InProcessCli(data_dir, tmp_path, monkeypatch)
    online = InProcessCli(data_dir, tmp_path, monkeypatch, ("--online",))
    forced_offline = InProcessCli(data_dir, tmp_path, monkeypatch, ("--offline",))
    (tmp_path / "poem.txt").write_text("snow on snow")
    (tmp_path / "sketch.png").write_bytes(b"\x89PNG fake drawing")
    (tmp_path / "score.mp3").write_bytes(b"ID3 music")
    (tmp_path / "folder").mkdir()
    film_bytes = write_random_file(tmp_path / "film.bin", 9 * CHUNK + 11, seed=5)  # 3 cat slices

    poem = offline.json("add", "poem.txt", "--title", "Poem", "--tag", "poetry")
    sketch = offline.json("add", "sketch.png", "--title", "Sketch [ink]", "--tag", "ink")
    drawing = offline.json(
        "remix", f"{poem['id']}:3", f"{sketch['id']}:1", "sketch.png", "--upstream-bps", "4000"
    )
    score = offline.json("remix", drawing["id"], "score.mp3", "--title", "Score")
    film = offline.json("remix", score["id"], poem["id"], "film.bin")

    commands: list[tuple[str, ...]] = [
        ("id",),
        ("id", "--json"),
        ("show", poem["id"]),
        ("show", poem["id"], "--json"),
        ("show", drawing["id"]),
        ("show", drawing["id"], "--json"),
        ("ls",),
        ("ls", "--json"),
        ("ls", "--tag", "ink"),
        ("ls", "--media-type", "image/*", "--json"),
        ("ls", "--author", "me", "--limit", "2"),
        ("ls", "--title", "ket", "--type", "contribution"),
        ("ls", "--type", "collab"),
        ("lineage", drawing["id"]),
        ("lineage", drawing["id"], "--json"),
        ("lineage", film["id"], "--depth", "2"),
        ("lineage", poem["id"], "--json"),
        ("cat", poem["id"]),
        ("cat", film["id"]),
        ("cat", film["content"]),
        ("get", film["id"], "-o", "copy.bin", "--json"),
        ("get", poem["content"], "-o", "copy.txt"),
        ("export", film["id"], "-o", "film.car", "--json"),
        ("export", poem["id"], "-o", "poem.car"),
        ("import", "film.car", "--json"),
        ("import", "poem.car"),
        ("fsck",),
        ("fsck", "--json"),
        # Errors a user can cause: the same line, the same exit code.
        ("show", UNKNOWN),
        ("show", "not-a-cid"),
        ("get", poem["id"], "-o", "no/such/dir/copy.txt"),
        ("lineage", UNKNOWN),
        ("export", UNKNOWN, "-o", "nothing.car"),
        ("import", "missing.car"),
        ("import", "poem.txt"),
        ("ls", "--author", "nobody"),
        ("remix", UNKNOWN, "poem.txt"),
        ("remix", f"{poem['id']}:x", "poem.txt"),
        ("add", "missing.txt"),
        ("add", "folder"),
        ("add", "poem.txt", "--license", "not a license!"),
        ("add", "poem.txt", "--title", "x" * 5000),
        ("add", "poem.txt", "--collab", "nope"),
    ]
    written = ("copy.bin", "copy.txt", "film.car", "poem.car")

    def run_all(cli: InProcessCli) -> list[tuple[int, bytes, str]]:
        results = [cli.run(*command) for command in commands]
        for name in written:
            results.append((0, (tmp_path / name).read_bytes(), name))
            (tmp_path / name).unlink()
        return results

    expected = run_all(offline)  # no daemon runs yet
    assert expected[commands.index(("cat", film["id"]))][1] == film_bytes
    assert sum(code != 0 for code, _, _ in expected) == 15  # the errors, and no others
    daemon_process.start()
    for command, want, got in zip([*commands, *written], expected, run_all(online), strict=True):
        assert got == want, command
    # Missing content: offline, start the daemon; online, the daemon says it has no peers.
    for command in [("cat", UNKNOWN), ("get", UNKNOWN, "-o", "nothing.bin")]:
        code, out, err = forced_offline.run(*command)
        assert (code, out) == (1, b"")
        assert err.endswith("not in the local store; start the daemon to fetch from peers\n")
        code, out, err = online.run(*command)
        assert (code, out) == (1, b"")
        assert "not in the local store, and no peers are connected" in err
        # --offline works on the store beside the running daemon, and prints the same.
    for command in [("show", drawing["id"]), ("lineage", poem["id"], "--json"), ("fsck",)]:
        assert forced_offline.run(*command) == expected[commands.index(command)]

    # Publishing prints the same, but for the new record's id (it has a new creation time).
    for args in [("add", "poem.txt", "--title", "Again"), ("remix", poem["id"], "film.bin")]:
        through_daemon, directly = online.json(*args), forced_offline.json(*args)
        assert through_daemon["id"] != directly["id"]
        assert {**through_daemon, "id": None} == {**directly, "id": None}
        printed = {
            re.sub(r"record  \S+", "record  ID", cli.run(*args)[1].decode())
            for cli in (online, forced_offline)
        }
        assert len(printed) == 1
        assert printed.pop().startswith("record  ID\ncontent ")
    assert daemon_process.stop() == 0


@pytest.mark.slow
async def test_records_published_or_imported_through_the_cli_reach_subscribers(
    daemon_process: DaemonProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    # A CAR made by another node, offline.
    other = Cli(tmp_path / "other")
    other.run("init")
    (tmp_path / "gift.txt").write_text("a gift")
    gift = cast(dict[str, Any], other.json("add", tmp_path / "gift.txt"))
    other.run("export", gift["id"], "-o", tmp_path / "gift.car")
    (tmp_path / "poem.txt").write_text("snow on snow")

    info = daemon_process.start()
    online = OnlineCli(daemon_process.cli.data_dir)

    async def run(*args: str | Path) -> dict[str, Any]:
        done = await trio.run_process(
            online.command(*args, "--json"), env=online.environment(), capture_stdout=True
        )
        return cast(dict[str, Any], json.loads(done.stdout))

    async with open_trio_client(Path(info["rpc_socket"])) as client:
        await client.call("events.subscribe", {"events": ["record.added"]})
        with trio.fail_after(60):
            added = await run("add", tmp_path / "poem.txt", "--title", "Poem")
            event = await client.events.receive()
            assert event["event"] == "record.added"
            assert event["data"]["origin"] == "local"
            assert event["data"]["record"]["id"] == added["id"]
            assert event["data"]["record"]["title"] == "Poem"

            await run("import", tmp_path / "gift.car")
            event = await client.events.receive()
            assert event["data"]["origin"] == "import"
            assert event["data"]["record"]["id"] == gift["id"]
            await run("import", tmp_path / "gift.car")  # nothing new: no event
            again = await run("add", tmp_path / "poem.txt", "--title", "Poem again")
            event = await client.events.receive()
            assert event["data"]["record"]["id"] == again["id"]
    assert daemon_process.stop() == 0


# --- the backends directly ------------------------------------------------------


async def test_both_backends_report_progress_to_the_end(
    rpc_daemon: Daemon,  # noqa: F811
    tmp_path: Path,
) -> None:
    size = 3 * CHUNK + 5
    write_random_file(tmp_path / "film.bin", size, seed=6)

    def exercise(backend: Backend, name: str) -> dict[str, list[tuple[int, int | None]]]:
        reports: dict[str, list[tuple[int, int | None]]] = {}

        def recorder(operation: str) -> Callable[[int, int | None], None]:
            return lambda done, total: reports.setdefault(operation, []).append((done, total))

        published = backend.publish(tmp_path / "film.bin", WorkFields(), recorder("add"))
        backend.get(published.record, tmp_path / f"{name}.bin", recorder("get"), pin=True)
        car = tmp_path / f"{name}.car"
        backend.export(published.record, car, recorder("export"))
        backend.import_car(car, recorder("import"))
        backend.fsck(False, recorder("fsck"))
        return reports

    client = RpcClient.connect(rpc_socket_path(rpc_daemon.data_dir))
    backends: list[Backend] = [StoreBackend(rpc_daemon.data_dir), DaemonBackend(client)]
    try:
        runs = [
            await trio.to_thread.run_sync(exercise, backend, type(backend).__name__)
            for backend in backends
        ]
    finally:
        for backend in backends:
            backend.close()
    for backend, reports in zip(backends, runs, strict=True):
        name = type(backend).__name__
        car_size = (tmp_path / f"{name}.car").stat().st_size
        assert reports["add"][-1] == (size, size), name
        assert reports["get"][-1] == (size, size), name
        assert reports["export"][-1] == runs[0]["export"][-1], name  # content bytes, total unknown
        assert reports["export"][-1][0] > size, name  # the leaves and their parent node
        assert reports["import"][-1] == (car_size, car_size), name
        done, total = reports["fsck"][-1]
        assert done == total, name
        assert total is not None
        assert total >= size
        for operation, seen in reports.items():
            counts = [done for done, _ in seen]
            assert counts == sorted(counts), (name, operation)


def test_lineage_lists_records_depth_first_as_the_store_holds_them(store: Store) -> None:
    """A diamond with a missing ancestor: the JSON view walks it as the store orders edges."""
    key = private_key_from_seed(bytes(range(32)))
    content = Cid.for_raw(b"content")
    missing = sign_record(
        Contribution(title="lost", content=content, size=7, media_type="text/plain", license="MIT"),
        private_key=key,
        created_ms=1,
    )
    made: dict[str, Cid] = {}

    def work(name: str, *parents: Cid) -> Cid:
        body = Contribution(
            title=name,
            content=content,
            size=7,
            media_type="text/plain",
            license="MIT",
            parents=tuple(Parent(parent) for parent in parents),
        )
        record = sign_record(body, private_key=key, created_ms=len(made) + 2)
        store.put_record(record)
        made[name] = record.id
        return record.id

    top = work("top")
    left = work("left", top, missing.id)
    right = work("right", top)
    bottom = work("bottom", left, right)
    work("below", bottom)
    work("beside", left)

    graph = StoreBackend(store.data_dir).lineage(bottom, 1000)
    view = graph.to_json({})
    # The walk the offline CLI has always done: depth first over the store's edge order.
    assert [record["id"] for record in cast(list[dict[str, Any]], view["ancestors"])] == [
        str(cid) for cid in reference_walk(store, bottom, up=True)
    ]
    assert [record["id"] for record in cast(list[dict[str, Any]], view["descendants"])] == [
        str(made["below"])
    ]
    assert view["missing"] == [str(missing.id)]
    assert graph.children_of(top) == sorted([left, right], key=Cid.to_bytes)
    assert graph.parents_of(left) == sorted([top, missing.id], key=Cid.to_bytes)
    # The daemon's views of the same records make the same graph.
    rebuilt = LineageGraph.build(
        bottom,
        json.loads(json.dumps([to_json(store.get_record(cid)) for cid in graph.records])),
        graph.missing,
        graph.truncated,
    )
    assert rebuilt.to_json({}) == view


def reference_walk(store: Store, root: Cid, *, up: bool) -> list[Cid]:
    seen: set[Cid] = set()
    order: list[Cid] = []
    stack = [root]
    while stack:
        current = stack.pop()
        if current in seen or not store.has_record(current):
            continue
        seen.add(current)
        order.append(current)
        if up:
            stack.extend(parent for parent, _ in store.parents_of(current))
        else:
            stack.extend(store.children_of(current))
    return order[1:]


def test_a_slice_of_content_is_found_without_reading_what_is_before_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``content.cat`` (so ``cat`` through the daemon) seeks by the DAG's sizes."""
    size = 175 * CHUNK + 3  # a root over two nodes of leaves
    data = write_random_file(tmp_path / "big.bin", size, seed=8)
    root = add_file(store, tmp_path / "big.bin").root
    fetched: list[Cid] = []
    get_block = store.get_block

    def counting_get_block(cid: Cid) -> bytes:
        fetched.append(cid)
        return get_block(cid)

    monkeypatch.setattr(store, "get_block", counting_get_block)
    for offset, length in [(0, 10), (CHUNK - 1, 2), (174 * CHUNK - 5, 10), (size - 2, 10)]:
        fetched.clear()
        piece = read_content(store, root, offset, length)
        assert piece.data == data[offset : offset + length]
        assert piece.eof == (offset + length >= size)
        assert len(fetched) <= 5, offset  # root, a node, at most two leaves (and one to see eof)
    assert read_content(store, root, size + 1, 10) == ContentSlice(root, size + 1, b"", True)
    whole = b"".join(iter_content_from(store, root, 0))
    assert whole == data


def test_daemon_errors_read_as_the_offline_lines(tmp_path: Path) -> None:
    given = Path("out/copy.bin")
    absolute = tmp_path / given
    paths = {absolute: given}
    temporary = absolute.parent / ".copy.bin.0123456789ab.partial"
    file_error = RpcError(
        FILE_ERROR,
        f"{temporary}: Permission denied",
        {"errno": "EACCES", "path": str(temporary)},
    )
    assert error_line("content.get", file_error, paths) == (
        "out/.copy.bin.0123456789ab.partial: Permission denied"
    )
    elsewhere = RpcError(FILE_ERROR, "/etc/x: Permission denied", {"path": "/etc/x"})
    assert error_line("content.get", elsewhere, paths) == "/etc/x: Permission denied"
    corrupt = RpcError(
        -32003, "corrupt-block: x", {"reason": "corrupt-block", "error": "CorruptBlock"}
    )
    assert error_line("content.get", corrupt, {}) == "integrity error: corrupt-block: x"
    strange = RpcError(-32001, "odd: y", {"reason": "odd", "error": "SomethingNew"})
    assert error_line("content.add", strange, {}) == "invalid input: odd: y"
    old_daemon = RpcError(METHOD_NOT_FOUND, "method not found", "car.export")
    assert "does not serve car.export" in error_line("car.export", old_daemon, {})
    bug = RpcError(INTERNAL_ERROR, "internal error", "KeyError")
    assert "log" in error_line("store.fsck", bug, {})


@pytest.mark.slow
def test_collab_commands_print_the_same_through_the_daemon(
    daemon_process: DaemonProcess,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = daemon_process.cli.data_dir
    offline = InProcessCli(data_dir, tmp_path, monkeypatch)
    online = InProcessCli(data_dir, tmp_path, monkeypatch, ("--online",))
    (tmp_path / "poem.txt").write_text("snow on snow")
    (tmp_path / "song.mp3").write_bytes(b"ID3 a song")
    offline.json("profile", "set", "--name", "Ana Lía")
    poem = offline.json("add", "poem.txt", "--title", "Winter poem")
    collab = offline.json(
        "collab", "open", "--title", "Winter <sounds>", "--deadline", "2031-03-01"
    )
    song = offline.json(
        "remix", poem["id"], "song.mp3", "--title", "Snow song", "--collab", collab["id"]
    )
    production = offline.json(
        "production",
        "create",
        "--title",
        "Album",
        "--collab",
        collab["id"],
        "--credit",
        f"{song['id']}:music:6000",
        "--credit",
        f"{poem['id']}:words:4000",
    )
    offline.json("ack", production["id"], "--dispute", "more for the words")

    commands: list[tuple[str, ...]] = [
        ("collab", "ls"),
        ("collab", "ls", "--json"),
        ("collab", "show", collab["id"]),
        ("collab", "show", collab["id"], "--json"),
        ("production", "show", production["id"]),
        ("production", "show", production["id"], "--json"),
        ("credits", production["id"]),
        ("credits", production["id"], "--json"),
        ("credits", production["id"], "--csv"),
        ("lineage", production["id"], "--format", "dot"),
        ("lineage", song["id"], "--format", "svg", "--production", production["id"]),
        ("lineage", poem["id"], "--format", "svg", "-o", "poem.svg", "--json"),
        ("graph", production["id"], "-o", "album.svg"),
        ("lineage", song["id"]),
        ("lineage", song["id"], "--format", "json"),
        ("ls",),
        ("ls", "--json"),
        ("show", song["id"]),
        ("show", song["id"], "--json"),
        # Errors a user can cause: the same line, the same exit code.
        ("collab", "show", UNKNOWN),
        ("collab", "show", poem["id"]),
        ("credits", song["id"]),
        ("production", "show", UNKNOWN),
        ("lineage", production["id"], "--format", "svg", "--max-nodes", "2"),
        ("lineage", song["id"], "--production", production["id"]),
        ("production", "create", "--title", "X", "--credit", f"{song['id']}:music:9000"),
        ("production", "create", "--title", "X", "--credit", f"{UNKNOWN}:music:10000"),
        ("production", "create", "--title", "X", "--credit", f"{collab['id']}:music:10000"),
        ("collab", "open", "--title", ""),
        ("ack", production["id"], "--dispute", " "),
        ("ack", UNKNOWN, "--accept"),
    ]
    written = ("poem.svg", "album.svg")

    def run_all(cli: InProcessCli) -> list[tuple[int, bytes, str]]:
        results = [cli.run(*command) for command in commands]
        for name in written:
            results.append((0, (tmp_path / name).read_bytes(), name))
            (tmp_path / name).unlink()
        return results

    expected = run_all(offline)
    assert sum(code != 0 for code, _, _ in expected) == 12  # the errors, and no others
    tree = expected[commands.index(("lineage", song["id"]))][1].decode()
    assert "by Ana Lía (12D3KooW" in tree
    assert "Ana Lía (12D3KooW" in expected[commands.index(("ls",))][1].decode()
    listed = json.loads(expected[commands.index(("ls", "--json"))][1])
    assert {record["author_name"] for record in listed} == {"Ana Lía"}
    shown = json.loads(expected[commands.index(("show", song["id"], "--json"))][1])
    assert shown["author_name"] == "Ana Lía"
    lineage = json.loads(expected[commands.index(("lineage", song["id"], "--format", "json"))][1])
    assert [record["author_name"] for record in lineage["ancestors"]] == ["Ana Lía"]
    daemon_process.start()
    for command, want, got in zip([*commands, *written], expected, run_all(online), strict=True):
        assert got == want, command

    # Signing prints the same, but for the new record's id (it has a new creation time).
    for args in [
        ("collab", "open", "--title", "Again"),
        ("production", "create", "--title", "Single", "--credit", f"{song['id']}:m:10000"),
        ("ack", production["id"], "--accept"),
    ]:
        through_daemon, directly = online.json(*args), offline.json(*args)
        assert through_daemon["id"] != directly["id"]
        same = ("id", "created_ms")
        assert {**through_daemon, **dict.fromkeys(same)} == {**directly, **dict.fromkeys(same)}
    assert online.run("credits", production["id"], "--fetch")[0] == 0
    code, out, err = offline.run("--offline", "credits", production["id"], "--fetch")
    assert (code, out) == (2, b"")
    assert "--fetch needs the daemon" in err
    assert daemon_process.stop() == 0
    code, out, err = offline.run("credits", production["id"], "--fetch")
    assert (code, out) == (1, b"")
    assert err.startswith("remixnet: error: fetching records from peers needs the daemon")
