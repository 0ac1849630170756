#!/usr/bin/env python3
"""Seed soak benchmark (issue 6): a seed daemon serving 10 fetchers for minutes, then GC.

A real ``remixnet daemon --seed`` process holds ``--files`` different files;
``--fetchers`` child processes (10) each fetch their own file from it again
and again until the time is up — every round a new store and a new libp2p
host with the same identity, so the seed sees connections come and go as on
a public network, and every block is verified. Printed, measured in this run:

* the seed's RSS (VmRSS) at the start of the soak (after a warm-up of a fifth
  of the run, at most a minute: caches and pools filled) and at its end;
  target: grows <= 10 %;
* errors: failed or short fetches, and whether the seed is still alive;
  target: none;
* throughput of the last quarter of the soak against the first (MB/s served),
  for information: a seed that slows down over time leaks something;
* GC of 10,000 unpinned blocks, timed by ``measure_gc`` of
  ``scripts/bench_gc.py``; target <= 5 s.

Only 127.0.0.1 is used. Progress goes to stderr, the table to stdout.

Usage: .venv/bin/python scripts/bench_seed.py [--minutes 5] [--quick] [--fetchers 10]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import IO, Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

MIB = 1 << 20
LISTEN = ("/ip4/127.0.0.1/tcp/0",)
READY_SECONDS = 60.0
GC_BLOCKS = 10_000


# --- a fetcher (child process) -----------------------------------------------------


def describe(error: BaseException) -> str:
    """``Type: message`` of an error, of each error inside a group (what a nursery raises)."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


async def child_fetch(
    work: Path, seed: bytes, address: str, root_text: str, size: int, seconds: float
) -> None:
    """Fetch ``root`` from ``address`` into a new store, again and again.

    Writes ``work/started`` after the first round; stops when ``work/../stop``
    appears, after ``seconds`` at most.
    """
    import trio

    from node.datadir import DataDir
    from node.network import Network, NetworkConfig
    from node.store import Store
    from protocol.cid import Cid

    root = Cid.parse(root_text)
    deadline = time.monotonic() + seconds
    rounds: list[tuple[float, int]] = []  # (when it ended, bytes fetched)
    errors: list[str] = []
    number = 0
    stop = work.parent / "stop"
    while time.monotonic() < deadline and len(errors) < 100 and not stop.exists():
        directory = DataDir(work / f"round-{number}")
        directory.init(seed=seed)
        try:
            with Store(directory) as store:
                network = Network(store, seed, NetworkConfig(listen_addrs=LISTEN))
                async with trio.open_nursery() as nursery:
                    await nursery.start(network.run)
                    with trio.fail_after(120):
                        await network.connect(address)
                        result = await network.fetch(root)
                    nursery.cancel_scope.cancel()
            if result.total_bytes != size:
                errors.append(f"short fetch: {result.total_bytes} of {size} bytes")
            rounds.append((time.time(), result.bytes_fetched))
        except Exception as error:  # every failure is a figure of the benchmark
            errors.append(describe(error))
            traceback.print_exc(file=sys.stderr)
        finally:
            shutil.rmtree(directory.root, ignore_errors=True)
        if number == 0:
            (work / "started").touch()
        number += 1
    print(json.dumps({"event": "stats", "rounds": rounds, "errors": errors}), flush=True)


def run_child(arguments: argparse.Namespace) -> None:
    import logging

    import trio

    logging.disable(logging.CRITICAL)  # py-libp2p logs tracebacks of expected disconnects
    trio.run(
        child_fetch,
        Path(arguments.work),
        bytes.fromhex(arguments.identity),
        arguments.address,
        arguments.root,
        arguments.size,
        arguments.seconds,
    )


