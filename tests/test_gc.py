"""Pins and garbage collection on real SQLite and pack files; GC beside a running fetch."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from node.datadir import DataDir
from node.errors import MissingBlock, NotFound
from node.gc import GcReport
from node.leases import QuotaExceeded, StoreBusy
from node.store import NotHeld, Store
from node.transfer import add_file, iter_content
from protocol.cid import Cid
from tests.conftest import Cli, write_random_file
from tests.daemon_fixtures import (
    DaemonProcess,
    OnlineCli,
    daemon_process,  # noqa: F401
    write_test_config,
)

MIB = 1 << 20


def content(store: Store, root: Cid) -> bytes:
    return b"".join(iter_content(store, root))


def dag_cids(store: Store, root: Cid) -> list[Cid]:
    from protocol.cid import RAW
    from protocol.content import Block, child_links

    found, stack = [], [root]
    while stack:
        cid = stack.pop()
        found.append(cid)
        if cid.codec != RAW:
            stack.extend(child_links(Block(cid, store.get_block(cid))))
    return found


def added(store: Store, tmp_path: Path, name: str, size: int, seed: int) -> tuple[Cid, bytes]:
    data = write_random_file(tmp_path / name, size, seed=seed)
    return add_file(store, tmp_path / name).root, data


def test_gc_frees_unpinned_blocks_and_keeps_pinned_ones(store: Store, tmp_path: Path) -> None:
    store.guard.grace = 0  # nothing is being added: no grace period for recent writers
    kept, kept_data = added(store, tmp_path, "kept.bin", 3 * MIB, seed=1)
    dropped, _ = added(store, tmp_path, "dropped.bin", 5 * MIB, seed=2)
    store.pin(kept, "test")
    dropped_blocks = dag_cids(store, dropped)
    used = store.blocks.used_bytes()

    report = store.collect_garbage()

    assert report.blocks_deleted == len(dropped_blocks)
    assert report.bytes_deleted >= 5 * MIB
    assert report.packs_compacted == 1
    assert report.bytes_reclaimed >= 5 * MIB
    assert report.used_after == store.blocks.used_bytes() < used - 5 * MIB
    assert not any(store.has_block(cid) for cid in dropped_blocks)
    assert content(store, kept) == kept_data
    assert store.fsck().clean
    # The dropped pack bytes are gone from the disk, not just unreferenced.
    on_disk = sum(path.stat().st_size for path in store.data_dir.blocks.iterdir())
    assert on_disk < 4 * MIB
    again = store.collect_garbage()
    assert again.blocks_deleted == 0
    assert content(store, kept) == kept_data


def test_gc_keeps_what_a_writer_stored_within_the_grace_period(
    store: Store, tmp_path: Path
) -> None:
    root, data = added(store, tmp_path, "fresh.bin", MIB, seed=3)  # not pinned (yet)
    report = store.collect_garbage()
    assert report.blocks_deleted == 0
    assert content(store, root) == data


def test_gc_keeps_the_dag_of_a_running_fetch(store: Store, tmp_path: Path) -> None:
    store.guard.grace = 0
    root, data = added(store, tmp_path, "partial.bin", 2 * MIB, seed=4)
    with store.guard.fetching(root):
        assert store.collect_garbage().blocks_deleted == 0
    assert content(store, root) == data
    assert store.collect_garbage().blocks_deleted == len(dag_cids_count(data))
    assert not store.has_block(root)


def dag_cids_count(data: bytes) -> list[int]:
    """One entry per block of a file this size: the leaves plus the root node."""
    leaves = -(-len(data) // (256 * 1024))
    return [0] * (leaves + (1 if leaves > 1 else 0))


def test_gc_waits_for_another_process_or_writer_then_gives_up(store: Store, tmp_path: Path) -> None:
    with Store(store.data_dir) as other:  # another opener: like an offline command
        with pytest.raises(StoreBusy, match="another process"):
            store.collect_garbage(wait=0.2)
        other.close()
    failure: list[BaseException] = []

    def collect() -> None:
        try:
            store.collect_garbage(wait=0.2)
        except StoreBusy as error:
            failure.append(error)

    with store.writer():  # open in this thread: a collection in another one has to wait
        thread = threading.Thread(target=collect)
        thread.start()
        thread.join(5)
    assert len(failure) == 1
    assert "busy writing" in str(failure[0])
    assert store.collect_garbage(wait=1).blocks_deleted == 0


def test_reads_during_gc_give_the_right_bytes_or_missing(store: Store, tmp_path: Path) -> None:
    store.guard.grace = 0
    kept, _ = added(store, tmp_path, "kept.bin", 4 * MIB, seed=5)
    dropped, _ = added(store, tmp_path, "dropped.bin", 4 * MIB, seed=6)
    store.pin(kept, "test")
    cids = dag_cids(store, kept) + dag_cids(store, dropped)
    kept_set = set(dag_cids(store, kept))
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_all() -> None:
        reads = 0
        while not stop.is_set() and reads < 100_000:
            for cid in cids:
                reads += 1
                try:
                    assert cid.matches(store.get_block(cid))
                except MissingBlock:
                    if cid in kept_set:
                        errors.append(AssertionError(f"pinned {cid} read as missing"))
                except BaseException as error:
                    errors.append(error)

    readers = [threading.Thread(target=read_all) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        report = store.collect_garbage()
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
    assert report.blocks_deleted > 0
    assert errors == []
    assert store.fsck().clean


def test_pin_held_needs_every_block_and_accepts_a_record_id(store: Store, tmp_path: Path) -> None:
    root, _ = added(store, tmp_path, "work.bin", MIB, seed=7)
    pinned = store.pin_held(root, "by hand")
    assert (pinned.root, pinned.changed) == (root, True)
    assert store.pin_held(root, "by hand").changed is False
    assert store.unpin_content(root).root == root
    with pytest.raises(NotFound):
        store.unpin_content(root)
    leaf = dag_cids(store, root)[-1]
    store.delete_blocks([leaf])
    with pytest.raises(NotHeld, match=r"1 block\(s\) missing"):
        store.pin_held(root, "by hand")
    assert store.pins() == []
    with pytest.raises(NotFound):
        store.pin_held(Cid.for_raw(b"never stored"), "by hand")


def test_quota_refuses_a_writer_unless_gc_makes_room(store: Store, tmp_path: Path) -> None:
    store.guard.grace = 0
    dropped, _ = added(store, tmp_path, "dropped.bin", 3 * MIB, seed=8)
    store.quota = store.blocks.used_bytes() + MIB
    with pytest.raises(QuotaExceeded, match=r"storage quota of .* reached"):
        store.writer(reserve=2 * MIB)

    def collect() -> None:
        store.collect_garbage(wait=1)

    store.on_full = collect
    with store.writer(reserve=2 * MIB):
        pass
    assert not store.has_block(dropped)


async def test_gc_from_trio_beside_the_event_loop(store: Store, tmp_path: Path) -> None:
    store.guard.grace = 0
    root, _ = await trio.to_thread.run_sync(added, store, tmp_path, "a.bin", MIB, 9)
    report = await trio.to_thread.run_sync(store.collect_garbage)
    assert report.blocks_deleted == len(dag_cids_count(b"x" * MIB))
    assert not store.has_block(root)


def test_a_crash_between_compaction_and_unlink_leaves_fsck_clean(
    store: Store, tmp_path: Path
) -> None:
    """A retired pack whose file a crash kept is no damage, and the next GC deletes it."""
    store.guard.grace = 0
    kept, data = added(store, tmp_path, "kept.bin", MIB, seed=10)
    store.pin(kept, "test")
    added(store, tmp_path, "dropped.bin", 2 * MIB, seed=11)
    (old_pack,) = store.blocks.packs.names()
    saved = (store.data_dir.blocks / old_pack).read_bytes()
    store.collect_garbage()
    # What a kill just after the compaction's transaction leaves: the old file, retired.
    (store.data_dir.blocks / old_pack).write_bytes(saved)
    store.database.execute_many(
        "INSERT INTO packs (name, committed_size, created_ms) VALUES (?, -1, 0)", [(old_pack,)]
    )
    report = store.fsck()
    assert report.clean, report
    store.collect_garbage()
    assert old_pack not in store.blocks.packs.names()
    assert content(store, kept) == data
    assert store.fsck().clean


def test_gc_on_an_empty_store(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "empty")
    data_dir.init(seed=bytes(32))
    with Store(data_dir) as store:
        report = store.collect_garbage()
    assert (report.blocks_deleted, report.used_after) == (0, 0)


# --- beside a running fetch: two real libp2p hosts on 127.0.0.1 ----------------------


async def test_gc_during_a_fetch_never_deletes_what_the_fetch_needs(tmp_path: Path) -> None:
    from node.fetch_outcome import FetchProgress
    from protocol.cid import RAW
    from protocol.content import Block
    from tests.test_exchange import SlowServer, add_random, blocks_under, content_of, nodes

    async with nodes(tmp_path) as started:
        provider = await started.start("provider", server=SlowServer)
        fetcher = await started.start("fetcher")
        fetcher.store.guard.grace = 1.0
        root, data = await add_random(provider, tmp_path, 8 * MIB, seed=20)
        # The fetcher already holds every other leaf, unpinned (an interrupted fetch),
        # and content nothing needs: only the fetch's lease keeps the former.
        leaves = [cid for cid in await blocks_under(provider, root) if cid.codec == RAW]
        held = [Block(cid, provider.store.get_block(cid)) for cid in leaves[::2]]
        await trio.to_thread.run_sync(fetcher.store.put_blocks, held)
        garbage, _ = await add_random(fetcher, tmp_path, MIB, seed=21)
        await trio.sleep(1.2)  # older than the grace period: fair game for the collector
        fetching, fetched = trio.Event(), trio.Event()
        reports: list[tuple[bool, GcReport]] = []

        def on_progress(progress: FetchProgress) -> None:
            if progress.blocks_fetched:
                fetching.set()

        async def collect_while_fetching() -> None:
            await fetching.wait()
            while True:
                report = await trio.to_thread.run_sync(fetcher.store.collect_garbage)
                reports.append((fetched.is_set(), report))
                await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect_while_fetching)
            with trio.fail_after(60):
                result = await fetcher.network.fetch(
                    root, providers_hint=[provider.addr], pin=True, on_progress=on_progress
                )
            fetched.set()
            nursery.cancel_scope.cancel()
        during = [report for after, report in reports if not after]
        assert during, "no collection ran while the fetch did"
        assert result.blocks_present == len(held)  # none deleted under the fetch
        assert await content_of(fetcher, root) == data
        assert not fetcher.store.has_block(garbage)
        assert sum(report.blocks_deleted for report in during) > 0
        report = await trio.to_thread.run_sync(fetcher.store.fsck)
        assert report.clean


async def test_a_fetch_past_the_quota_fails_with_a_clear_error(tmp_path: Path) -> None:
    from node.fetch_outcome import FetchError
    from tests.test_exchange import add_random, nodes

    async with nodes(tmp_path) as started:
        provider = await started.start("provider")
        fetcher = await started.start("fetcher")
        kept, _ = await add_random(fetcher, tmp_path, 2 * MIB, seed=22)
        fetcher.store.pin(kept, "test")
        fetcher.store.quota = 3 * MIB
        collections: list[int] = []
        fetcher.store.on_full = lambda: collections.append(
            fetcher.store.collect_garbage().blocks_deleted
        )
        root, _ = await add_random(provider, tmp_path, 4 * MIB, seed=23)
        with trio.fail_after(60), pytest.raises(FetchError) as failure:
            await fetcher.network.fetch(root, providers_hint=[provider.addr])
        assert failure.value.reason == "storage-full"
        assert "storage quota of 3 MiB reached" in str(failure.value)
        assert collections  # it tried to make room ...
        assert collections[0] == 0  # ... but nothing was unpinned
        assert fetcher.store.blocks.used_bytes() <= 3 * MIB
        report = await trio.to_thread.run_sync(fetcher.store.fsck)
        assert report.clean


# --- a daemon in a subprocess with a small quota --------------------------------------


@pytest.mark.slow
def test_a_daemon_with_a_small_quota_collects_unpinned_content_to_fit(tmp_path: Path) -> None:
    import json

    from tests.daemon_fixtures import wait_for
    from tests.test_network_daemon import Swarm

    swarm = Swarm(tmp_path)
    try:
        provider = swarm.daemon("provider")
        works = {}
        for name, seed in (("old", 30), ("kept", 31), ("big", 32)):
            write_random_file(tmp_path / f"{name}.bin", 4 * MIB, seed=seed)
            works[name] = cast(dict[str, Any], provider.cli.json("add", tmp_path / f"{name}.bin"))
        address = provider.node_info()["listen_addrs"][0]
        cli = Cli(tmp_path / "small")
        cli.run("init")
        write_test_config(
            cli.data_dir,
            f"bootstrap = {json.dumps([address])}\n"
            '[storage]\nquota = "6MiB"\ngc_high_water = 0.9\ngc_grace = 1\n',
        )
        small = DaemonProcess(cli)
        swarm.daemons.append(small)
        small.start()

        # Unpinned content first (`get --no-pin`), then pinned content that only fits
        # once the collector has deleted the unpinned one.
        cli.run("get", works["old"]["id"], "-o", tmp_path / "old.out", "--no-pin")
        time.sleep(1.5)  # past the grace period
        kept = cast(dict[str, Any], cli.json("get", works["kept"]["id"], "-o", tmp_path / "k"))
        assert kept["fetched"]["pinned"] is True
        status = cast(dict[str, Any], cli.json("status"))
        assert status["store"]["used_bytes"] <= 6 * MIB
        assert status["services"]["storage"]["gc_runs"] >= 1
        assert status["services"]["storage"]["gc_blocks_deleted"] >= 16

        # Pinned content does not go: past the quota, a fetch fails with one clear line.
        failed = cli.fail("get", works["big"]["id"], "-o", tmp_path / "big.out")
        assert "storage quota of 6 MiB reached" in failed.stderr, failed.stderr
        assert not (tmp_path / "big.out").exists()
        assert cast(dict[str, Any], cli.json("fsck"))["clean"] is True
        assert cli.run("cat", works["kept"]["id"]).stdout == (tmp_path / "kept.bin").read_bytes()
        assert wait_for(lambda: small.stop() == 0, 30)
        # Offline (no daemon to fetch from peers): the unpinned work is gone, the pinned one is not.
        gone = cli.fail("cat", works["old"]["id"])
        assert "not in the local store" in gone.stderr
        assert cast(dict[str, Any], cli.json("fsck"))["clean"] is True
    finally:
        swarm.close()


# --- the CLI: offline, and through the daemon with the same output ----------------------


def pin_and_collect(cli: Cli, tmp_path: Path) -> None:
    """``pin ls|rm|add`` and ``gc`` as a user runs them; the same whichever backend."""
    write_random_file(tmp_path / "kept.bin", 2 * MIB, seed=40)
    write_random_file(tmp_path / "dropped.bin", 3 * MIB, seed=41)
    kept = cast(dict[str, Any], cli.json("add", tmp_path / "kept.bin"))
    dropped = cast(dict[str, Any], cli.json("add", tmp_path / "dropped.bin"))
    pins = cast(dict[str, Any], cli.json("pin", "ls"))["pins"]
    assert [pin["cid"] for pin in pins] == [kept["content"], dropped["content"]]
    assert {pin["reason"] for pin in pins} == {"own contribution"}

    removed = cast(dict[str, Any], cli.json("pin", "rm", dropped["id"]))
    assert removed == {"cid": dropped["content"], "record": dropped["id"], "changed": True}
    assert "unknown pin" in cli.fail("pin", "rm", dropped["id"]).stderr
    assert "not a valid id" in cli.fail("pin", "add", "not-a-cid").stderr

    # (a fresh process: nothing it stored is within the grace period)
    report = cast(dict[str, Any], cli.json("gc"))
    assert report["blocks_deleted"] == 13  # 12 leaves and the root node of 3 MiB
    assert report["bytes_reclaimed"] >= 3 * MIB
    assert report["pinned_roots"] == 1
    assert "deleted 0 of" in cli.run("gc").text
    assert cli.run("cat", kept["id"]).stdout == (tmp_path / "kept.bin").read_bytes()
    assert cast(dict[str, Any], cli.json("fsck"))["clean"] is True

    refused = cli.fail("pin", "add", dropped["id"])
    assert "not held fully here" in refused.stderr or "not in the local store" in refused.stderr
    added = cast(dict[str, Any], cli.json("pin", "add", kept["content"], "--reason", "mine"))
    assert added == {"cid": kept["content"], "record": None, "changed": False}
    assert "already pinned" in cli.run("pin", "add", kept["id"]).text


def test_pin_and_gc_commands_offline(initialised_cli: Cli, tmp_path: Path) -> None:
    pin_and_collect(initialised_cli, tmp_path)


@pytest.mark.slow
def test_pin_and_gc_commands_through_the_daemon(
    daemon_process: DaemonProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    # No grace period: the daemon stores what this test adds a moment before collecting.
    write_test_config(daemon_process.cli.data_dir, "[storage]\ngc_grace = 0\n")
    daemon_process.start()
    online = OnlineCli(daemon_process.cli.data_dir)
    pin_and_collect(online, tmp_path)
    # A collection needs the store to itself: not while the daemon has it open.
    offline = daemon_process.cli
    busy = offline.fail("--offline", "gc")
    assert "another process has the store open" in busy.stderr
