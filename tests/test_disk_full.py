"""A disk that fills up in the middle of a fetch.

Daemon ``b`` keeps its data directory on a 4 MiB tmpfs the test mounts, and
gets a 12 MiB work from daemon ``a`` over libp2p (127.0.0.1). The fetch must
fail with one clear line and a non-zero exit, leave no output file, leave the
store consistent (``fsck`` clean, the daemon still serving), and complete once
the filesystem has room again. Needs root to mount; skipped with the reason
otherwise. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from tests.conftest import Cli, CliResult, write_random_file
from tests.daemon_fixtures import DaemonProcess, write_test_config
from tests.test_network_daemon import Swarm, swarm, wait_for_peers  # noqa: F401

pytestmark = pytest.mark.slow

MIB = 1 << 20
SMALL = "4m"
ROOMY = "64m"


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"mount {' '.join(args)}: {result.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted at the end (lazily, whatever still holds it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    point = tmp_path / "small"
    point.mkdir()
    try:
        mount("-t", "tmpfs", "-o", f"size={SMALL}", "tmpfs", str(point))
    except RuntimeError as error:
        pytest.skip(f"cannot mount a tmpfs: {error}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False, timeout=30)


@dataclass
class FullDiskFetch:
    """A ``get`` by daemon ``b``, whose data directory is on the small disk, that failed."""

    cli: Cli
    daemon: DaemonProcess
    work: dict[str, Any]
    data: bytes
    output: Path
    failed: CliResult


def fetch_onto_small_disk(processes: Swarm, small_disk: Path, tmp_path: Path) -> FullDiskFetch:
    """Daemon ``a`` adds a 12 MiB work; ``b`` (data dir on ``small_disk``) fails to get it."""
    source = tmp_path / "film.bin"
    data = write_random_file(source, 12 * MIB, seed=5)
    a = processes.daemon("a")
    work = cast(dict[str, Any], a.cli.json("add", source, "--title", "Film"))

    b_cli = Cli(small_disk / "b")
    b_cli.run("init")
    address = a.node_info()["listen_addrs"][0]
    write_test_config(b_cli.data_dir, f"bootstrap = {json.dumps([address])}\n")
    b = DaemonProcess(b_cli)
    b.output = tmp_path / "b-daemon.out"  # not on the small disk
    processes.daemons.append(b)
    b.start()
    wait_for_peers(b, 1)

    output = small_disk / "film.bin"
    failed = b_cli.fail("get", work["id"], "-o", output)  # one line, non-zero, no traceback
    return FullDiskFetch(b_cli, b, work, data, output, failed)


def test_a_fetch_that_fills_the_disk_fails_cleanly_and_completes_once_there_is_room(
    swarm: Swarm,  # noqa: F811
    small_disk: Path,
    tmp_path: Path,
) -> None:
    fetch = fetch_onto_small_disk(swarm, small_disk, tmp_path)
    assert not fetch.output.exists()
    assert [p.name for p in small_disk.iterdir()] == ["b"]  # no partial file beside it
    assert fetch.daemon.process is not None
    assert fetch.daemon.process.poll() is None, fetch.daemon.log()  # still running
    checked = cast(dict[str, Any], fetch.cli.json("fsck"))
    assert checked["clean"] is True, checked

    # Room again: the same command completes, and the store is sound.
    mount("-o", f"remount,size={ROOMY}", str(small_disk))
    got = cast(dict[str, Any], fetch.cli.json("get", fetch.work["id"], "-o", fetch.output))
    assert got["content"] == fetch.work["content"]
    assert fetch.output.read_bytes() == fetch.data
    checked = cast(dict[str, Any], fetch.cli.json("fsck"))
    assert checked["clean"] is True, checked


def test_a_fetch_that_fills_the_disk_says_the_disk_is_full(
    swarm: Swarm,  # noqa: F811
    small_disk: Path,
    tmp_path: Path,
) -> None:
    fetch = fetch_onto_small_disk(swarm, small_disk, tmp_path)
    assert "no space left" in fetch.failed.stderr.lower(), fetch.failed.stderr


def test_writing_the_output_onto_a_full_disk_fails_cleanly(
    swarm: Swarm,  # noqa: F811
    small_disk: Path,
    tmp_path: Path,
) -> None:
    source = tmp_path / "film.bin"
    data = write_random_file(source, 12 * MIB, seed=6)
    a = swarm.daemon("a")
    work = cast(dict[str, Any], a.cli.json("add", source, "--title", "Film"))
    output = small_disk / "film.bin"
    failed = a.cli.fail("get", work["id"], "-o", output)
    assert "no space left" in failed.stderr.lower(), failed.stderr
    assert list(small_disk.iterdir()) == []  # neither the file nor its temporary
    mount("-o", f"remount,size={ROOMY}", str(small_disk))
    a.cli.run("get", work["id"], "-o", output)
    assert output.read_bytes() == data