# --- the parent ----------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def prepare_seed(directory: Path, files: int, size: int) -> list[tuple[str, int]]:
    """A seed data directory holding ``files`` random files; their (root, size)."""
    from node.datadir import DataDir
    from node.store import Store
    from node.transfer import add_file

    data_dir = DataDir(directory)
    data_dir.init()
    (directory / "config.toml").write_text(
        '[seed]\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n[log]\nlevel = "warning"\n'
    )
    roots = []
    with Store(data_dir) as store:
        for number in range(files):
            source = directory.parent / f"file-{number}.bin"
            source.write_bytes(os.urandom(size))
            roots.append((str(add_file(store, source).root), size))
            source.unlink()
    return roots


def start_seed(directory: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    read_end, write_end = os.pipe()
    out = (directory.parent / "seed.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node",
            "--data-dir",
            str(directory),
            "daemon",
            "--seed",
            "--ready-fd",
            str(write_end),
        ],
        stdout=out,
        stderr=out,
        pass_fds=(write_end,),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out.close()
    os.close(write_end)
    try:
        readable, _, _ = select.select([read_end], [], [], READY_SECONDS)
        if not readable or os.read(read_end, 16) != b"ready\n":
            process.kill()
            raise SystemExit(f"the seed did not start (see {directory.parent / 'seed.log'})")
    finally:
        os.close(read_end)
    info: dict[str, Any] = json.loads((directory / "node.json").read_text())
    return process, info


def spawn_fetcher(
    work: Path, address: str, root: str, size: int, seconds: float
) -> subprocess.Popen[str]:
    work.mkdir(parents=True)
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "--work",
            str(work),
            "--identity",
            os.urandom(32).hex(),
            "--address",
            address,
            "--root",
            root,
            "--size",
            str(size),
            "--seconds",
            str(seconds),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )


