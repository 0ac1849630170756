#!/usr/bin/env python3
"""Garbage collection benchmark (issue 6): collecting 10,000 unpinned blocks.

A fresh store (real SQLite and pack files in a temporary directory) holds a
pinned 64 MiB file and, in the same packs, ``--blocks`` unpinned raw blocks
of ``--block-kib`` KiB each. The figure is one ``Store.collect_garbage``:
marking what the pin reaches, deleting the index rows of the rest and
rewriting the packs, fsync included. Target: <= 5 s for 10,000 blocks.

Baselines, measured in the same run on the same store (the machines are
noisy): writing those unpinned blocks (``Store.writer``, fsync included),
and ``fsck`` of the store before the collection (reading and hashing every
block once).

``measure_gc(blocks)`` returns the figures as a dict (scripts/bench_seed.py
imports it). Usage: .venv/bin/python scripts/bench_gc.py [--blocks 10000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from node.datadir import DataDir  # noqa: E402
from node.store import Store  # noqa: E402
from node.transfer import add_file, iter_content  # noqa: E402
from protocol.cid import Cid  # noqa: E402
from protocol.content import Block  # noqa: E402

TARGET_SECONDS = 5.0
PINNED_BYTES = 64 << 20


def measure_gc(blocks: int, *, block_kib: int = 16, seed: int = 6) -> dict[str, float | int | bool]:
    """Collect ``blocks`` unpinned blocks beside a pinned file; the figures of one run.

    Keys: blocks, block_bytes, gc_seconds, write_seconds (baseline: storing
    those blocks), fsck_seconds (baseline: checking the store), blocks_deleted,
    bytes_reclaimed, pinned_intact, target_seconds, met.
    """
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-gc-") as temporary:
        root = Path(temporary)
        data_dir = DataDir(root / "node")
        data_dir.init(seed=bytes(32))
        source = root / "pinned.bin"
        pinned_data = rng.randbytes(PINNED_BYTES)
        source.write_bytes(pinned_data)
        with Store(data_dir) as store:
            store.guard.grace = 0  # nothing is being added during the collection
            pinned = add_file(store, source).root
            store.pin(pinned, "benchmark")
            garbage = [rng.randbytes(block_kib << 10) for _ in range(blocks)]
            started = time.perf_counter()
            with store.writer() as writer:
                for data in garbage:
                    writer.put(Block(Cid.for_raw(data), data))
            write_seconds = time.perf_counter() - started
            del garbage
            started = time.perf_counter()
            checked = store.fsck()
            fsck_seconds = time.perf_counter() - started
            assert checked.clean
            started = time.perf_counter()
            report = store.collect_garbage()
            gc_seconds = time.perf_counter() - started
            intact = b"".join(iter_content(store, pinned)) == pinned_data and store.fsck().clean
    return {
        "blocks": blocks,
        "block_bytes": block_kib << 10,
        "gc_seconds": gc_seconds,
        "write_seconds": write_seconds,
        "fsck_seconds": fsck_seconds,
        "blocks_deleted": report.blocks_deleted,
        "bytes_reclaimed": report.bytes_reclaimed,
        "pinned_intact": intact,
        "target_seconds": TARGET_SECONDS * blocks / 10_000,
        "met": intact
        and report.blocks_deleted == blocks
        and gc_seconds <= TARGET_SECONDS * blocks / 10_000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10_000, help="unpinned blocks to collect")
    parser.add_argument("--block-kib", type=int, default=16, help="size of each, in KiB")
    arguments = parser.parse_args()
    if arguments.blocks < 1 or not 1 <= arguments.block_kib <= 1024:
        parser.error("--blocks must be at least 1 and --block-kib from 1 to 1024")
    figures = measure_gc(arguments.blocks, block_kib=arguments.block_kib)
    gc_seconds = float(figures["gc_seconds"])
    target = float(figures["target_seconds"])
    print(
        f"{figures['blocks']} unpinned blocks of {arguments.block_kib} KiB beside a pinned"
        f" {PINNED_BYTES >> 20} MiB file; deleted {figures['blocks_deleted']},"
        f" reclaimed {int(figures['bytes_reclaimed']) >> 20} MiB,"
        f" pinned content intact: {figures['pinned_intact']}\n"
    )
    print("| figure | ours | baseline | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    met = "yes" if figures["met"] else "no"
    for name, baseline in (
        ("writing the blocks", float(figures["write_seconds"])),
        ("fsck of the store", float(figures["fsck_seconds"])),
    ):
        print(
            f"| gc of {figures['blocks']} unpinned blocks (vs {name}) | {gc_seconds:.2f} s"
            f" | {baseline:.2f} s | {gc_seconds / baseline:.2f} | <= {target:g} s | {met} |"
        )


if __name__ == "__main__":
    main()
