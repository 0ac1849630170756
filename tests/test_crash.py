"""kill -9 during add, get and import: the store stays consistent, re-running completes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, write_random_file

pytestmark = pytest.mark.slow

KILLS = 5
SIZE = 128 << 20
# Kill moments, as fractions of how long one uninterrupted run took: from just
# after start-up to just before the end.
MOMENTS = [0.35 + 0.6 * n / (KILLS - 1) for n in range(KILLS)]


def timed(cli: Cli, *args: str | Path) -> float:
    """Seconds one uninterrupted ``remixnet ARGS`` takes."""
    started = time.monotonic()
    cli.run(*args)
    return time.monotonic() - started


def interrupted(cli: Cli, *args: str | Path, after: float) -> bool:
    """Run ``remixnet ARGS`` and SIGKILL it ``after`` seconds; True if it was still running."""
    process = subprocess.Popen(
        cli.command(*args),
        env=cli.environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(after)
    running = process.poll() is None
    if running:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return running


def assert_clean(cli: Cli) -> None:
    report = cli.run("fsck", "--json", check=False)
    assert json.loads(report.stdout)["clean"] is True, report.stdout


def reset(cli: Cli) -> None:
    """Empty the store of a node, keeping its identity."""
    for name in ("remixnet.db", "remixnet.db-wal", "remixnet.db-shm"):
        (cli.data_dir / name).unlink(missing_ok=True)
    for path in sorted((cli.data_dir / "blocks").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()


def test_kill_during_add_then_add_again(initialised_cli: Cli, tmp_path: Path) -> None:
    cli = initialised_cli
    data = write_random_file(tmp_path / "work.bin", SIZE, seed=7)
    duration = timed(cli, "add", tmp_path / "work.bin")
    killed = 0
    for moment in MOMENTS:
        reset(cli)
        killed += interrupted(cli, "add", tmp_path / "work.bin", after=moment * duration)
        assert_clean(cli)
        result = json.loads(cli.run("add", tmp_path / "work.bin", "--json").stdout)
        assert cli.run("cat", result["id"]).stdout == data
        assert_clean(cli)
    assert killed >= 2, "runs ended before the kill: use a larger file"


def test_kill_during_get_leaves_no_partial_output(initialised_cli: Cli, tmp_path: Path) -> None:
    cli = initialised_cli
    data = write_random_file(tmp_path / "work.bin", SIZE, seed=8)
    record = json.loads(cli.run("add", tmp_path / "work.bin", "--json").stdout)["id"]
    out = tmp_path / "out" / "copy.bin"
    out.parent.mkdir()
    duration = timed(cli, "get", record, "-o", out)
    killed = 0
    for moment in MOMENTS:
        out.unlink(missing_ok=True)
        killed += interrupted(cli, "get", record, "-o", out, after=moment * duration)
        # The output is either absent or whole: never a partial file under its name.
        assert not out.exists() or out.read_bytes() == data
    cli.run("get", record, "-o", out)
    assert out.read_bytes() == data
    assert [p.name for p in out.parent.iterdir()] == ["copy.bin"]  # stale temp files removed
    assert killed >= 2


def test_kill_during_import_then_import_again(initialised_cli: Cli, tmp_path: Path) -> None:
    source = initialised_cli
    data = write_random_file(tmp_path / "work.bin", SIZE, seed=9)
    record = json.loads(source.run("add", tmp_path / "work.bin", "--json").stdout)["id"]
    car = tmp_path / "work.car"
    source.run("export", record, "-o", car)
    target = Cli(tmp_path / "target")
    target.run("init")
    duration = timed(target, "import", car)
    killed = 0
    for moment in MOMENTS:
        reset(target)
        killed += interrupted(target, "import", car, after=moment * duration)
        assert_clean(target)
        target.run("import", car)
        assert target.run("cat", record).stdout == data
    assert killed >= 2