def read_stats(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    stdout: IO[str] | None = process.stdout
    assert stdout is not None
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return {"rounds": [], "errors": ["fetcher did not finish"]}
    for line in output.splitlines():
        message: dict[str, Any] = json.loads(line)
        if message.get("event") == "stats":
            return message
    return {"rounds": [], "errors": [f"fetcher exited with {process.returncode} and no stats"]}


def throughput(rounds: list[tuple[float, int]], start: float, end: float) -> float:
    """MB/s of the rounds that ended in [start, end)."""
    moved = sum(size for when, size in rounds if start <= when < end)
    return moved / 1e6 / max(end - start, 1e-9)


def soak(arguments: argparse.Namespace, work: Path) -> dict[str, Any]:
    seconds = 30.0 if arguments.quick else arguments.minutes * 60.0
    size = (4 if arguments.quick else arguments.file_mib) * MIB
    log(f"seed: adding {arguments.fetchers} files of {size // MIB} MiB")
    roots = prepare_seed(work / "seed", arguments.fetchers, size)
    process, info = start_seed(work / "seed")
    pid = process.pid
    address = info["listen_addrs"][0]
    rss_ready = rss_bytes(pid)
    log(f"seed pid {pid} at {address}; RSS at ready {rss_ready / 1e6:.1f} MB")
    try:
        fetchers = [
            spawn_fetcher(work / f"fetcher-{number}", address, root, root_size, seconds + 900)
            for number, (root, root_size) in enumerate(roots)
        ]
        started = [work / f"fetcher-{number}" / "started" for number in range(len(roots))]
        waited = time.monotonic()
        while not all(path.exists() for path in started) and time.monotonic() - waited < 600:
            time.sleep(0.5)  # ten Python processes take a while to import on a busy machine
        log(f"fetchers running after {time.monotonic() - waited:.0f} s; the soak begins")
        began = time.time()
        warm_up = min(seconds / 5, 60.0)
        samples: list[tuple[float, int]] = []
        rss_start = None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(min(5.0, max(deadline - time.monotonic(), 0.1)))
            elapsed = time.time() - began
            samples.append((elapsed, rss_bytes(pid)))
            if rss_start is None and elapsed >= warm_up:
                rss_start = samples[-1][1]
            log(f"  {elapsed:6.0f} s  seed RSS {samples[-1][1] / 1e6:7.1f} MB")
        ended = time.time()
        (work / "stop").touch()
        results = [read_stats(fetcher, 300) for fetcher in fetchers]
        alive = process.poll() is None
        rss_end = rss_bytes(pid) if alive else 0
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
    rounds = [(float(when), int(size)) for result in results for when, size in result["rounds"]]
    rounds = [(when, size) for when, size in rounds if began <= when <= ended]
    errors = [error for result in results for error in result["errors"]]
    if not alive:
        errors.append("the seed died")
    for error in errors[:10]:
        log(f"  error: {error}")
    quarter = (ended - began) / 4
    return {
        "rss_ready": rss_ready,
        "rss_start": rss_start if rss_start is not None else rss_ready,
        "rss_end": rss_end,
        "rss_max": max((rss for _, rss in samples), default=rss_end),
        "errors": len(errors),
        "fetches": len(rounds),
        "mb_per_s": sum(size for _, size in rounds) / 1e6 / max(ended - began, 1e-9),
        "first_quarter": throughput(rounds, began, began + quarter),
        "last_quarter": throughput(rounds, ended - quarter, ended + 1),
        "seconds": ended - began,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="soak duration (default 5)")
    parser.add_argument("--quick", action="store_true", help="a ~30 s soak with 4 MiB files")
    parser.add_argument("--fetchers", type=int, default=10)
    parser.add_argument("--file-mib", type=int, default=16, help="size of each file (MiB)")
    parser.add_argument("--gc-blocks", type=int, default=GC_BLOCKS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--work", "--identity", "--address", "--root"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        run_child(arguments)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-seed-"))
    try:
        figures = soak(arguments, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(json.dumps(figures))

    try:
        from bench_gc import measure_gc  # scripts/bench_gc.py
    except ImportError as error:
        log(f"GC not measured: {error}")
        gc: dict[str, Any] | None = None
    else:
        log(f"GC of {arguments.gc_blocks} unpinned blocks")
        gc = measure_gc(arguments.gc_blocks)
        log(json.dumps(gc))
    print_table(arguments, figures, gc)


def print_table(
    arguments: argparse.Namespace, figures: dict[str, Any], gc: dict[str, Any] | None
) -> None:
    minutes = figures["seconds"] / 60
    rss_ratio = figures["rss_end"] / figures["rss_start"] if figures["rss_start"] else float("inf")
    print("| figure | ours | baseline | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    print(
        f"| seed RSS after a {minutes:.1f}-minute soak, {arguments.fetchers} fetchers (MB)"
        f" | {figures['rss_end'] / 1e6:.1f} | {figures['rss_start'] / 1e6:.1f} (after warm-up)"
        f" | {rss_ratio:.3f} | ratio <= 1.10 | {'yes' if rss_ratio <= 1.10 else 'no'} |"
    )
    print(
        f"| errors in {figures['fetches']} fetches | {figures['errors']} | 0 | - | 0"
        f" | {'yes' if figures['errors'] == 0 else 'no'} |"
    )
    first, last = figures["first_quarter"], figures["last_quarter"]
    print(
        f"| served MB/s, last quarter of the soak | {last:.1f} | {first:.1f} (first quarter)"
        f" | {last / first if first else float('nan'):.2f} | - (information;"
        f" {figures['mb_per_s']:.1f} MB/s overall) | - |"
    )
    if gc is None:
        print(
            f"| GC of {arguments.gc_blocks} unpinned blocks (s) | not measured:"
            " scripts/bench_gc.py missing | - | - | <= 5 s | no |"
        )
        return
    gc_seconds = float(gc["gc_seconds"])
    baseline = float(gc["write_seconds"])  # storing those same blocks
    met = gc_seconds <= 5.0 and bool(gc.get("pinned_intact", False))
    print(
        f"| GC of {arguments.gc_blocks} unpinned blocks (s) | {gc_seconds:.2f}"
        f" | {baseline:.2f} (writing them) | {gc_seconds / baseline:.2f}"
        f" | <= 5 s, pinned intact | {'yes' if met else 'no'} |"
    )


if __name__ == "__main__":
    main()
