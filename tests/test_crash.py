"""kill -9 during add, get, import and sync: the store stays consistent, repeating completes.

Every operation is killed ``KILLS`` times at random moments (seeded, so a
failure can be replayed). After each kill ``fsck`` is clean, nothing partial
is presented as complete (``cat`` gives the whole work or fails cleanly; a
``get`` output is absent or whole), and running the operation again
completes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from node.datadir import DataDir
from node.store import Store
from node.transfer import add_file, iter_content
from protocol.cid import Cid
from tests.conftest import Cli, write_random_file
from tests.daemon_fixtures import DaemonProcess, write_test_config
from tests.test_gossip import contribution

pytestmark = pytest.mark.slow

KILLS = 20
SIZE = 32 << 20


def moments(seed: int) -> list[float]:
    """Kill moments, as fractions of how long one uninterrupted run took: from early in
    the run (after interpreter start-up) to just before its end."""
    chance = random.Random(seed)
    return [chance.uniform(0.15, 1.0) for _ in range(KILLS)]


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


def presented_whole(cli: Cli, data: bytes) -> None:
    """Every record the store lists has its whole content: ``cat`` gives exactly ``data``."""
    listed = json.loads(cli.run("ls", "--json").stdout)
    for record in listed:
        result = cli.run("cat", record["id"], check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout == data


def test_kill_during_add_then_add_again(initialised_cli: Cli, tmp_path: Path) -> None:
    cli = initialised_cli
    data = write_random_file(tmp_path / "work.bin", SIZE, seed=7)
    duration = timed(cli, "add", tmp_path / "work.bin")
    killed = 0
    for moment in moments(seed=7):
        reset(cli)
        killed += interrupted(cli, "add", tmp_path / "work.bin", after=moment * duration)
        assert_clean(cli)
        presented_whole(cli, data)  # a record is listed only once its content is whole
        result = json.loads(cli.run("add", tmp_path / "work.bin", "--json").stdout)
        assert cli.run("cat", result["id"]).stdout == data
    assert_clean(cli)
    assert killed >= KILLS // 2, "runs ended before the kill: use a larger file"


def test_kill_during_get_leaves_no_partial_output(initialised_cli: Cli, tmp_path: Path) -> None:
    cli = initialised_cli
    data = write_random_file(tmp_path / "work.bin", SIZE, seed=8)
    record = json.loads(cli.run("add", tmp_path / "work.bin", "--json").stdout)["id"]
    out = tmp_path / "out" / "copy.bin"
    out.parent.mkdir()
    duration = timed(cli, "get", record, "-o", out)
    killed = 0
    for moment in moments(seed=8):
        out.unlink(missing_ok=True)
        killed += interrupted(cli, "get", record, "-o", out, after=moment * duration)
        # The output is either absent or whole: never a partial file under its name.
        assert not out.exists() or out.read_bytes() == data
    assert_clean(cli)
    cli.run("get", record, "-o", out)
    assert out.read_bytes() == data
    assert [p.name for p in out.parent.iterdir()] == ["copy.bin"]  # stale temp files removed
    assert killed >= KILLS // 2


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
    for moment in moments(seed=9):
        reset(target)
        killed += interrupted(target, "import", car, after=moment * duration)
        assert_clean(target)
        presented_whole(target, data)
        target.run("import", car)
        assert target.run("cat", record).stdout == data
    assert killed >= KILLS // 2


# --- catch-up sync ---------------------------------------------------------------------------

SYNC_BATCH = 200  # records a node misses while it is down, before each restart
SYNC_SECONDS = 120.0


def stored_records(data_dir: Path) -> int:
    """Records in a node's store, read from its database (safe while a daemon writes it)."""
    path = data_dir / "remixnet.db"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])


def wait_for_records(data_dir: Path, count: int) -> float:
    """Seconds until the store holds ``count`` records (fails after SYNC_SECONDS)."""
    started = time.monotonic()
    while (stored := stored_records(data_dir)) < count:
        assert time.monotonic() - started < SYNC_SECONDS, f"{stored} of {count} records"
        time.sleep(0.05)
    return time.monotonic() - started


