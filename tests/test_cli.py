"""The ``remixnet`` CLI end to end, in subprocesses, on temporary data directories.

Each scenario runs twice: offline (no daemon: the CLI works on the store) and
through a daemon running on the same data directory (``remixnet --online``, so
a command that did not reach the daemon fails). The expectations are the same.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.conftest import (
    Cli,
    block_location,
    corrupt_block,
    indexed_blocks,
    write_random_file,
)
from tests.daemon_fixtures import DaemonProcess, OnlineCli, write_test_config

CHUNK = 262_144


class Nodes:
    """Initialised nodes of one test, each with a running daemon in ``daemon`` mode."""

    def __init__(self, root: Path, mode: str) -> None:
        self.root = root
        self.mode = mode
        self.daemons: list[DaemonProcess] = []

    def __call__(self, name: str) -> Cli:
        offline = Cli(self.root / name)
        offline.run("init")
        if self.mode == "offline":
            return offline
        write_test_config(offline.data_dir)
        daemon = DaemonProcess(offline)
        self.daemons.append(daemon)
        daemon.start()
        return OnlineCli(offline.data_dir)

    def stop(self) -> None:
        """Stop every daemon; each must exit cleanly (nothing crashed it)."""
        try:
            for daemon in self.daemons:
                assert daemon.stop() == 0, daemon.log()
        finally:
            for daemon in self.daemons:
                daemon.kill()


@pytest.fixture(params=["offline", pytest.param("daemon", marks=pytest.mark.slow)])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Nodes]:
    made = Nodes(tmp_path, request.param)
    yield made
    made.stop()


@pytest.fixture
def node(nodes: Nodes) -> Cli:
    """An initialised node: offline, or with a daemon that every command goes through."""
    return nodes("node")


def added(cli: Cli, *args: str | Path) -> dict[str, Any]:
    return cast(dict[str, Any], cli.json(*args))


def test_init_creates_a_private_identity_once(cli: Cli) -> None:
    first = cast(dict[str, Any], cli.json("init"))
    assert first["created"] is True
    assert first["author"].startswith("12D3KooW")
    key = cli.data_dir / "identity.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    second = cast(dict[str, Any], cli.json("init"))
    assert second == {**first, "created": False}
    assert cli.run("id").text.strip() == first["author"]


def test_add_show_cat_get_round_trip(node: Cli, tmp_path: Path) -> None:
    cli = node
    poem = tmp_path / "poem.txt"
    data = write_random_file(poem, 3 * CHUNK + 17)
    result = added(cli, "add", poem, "--title", "Winter poem", "--tag", "poetry", "--tag", "winter")
    assert result["size"] == len(data)
    shown = cast(dict[str, Any], cli.json("show", result["id"]))
    assert shown["title"] == "Winter poem"
    assert shown["content"] == result["content"]
    assert shown["media_type"] == "text/plain"
    assert shown["license"] == "CC-BY-SA-4.0"
    assert shown["tags"] == ["poetry", "winter"]
    assert cli.run("cat", result["content"]).stdout == data
    assert cli.run("cat", result["id"]).stdout == data  # a record id means its content
    out = tmp_path / "out" / "copy.txt"
    out.parent.mkdir()
    got = cast(dict[str, Any], cli.json("get", result["id"], "-o", out))
    assert got["size"] == len(data)
    assert out.read_bytes() == data
    assert not [p for p in out.parent.iterdir() if p.name != "copy.txt"]  # no temp file left
    assert "Winter poem" in cli.run("show", result["id"]).text
    author = cast(dict[str, Any], cli.json("id"))["author"]
    assert shown["author"] == author == cli.run("id").text.strip()


def test_remix_lineage_and_filters(node: Cli, tmp_path: Path) -> None:
    cli = node
    (tmp_path / "poem.txt").write_text("snow on snow")
    (tmp_path / "sketch.png").write_bytes(b"\x89PNG fake drawing")
    (tmp_path / "score.mp3").write_bytes(b"ID3 music")
    poem = added(cli, "add", tmp_path / "poem.txt", "--title", "Poem")
    sketch = added(cli, "add", tmp_path / "sketch.png", "--title", "Sketch", "--tag", "ink")
    drawing = added(
        cli,
        "remix",
        f"{poem['id']}:3",
        f"{sketch['id']}:1",
        tmp_path / "sketch.png",
        "--title",
        "Drawing",
        "--upstream-bps",
        "4000",
    )
    score = added(cli, "remix", drawing["id"], tmp_path / "score.mp3", "--title", "Score")
    shown = cast(dict[str, Any], cli.json("show", drawing["id"]))
    assert shown["upstream_bps"] == 4000
    assert {(p["id"], p["weight"]) for p in shown["parents"]} == {
        (poem["id"], 3),
        (sketch["id"], 1),
    }
    assert cast(dict[str, Any], cli.json("show", poem["id"]))["remixed_by"] == [drawing["id"]]

    lineage = cast(dict[str, Any], cli.json("lineage", drawing["id"]))
    assert {r["id"] for r in lineage["ancestors"]} == {poem["id"], sketch["id"]}
    assert [r["id"] for r in lineage["descendants"]] == [score["id"]]
    tree = cli.run("lineage", score["id"]).text
    for title in ("Score", "Drawing", "Poem", "Sketch"):
        assert title in tree

    def ids(*args: str) -> set[str]:
        return {r["id"] for r in cast(list[dict[str, Any]], cli.json("ls", *args))}

    assert ids() == {poem["id"], sketch["id"], drawing["id"], score["id"]}
    assert ids("--tag", "ink") == {sketch["id"]}
    assert ids("--media-type", "image/*") == {sketch["id"], drawing["id"]}
    assert ids("--media-type", "audio/mpeg") == {score["id"]}
    assert ids("--author", "me") == ids()
    assert ids("--title", "ket") == {sketch["id"]}
    assert "Drawing" in cli.run("ls").text


def test_export_import_round_trip_into_another_node(
    nodes: Nodes, node: Cli, tmp_path: Path
) -> None:
    cli = node
    data = write_random_file(tmp_path / "film.bin", 2 * CHUNK + 5, seed=1)
    (tmp_path / "poem.txt").write_text("a poem")
    poem = added(cli, "add", tmp_path / "poem.txt")
    film = added(cli, "remix", poem["id"], tmp_path / "film.bin")
    car = tmp_path / "film.car"
    exported = cast(dict[str, Any], cli.json("export", film["id"], "-o", car))
    assert exported["blocks"] >= 2 + 3  # two records, the film's leaves and root, the poem

    other = nodes("other")
    imported = cast(dict[str, Any], other.json("import", car))
    assert imported["roots"] == [film["id"]]
    assert imported["records"] == 2
    assert other.run("cat", film["id"]).stdout == data
    assert other.run("cat", poem["id"]).stdout == b"a poem"
    assert cast(dict[str, Any], other.json("fsck"))["clean"] is True
    # Importing twice is harmless.
    other.run("import", car)
    assert cast(dict[str, Any], other.json("fsck"))["clean"] is True


def test_corrupt_block_is_named_by_fsck_and_never_served(node: Cli, tmp_path: Path) -> None:
    cli = node
    write_random_file(tmp_path / "a.bin", 2 * CHUNK + 1, seed=2)
    work = added(cli, "add", tmp_path / "a.bin")
    assert cast(dict[str, Any], cli.json("fsck"))["clean"] is True
    victim = next(cid for cid in indexed_blocks(cli.data_dir) if cid.startswith("bafkrei"))
    corrupt_block(cli.data_dir, victim)
    pack, offset, size = block_location(cli.data_dir, victim)
    corrupted_bytes = pack.read_bytes()[offset : offset + size]

    report = cli.run("fsck", "--json", check=False)
    assert report.returncode == 1
    assert cast(dict[str, Any], report.json())["corrupt_blocks"] == [victim]
    assert victim in cli.run("fsck", check=False).text

    failed = cli.fail("get", work["id"], "-o", tmp_path / "out.bin")
    assert "does not match" in failed.stderr
    assert not (tmp_path / "out.bin").exists()
    assert not list(tmp_path.glob(".out.bin*"))
    cat = cli.fail("cat", work["content"])
    assert corrupted_bytes not in cat.stdout

    repaired = cast(dict[str, Any], cli.json("fsck", "--repair"))
    assert repaired["corrupt_blocks"] == [victim]
    assert cast(dict[str, Any], cli.json("fsck"))["clean"] is True
    assert "not in the local store" in cli.fail("cat", work["content"]).stderr
    # Adding the file again heals the store.
    added(cli, "add", tmp_path / "a.bin")
    assert cli.run("cat", work["content"]).stdout == (tmp_path / "a.bin").read_bytes()


def test_commands_before_init_fail_with_one_line(cli: Cli, tmp_path: Path) -> None:
    assert "not initialised" in cli.fail("add", tmp_path / "nothing.txt").stderr
    assert "not initialised" in cli.fail("ls").stderr
    assert "not initialised" in cli.fail("id").stderr
    assert "no daemon is running" in cli.fail("--online", "ls").stderr


def test_user_errors_are_one_line_with_nonzero_exit(node: Cli, tmp_path: Path) -> None:
    cli = node
    assert "No such file" in cli.fail("add", tmp_path / "nothing.txt").stderr
    assert "not a file" in cli.fail("add", tmp_path).stderr
    assert "bad-cid-text" in cli.fail("show", "not-a-cid").stderr
    unknown = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert "unknown record" in cli.fail("show", unknown).stderr
    assert "not in the local store" in cli.fail("cat", unknown).stderr
    (tmp_path / "x.txt").write_text("x")
    assert "unknown parent record" in cli.fail("remix", unknown, tmp_path / "x.txt").stderr
    assert "WEIGHT" in cli.fail("remix", f"{unknown}:abc", tmp_path / "x.txt").stderr
    assert cli.fail("add", tmp_path / "x.txt", "--license", "not a license!").returncode == 1
    assert cli.fail("ls", "--author", "nobody").returncode == 1
    assert cli.fail("import", tmp_path / "x.txt").returncode == 1  # not a CAR
    assert cli.fail("frobnicate").returncode == 2
    assert cli.fail("get", unknown).returncode == 2  # -o missing


def test_import_of_a_car_cut_between_sections_reports_missing_content(
    nodes: Nodes, node: Cli, tmp_path: Path
) -> None:
    """CARv1 has no end marker: a CAR cut at a section boundary parses but is short."""
    cli = node
    write_random_file(tmp_path / "film.bin", 3 * CHUNK, seed=3)
    film = added(cli, "add", tmp_path / "film.bin")
    car = tmp_path / "film.car"
    cli.run("export", film["id"], "-o", car)
    whole = car.read_bytes()
    # Sections: header, record, root node, 3 leaves. Keep all but the last leaf.
    cut = tmp_path / "cut.car"
    cut.write_bytes(whole[: len(whole) - (3 + 36 + CHUNK)])  # varint, CID, leaf
    other = nodes("other")
    failed = other.fail("import", cut)
    assert "truncated" in failed.stderr
    assert film["content"] in failed.stderr
    assert "not pinned" not in failed.stderr
    assert cast(dict[str, Any], other.json("fsck"))["clean"] is True
    other.run("import", car)  # the whole archive completes it
    assert other.run("cat", film["id"]).stdout == (tmp_path / "film.bin").read_bytes()


def test_the_cli_starts_without_importing_libp2p() -> None:
    # Every command but `daemon` talks to the socket or the store: importing
    # libp2p (~0.4 s) would slow each of them, and the tests that run hundreds.
    probe = "import sys, node.cli; print(sorted(m for m in sys.modules if m.startswith('libp2p')))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout
