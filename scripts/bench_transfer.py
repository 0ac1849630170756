#!/usr/bin/env python3
"""Block exchange benchmark (issue 3): fetching between separate processes on loopback.

Prints, measured in this one run (each throughput is the median of
``--repeat`` runs, ours and its baseline interleaved so that both see the
same machine, and each ratio taken between runs that were interleaved; every
run's figure goes to stderr):

* MB/s of fetching a 256 MiB file from one provider process (every block
  verified and durably stored) vs a raw py-libp2p Noise+Yamux stream carrying
  the same number of bytes between two processes (the transport ceiling, with
  the same workarounds of node.transport_edges); target >= 70 % of raw;
* the ceiling of that ratio on this machine: the raw stream keeps both cores
  busy, so a fetch that did nothing but the transport plus the work DESIGN.md
  requires (SHA-256 of every block on both sides, fsynced writes, reads; measured
  here in the parent) with perfect overlap would reach
  raw MB/s x raw CPU / (raw CPU + required CPU); printed with our fetch
  against it;
* MB/s from three provider processes vs from one; target >= 1x;
* peak RSS of the fetching and of the serving process while moving 1 GiB;
  target <= 200 MB each;
* time from spawning a provider process to its node listening; target <= 2 s.

Every process is a child running this script with ``--child ROLE``; they talk
to the parent with one JSON object per line on stdout and stop when their
stdin closes. Only 127.0.0.1 is used.

Usage: .venv/bin/python scripts/bench_transfer.py [--mib 256] [--large-mib 1024] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MIB = 1 << 20
LISTEN = ("/ip4/127.0.0.1/tcp/0",)
RAW_PROTOCOL = "/remixnet-bench/raw/1.0.0"
RAW_WRITE = 256 * 1024
TABLE_HEADER = "| figure | ours | baseline | ratio | target | met |\n|---|---|---|---|---|---|"
# (figure, ours, baseline, what the baseline is, target ratio or None for a reference row,
# ">=" or "<=": whether ours must be above or below the target)
Row = tuple[str, float, float, str, float | None, str]


# --- children ------------------------------------------------------------------


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


async def wait_for_stdin_eof() -> None:
    import trio

    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while await stdin.receive_some():
            pass


async def child_serve(data_dir: Path, listen: tuple[str, ...] = LISTEN) -> None:
    """A provider: serve the store of ``data_dir`` until stdin closes."""
    import trio

    from node.datadir import DataDir
    from node.network import Network, NetworkConfig
    from node.store import Store

    directory = DataDir(data_dir)
    with Store(directory) as store:
        network = Network(store, directory.load_identity().seed, NetworkConfig(listen_addrs=listen))
        async with trio.open_nursery() as nursery:
            await nursery.start(network.run)
            emit(event="listening", addr=network.listen_addrs()[0])
            await wait_for_stdin_eof()
            emit(event="stats", rss=peak_rss(), serve=network.server.statistics())
            nursery.cancel_scope.cancel()


async def child_fetch(data_dir: Path, providers: list[str], root_text: str) -> None:
    """Fetch ``root`` from ``providers`` into a new store at ``data_dir``; report and exit."""
    import trio

    from node.datadir import DataDir
    from node.network import Network, NetworkConfig
    from node.store import Store
    from protocol.cid import Cid

    directory = DataDir(data_dir)
    directory.init()
    with Store(directory) as store:
        network = Network(store, directory.load_identity().seed, NetworkConfig(listen_addrs=LISTEN))
        async with trio.open_nursery() as nursery:
            await nursery.start(network.run)
            for address in providers:
                await network.connect(address)
            started, cpu_started = time.perf_counter(), time.process_time()
            result = await network.fetch(Cid.parse(root_text))
            seconds = time.perf_counter() - started
            emit(
                event="fetched",
                seconds=seconds,
                cpu=time.process_time() - cpu_started,
                bytes=result.bytes_fetched,
                rss=peak_rss(),
                bytes_by_peer=result.bytes_by_peer,
                duplicates=result.duplicate_blocks,
            )
            nursery.cancel_scope.cancel()


async def child_raw_serve(seed: bytes) -> None:
    """Baseline server: on each stream, read an 8-byte size and write that many bytes."""
    import trio

    from node.host import Host, HostConfig, Stream

    payload = random.Random(1).randbytes(RAW_WRITE)

    async def handler(stream: Stream, peer_id: str) -> None:
        request = b""
        while len(request) < 8:
            request += await stream.read(8 - len(request))
        remaining = int.from_bytes(request, "big")
        while remaining:
            piece = payload[: min(remaining, RAW_WRITE)]
            await stream.write(piece)
            remaining -= len(piece)
        await stream.close()

    host = Host(seed, HostConfig(listen_addrs=LISTEN))
    host.set_stream_handler(RAW_PROTOCOL, handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        emit(event="listening", addr=host.listen_addrs()[0])
        await wait_for_stdin_eof()
        emit(event="stats", rss=peak_rss())
        nursery.cancel_scope.cancel()


async def child_raw_fetch(seed: bytes, address: str, size: int) -> None:
    """Baseline client: ask for ``size`` bytes on one stream and read them all."""
    import trio

    from node.host import Host, HostConfig

    host = Host(seed, HostConfig(listen_addrs=LISTEN))
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        peer_id = await host.connect(address)
        started, cpu_started = time.perf_counter(), time.process_time()
        stream = await host.open_stream(peer_id, RAW_PROTOCOL)
        await stream.write(size.to_bytes(8, "big"))
        received = 0
        while received < size:
            data = await stream.read(1 << 20)
            if not data:
                break
            received += len(data)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        emit(event="fetched", seconds=seconds, cpu=cpu, bytes=received, rss=peak_rss())
        nursery.cancel_scope.cancel()


def run_child(arguments: argparse.Namespace) -> None:
    import logging

    import trio

    logging.disable(logging.CRITICAL)  # py-libp2p logs tracebacks of expected disconnects

    role = arguments.child
    if role == "serve":
        trio.run(child_serve, Path(arguments.data_dir), (arguments.listen,))
    elif role == "fetch":
        trio.run(child_fetch, Path(arguments.data_dir), arguments.providers, arguments.root)
    elif role == "raw-serve":
        trio.run(child_raw_serve, os.urandom(32))
    elif role == "raw-fetch":
        trio.run(child_raw_fetch, os.urandom(32), arguments.providers[0], arguments.size)
    else:
        raise SystemExit(f"unknown role {role}")


# --- the parent ------------------------------------------------------------------


class Child:
    """A child process of this script and its JSON lines."""

    def __init__(self, *args: str, namespace: str | None = None) -> None:
        """Run this script with ``args`` (in network namespace ``namespace``, if given)."""
        self.spawned = time.perf_counter()
        inside = ["ip", "netns", "exec", namespace] if namespace else []
        self.process = subprocess.Popen(
            [*inside, sys.executable, str(Path(__file__).resolve()), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            text=True,
        )

    def read(self, event: str) -> dict[str, Any]:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        for line in stdout:
            message: dict[str, Any] = json.loads(line)
            if message.get("event") == event:
                return message
        raise SystemExit(f"child {self.process.args!r} ended without {event!r}")

    def stop(self) -> dict[str, Any]:
        """Close stdin (the child's signal to stop) and return its final ``stats``."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        stats = self.read("stats")
        self.process.wait(timeout=30)
        return stats

    def finish(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def prepare_provider(directory: Path, source: Path) -> str:
    """Initialise a data directory, add ``source`` to it, return the root CID."""
    from node.datadir import DataDir
    from node.store import Store
    from node.transfer import add_file

    data_dir = DataDir(directory)
    data_dir.init()
    with Store(data_dir) as store:
        return str(add_file(store, source).root)


def copy_provider(original: Path, directory: Path) -> None:
    """Same blocks, a new identity (every provider needs its own peer id)."""
    from node.datadir import DataDir

    shutil.copytree(original, directory, ignore=shutil.ignore_patterns("identity.key"))
    DataDir(directory).init()


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as out:
        for _ in range(size // (16 * MIB)):
            out.write(os.urandom(16 * MIB))
        out.write(os.urandom(size % (16 * MIB)))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a running process."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def run_client(servers: Sequence[Child], *args: str) -> dict[str, Any]:
    """A client child's ``fetched`` report, with the CPU seconds ``servers`` used meanwhile."""

    def served() -> float:
        return sum(cpu_seconds(server.process.pid) for server in servers)

    served_before = served()
    client = Child(*args)
    result = client.read("fetched")
    result["server_cpu"] = served() - served_before
    client.finish()
    return result


def fetch_once(
    work: Path, providers: list[str], root: str, run: str, servers: Sequence[Child] = ()
) -> dict[str, Any]:
    result = run_client(
        servers, "--child", "fetch", "--data-dir", str(work / f"fetch-{run}"), "--root", root,
        "--providers", *providers,
    )  # fmt: skip
    shutil.rmtree(work / f"fetch-{run}")
    # Commit the deletion now: on this filesystem (mounted with discard) the
    # next fsync would otherwise carry it, and the next run (or the required
    # work measurement) would pay up to 0.3 CPU s for the previous one.
    os.sync()
    return result


def raw_once(address: str, size: int, server: Child) -> dict[str, Any]:
    """One raw-stream run, with the CPU seconds of both processes."""
    return run_client([server], "--child", "raw-fetch", "--providers", address, "--size", str(size))


def required_work_cpu(work: Path, size: int) -> dict[str, float]:
    """CPU seconds of the work DESIGN.md requires of any fetch of ``size`` bytes.

    SHA-256 of every 256 KiB block (done once by the server before serving and
    once by the fetcher before storing), appending the blocks to a file with an
    fsync per 16 MiB (what the store does) and reading them back a block at a
    time (what the server does; from the page cache, as in the runs). Measured
    in this process, which does nothing else meanwhile.
    """
    block = random.Random(2).randbytes(256 * 1024)
    count = size // len(block)
    started = time.process_time()
    for _ in range(count):
        hashlib.sha256(block).digest()
    hashing = time.process_time() - started
    path = work / "required-work.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    started = time.process_time()
    for n in range(1, count + 1):
        os.write(fd, block)
        if n % 64 == 0 or n == count:
            os.fsync(fd)
    storing = time.process_time() - started
    os.close(fd)
    fd = os.open(path, os.O_RDONLY)
    started = time.process_time()
    for n in range(count):
        os.pread(fd, len(block), n * len(block))
    reading = time.process_time() - started
    os.close(fd)
    path.unlink()
    return {"hash": hashing, "store": storing, "read": reading}


def rates(results: list[dict[str, Any]]) -> list[float]:
    return [round(float(result["bytes"]) / float(result["seconds"]) / 1e6, 1) for result in results]


def median_rate(results: list[dict[str, Any]]) -> float:
    return statistics.median(rates(results))


def print_table(rows: list[Row]) -> None:
    print(TABLE_HEADER)
    for figure, ours, baseline, baseline_name, target, sense in rows:
        ratio = ours / baseline
        if target is None:
            target_text = met_text = "(reference)"
        else:
            met = ratio >= target if sense == ">=" else ratio <= target
            target_text, met_text = f"ratio {sense} {target:.2f}", "yes" if met else "no"
        print(
            f"| {figure} | {ours:.2f} | {baseline:.1f} ({baseline_name}) | {ratio:.2f} | "
            f"{target_text} | {met_text} |"
        )


def print_spread(name: str, results: list[dict[str, Any]]) -> None:
    """How a multi-provider fetch's bytes were spread, and the blocks fetched twice (stderr)."""
    spread = [sorted(result["bytes_by_peer"].values()) for result in results]
    print(f"{name}: bytes per provider {spread}", file=sys.stderr)
    print(f"{name}: duplicate blocks {[r['duplicates'] for r in results]}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--providers", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--listen", default=LISTEN[0], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        run_child(arguments)
        return

    size = arguments.mib * MIB
    repeat = arguments.repeat
    with tempfile.TemporaryDirectory(prefix="remixnet-bench-") as tmp:
        work = Path(tmp)
        log = sys.stderr
        print(f"preparing providers of {arguments.mib} MiB and {arguments.large_mib} MiB", file=log)
        write_random(work / "small.bin", size)
        root = prepare_provider(work / "p1", work / "small.bin")
        copy_provider(work / "p1", work / "p2")
        copy_provider(work / "p1", work / "p3")
        write_random(work / "large.bin", arguments.large_mib * MIB)
        large_root = prepare_provider(work / "big", work / "large.bin")
        # Write the prepared stores out now: the kernel would otherwise flush
        # those 2.6 GiB during the first runs, slowing every fsync of the
        # fetches (and not the raw stream, which writes nothing). The source
        # files are kept until the end for the same reason: deleting 1.3 GiB
        # (on a filesystem mounted with discard) slowed the next runs.
        os.sync()

        print("raw Noise+Yamux stream (baseline) and one provider, interleaved", file=log)
        raw = Child("--child", "raw-serve")
        raw_addr = raw.read("listening")["addr"]
        one = Child("--child", "serve", "--data-dir", str(work / "p1"))
        one_addr = one.read("listening")["addr"]
        start_seconds = time.perf_counter() - one.spawned
        raw_results, one_results, three_results, one_beside_three = [], [], [], []
        # One of each first, not counted: right after preparing the stores the
        # first fetches ran up to 1.8x slower (the machine still settling).
        raw_once(raw_addr, size, raw)
        fetch_once(work, [one_addr], root, "warm-up", [one])
        required = []
        for n in range(repeat):
            raw_results.append(raw_once(raw_addr, size, raw))
            one_results.append(fetch_once(work, [one_addr], root, f"1-{n}", [one]))
            required.append(required_work_cpu(work, size))
        raw.stop()

        print("three providers and one, interleaved", file=log)
        others = [Child("--child", "serve", "--data-dir", str(work / p)) for p in ("p2", "p3")]
        addrs = [one_addr] + [child.read("listening")["addr"] for child in others]
        for n in range(repeat):
            three_results.append(fetch_once(work, addrs, root, f"3-{n}", [one, *others]))
            one_beside_three.append(fetch_once(work, [one_addr], root, f"1b-{n}", [one]))
        for child in [one, *others]:
            child.stop()

        print(f"fetch {arguments.large_mib} MiB (peak memory)", file=log)
        big = Child("--child", "serve", "--data-dir", str(work / "big"))
        big_addr = big.read("listening")["addr"]
        large = fetch_once(work, [big_addr], large_root, "large")
        serve_rss = big.stop()["rss"]

    # Each ratio compares runs that were interleaved with each other.
    phases = (
        ("raw", raw_results),
        ("1 provider (beside raw)", one_results),
        ("3 providers", three_results),
        ("1 provider (beside 3)", one_beside_three),
    )
    for name, results in phases:
        print(f"{name} MB/s: {rates(results)}", file=log)
    for name, results in phases:
        print(f"{name}: fetcher CPU s: {[round(r['cpu'], 2) for r in results]}", file=log)
        print(f"{name}: servers' CPU s: {[round(r['server_cpu'], 2) for r in results]}", file=log)
    print(
        "required work CPU s (hash is paid twice): "
        + str([{name: round(seconds, 3) for name, seconds in r.items()} for r in required]),
        file=log,
    )
    print_spread("3-provider", three_results)
    raw_rate, one_rate, three_rate, one_beside_rate = map(
        median_rate, (raw_results, one_results, three_results, one_beside_three)
    )
    # The best any fetch could do here: the raw stream keeps both cores busy
    # (its CPU seconds over its wall seconds are printed), so a fetch that
    # adds only the required work, perfectly overlapped, and nothing else
    # would run at raw MB/s x raw CPU / (raw CPU + required CPU).
    raw_cpu = statistics.median(r["cpu"] + r["server_cpu"] for r in raw_results)
    raw_cores = statistics.median((r["cpu"] + r["server_cpu"]) / r["seconds"] for r in raw_results)
    required_cpu = statistics.median(2 * r["hash"] + r["store"] + r["read"] for r in required)
    ceiling_rate = raw_rate * raw_cpu / (raw_cpu + required_cpu)
    print(
        f"raw stream: {raw_cpu:.2f} CPU s per run on {raw_cores:.2f} cores; required work "
        f"(SHA-256 on both sides, fsynced writes, reads): {required_cpu:.2f} CPU s",
        file=log,
    )
    mib, large_mib = arguments.mib, arguments.large_mib
    rows: list[Row] = [
        (f"fetch {mib} MiB, 1 provider (MB/s)", one_rate, raw_rate, "raw stream", 0.70, ">="),
        ("ceiling: raw + required work only (MB/s)", ceiling_rate, raw_rate, "raw stream",
         None, ">="),
        (f"fetch {mib} MiB, 1 provider vs ceiling (MB/s)", one_rate, ceiling_rate, "ceiling",
         None, ">="),
        (f"fetch {mib} MiB, 3 providers vs 1 (MB/s)", three_rate, one_beside_rate, "1 provider",
         1.0, ">="),
        (f"peak RSS fetching {large_mib} MiB (MB)", large["rss"] / 1e6, 200.0, "limit", 1.0, "<="),
        (f"peak RSS serving {large_mib} MiB (MB)", serve_rss / 1e6, 200.0, "limit", 1.0, "<="),
        ("spawn to listening (s)", start_seconds, 2.0, "limit", 1.0, "<="),
    ]  # fmt: skip
    print_table(rows)


if __name__ == "__main__":
    main()