def test_kill_during_catch_up_sync_then_it_converges(tmp_path: Path) -> None:
    """A node killed again and again while catching up loses nothing and converges.

    Before each restart the seeder gets ``SYNC_BATCH`` records the node has not
    seen (made offline, so only catch-up sync brings them); the node is killed
    at a random moment of the catch-up that follows. What it stored stays,
    ``fsck`` is clean, and the next catch-up resumes with what is left.
    """
    seeder = Cli(tmp_path / "seeder")
    seeder.run("init")
    seeder_dir = DataDir(seeder.data_dir)
    identity = seeder_dir.load_identity()
    published = 0

    def publish_offline() -> None:
        nonlocal published
        with Store(seeder_dir) as store:  # safe beside the running seeder daemon
            for number in range(published, published + SYNC_BATCH):
                store.put_record(contribution(identity, number))
        published += SYNC_BATCH

    publish_offline()
    write_test_config(seeder.data_dir)
    seeder_daemon = DaemonProcess(seeder)
    address = seeder_daemon.start()["listen_addrs"][0]
    node = Cli(tmp_path / "node")
    node.run("init")
    write_test_config(node.data_dir, f'bootstrap = ["{address}"]\n')
    daemon = DaemonProcess(node)
    try:
        daemon.start()
        duration = wait_for_records(node.data_dir, published)  # one uninterrupted catch-up
        daemon.kill()
        killed_mid_sync = 0
        for moment in moments(seed=10):
            publish_offline()
            before = stored_records(node.data_dir)
            daemon.start()
            time.sleep(moment * duration)
            daemon.kill()
            after = stored_records(node.data_dir)
            assert before <= after <= published  # nothing stored is lost
            killed_mid_sync += after < published
            assert_clean(node)
        daemon.start()  # restarted once more, it gets everything it missed
        wait_for_records(node.data_dir, published)
        assert daemon.stop() == 0
        assert_clean(node)
        assert stored_records(node.data_dir) == published == SYNC_BATCH * (KILLS + 1)
        assert killed_mid_sync >= KILLS // 4, "the catch-ups ended before the kills"
    finally:
        daemon.kill()
        seeder_daemon.kill()


def collecting(data_dir: Path) -> bool:
    """True while a collector holds the store lock exclusively (``node.leases``)."""
    fd = os.open(data_dir / "store.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (releases the shared lock if it was taken)
    return False


def start_gc(cli: Cli) -> tuple[subprocess.Popen[bytes], float]:
    """``remixnet gc`` started; returns once it collects (or has ended), with the time then."""
    process = subprocess.Popen(cli.command("gc"), env=cli.environment(), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while process.poll() is None and not collecting(cli.data_dir):
        assert time.monotonic() < deadline, "gc did not start"
        time.sleep(0.002)
    return process, time.monotonic()


def test_kill_during_gc_keeps_pinned_content_and_rerunning_completes(
    initialised_cli: Cli, tmp_path: Path
) -> None:
    """``remixnet gc`` killed at random moments: fsck clean, pinned content intact each time.

    Each kill lands at a random moment of the collection itself (it holds the
    store lock exclusively from start to end). Garbage is added and the checks
    made in this process (through ``Store``, the code the commands run).
    """
    cli = initialised_cli
    kept_data = write_random_file(tmp_path / "kept.bin", 24 << 20, seed=11)
    kept = Cid.parse(json.loads(cli.run("add", tmp_path / "kept.bin", "--json").stdout)["content"])

    def add_garbage(round_number: int) -> Cid:
        """Content nothing pins: what the collector deletes."""
        write_random_file(tmp_path / "garbage.bin", 16 << 20, seed=100 + round_number)
        with Store(DataDir(cli.data_dir)) as store:
            return add_file(store, tmp_path / "garbage.bin").root

    def check(garbage: Cid | None) -> None:
        with Store(DataDir(cli.data_dir)) as store:
            report = store.fsck()
            assert report.clean, report
            assert b"".join(iter_content(store, kept)) == kept_data
            if garbage is not None:
                assert not store.has_block(garbage)

    add_garbage(-1)
    process, started = start_gc(cli)  # one uninterrupted collection: how long it takes
    assert process.wait(timeout=120) == 0
    duration = time.monotonic() - started
    chance = random.Random(12)
    killed = 0
    for round_number in range(KILLS):
        garbage = add_garbage(round_number)
        process, started = start_gc(cli)
        # (the first collection of a run is the slowest: aim at the first 60 % of it)
        time.sleep(max(0.0, started + chance.uniform(0.0, 0.6 * duration) - time.monotonic()))
        killed += process.poll() is None
        process.kill()
        process.wait(timeout=60)
        check(None)
        cli.run("gc")  # run again, it completes
        check(garbage)
    assert killed >= KILLS // 2, "the collections ended before the kills"
