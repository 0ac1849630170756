#!/usr/bin/env python3
"""Fetching over rate-limited links (issue 3): three providers against one when links are the limit.

On loopback every process shares the same two cores, so extra providers add
CPU rather than capacity (``scripts/bench_transfer.py`` measures that case).
Here each provider process runs in a network namespace of its own, joined to
this one by a veth link whose provider end sends at most ``--mbit`` Mbit/s
(``tc`` token bucket), as a provider behind its uplink would. Printed,
measured in this run (each the median of ``--repeat`` runs, one and three
providers interleaved; every run's figures go to stderr):

* MB/s of fetching a ``--mib`` MiB file from one provider, against the
  link's rate (for reference: how much of its link one provider fills);
* MB/s from three providers against one; target >= 1x (the issue's target,
  with the links as the limit);
* MB/s from the three and a fourth whose link is ten times slower, against
  the three alone; target >= 0.9x (a slow provider must not hold the fetch
  back: work moves away from it).

Needs root and iproute2 (``ip``, ``tc``); without them it says why in its one
row. Everything it creates is named with a prefix unique to the run and is
removed at the end, whatever happens. It uses only those namespaces.

Usage: .venv/bin/python scripts/bench_links.py [--mib 64] [--mbit 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_transfer as transfer  # its child processes and helpers

PROVIDERS = 3  # fast ones
SLOW = 10  # a fourth provider's link is this many times slower
SUBNET = "10.213"  # provider i is 10.213.i.2, this namespace's end of its link 10.213.i.1


def run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


@contextmanager
def provider_links(rates: list[float]) -> Iterator[list[str]]:
    """A namespace per rate, each linked to this one at that many Mbit/s out; their names."""
    prefix = f"rmxl{os.getpid() % 100_000}"
    namespaces: list[str] = []
    links: list[str] = []
    try:
        for index, mbit in enumerate(rates):
            namespace, here, there = f"{prefix}n{index}", f"{prefix}h{index}", f"{prefix}p{index}"
            run("ip", "netns", "add", namespace)
            namespaces.append(namespace)
            run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
            links.append(here)
            run("ip", "link", "set", there, "netns", namespace)
            run("ip", "addr", "add", f"{SUBNET}.{index}.1/30", "dev", here)
            run("ip", "link", "set", here, "up")
            inside = ("ip", "netns", "exec", namespace)
            run(*inside, "ip", "addr", "add", f"{SUBNET}.{index}.2/30", "dev", there)
            run(*inside, "ip", "link", "set", there, "up")
            run(*inside, "ip", "link", "set", "lo", "up")
            run(*inside, "tc", "qdisc", "add", "dev", there, "root", "tbf",
                "rate", f"{mbit}mbit", "burst", "256kb", "latency", "200ms")  # fmt: skip
        yield namespaces
    finally:
        for link in links:  # deleting one end of a veth pair deletes both
            subprocess.run(
                ["ip", "link", "del", link], capture_output=True, timeout=30, check=False
            )
        for namespace in namespaces:
            subprocess.run(
                ["ip", "netns", "del", namespace], capture_output=True, timeout=30, check=False
            )


def serve(data_dir: Path, listen: str, namespace: str) -> transfer.Child:
    """A provider process (``bench_transfer``'s) serving ``data_dir`` inside ``namespace``."""
    arguments = ("--child", "serve", "--data-dir", str(data_dir), "--listen", listen)
    return transfer.Child(*arguments, namespace=namespace)


def why_not() -> str | None:
    """Why this machine cannot run the benchmark, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"needs iproute2 ({', '.join(missing)} not found)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--mbit", type=int, default=200, help="each provider's link, Mbit/s")
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    if arguments.mib < 1 or arguments.mbit < 1 or arguments.repeat < 1:
        parser.error("--mib, --mbit and --repeat must be at least 1")

    reason = why_not()
    if reason is not None:
        print(f"bench_links: skipped: {reason}", file=sys.stderr)
        print(transfer.TABLE_HEADER)
        print(f"| fetch over rate-limited links | - | - | - | skipped: {reason} | - |")
        return

    mib, mbit = arguments.mib, arguments.mbit
    rates = [mbit] * PROVIDERS + [mbit / SLOW]  # the last provider is the slow one
    with tempfile.TemporaryDirectory(prefix="remixnet-links-") as tmp:
        work = Path(tmp)
        log = sys.stderr
        print(f"preparing {len(rates)} providers of {mib} MiB", file=log)
        transfer.write_random(work / "file.bin", mib * transfer.MIB)
        root = transfer.prepare_provider(work / "p0", work / "file.bin")
        for index in range(1, len(rates)):
            transfer.copy_provider(work / "p0", work / f"p{index}")
        os.sync()
        with provider_links(rates) as namespaces:
            servers = [
                serve(work / f"p{index}", f"/ip4/{SUBNET}.{index}.2/tcp/0", namespace)
                for index, namespace in enumerate(namespaces)
            ]
            try:
                addrs = [server.read("listening")["addr"] for server in servers]
                print(f"providers at {rates} Mbit/s: 1, {PROVIDERS}, {PROVIDERS} + slow", file=log)
                transfer.fetch_once(work, addrs[:1], root, "warm-up", servers[:1])
                runs: dict[str, list[dict[str, Any]]] = {"1": [], "fast": [], "fast+slow": []}
                for n in range(arguments.repeat):
                    for name, count in (("1", 1), ("fast", PROVIDERS), ("fast+slow", len(rates))):
                        runs[name].append(
                            transfer.fetch_once(
                                work, addrs[:count], root, f"{name}-{n}", servers[:count]
                            )
                        )
            finally:
                for server in servers:
                    server.finish()

    for name, results in runs.items():
        print(f"{name}: MB/s {transfer.rates(results)}", file=log)
        transfer.print_spread(name, results)
    one, fast, mixed = (statistics.median(transfer.rates(runs[name])) for name in runs)
    link_rate = mbit / 8  # MB/s
    rows: list[transfer.Row] = [
        (f"fetch {mib} MiB over a {mbit} Mbit/s link, 1 provider (MB/s)", one, link_rate,
         "the link", None, ">="),
        (f"fetch {mib} MiB, {PROVIDERS} providers vs 1, {mbit} Mbit/s links (MB/s)", fast, one,
         "1 provider", 1.0, ">="),
        (f"fetch {mib} MiB, {PROVIDERS} + one at 1/{SLOW} the rate vs {PROVIDERS} (MB/s)", mixed,
         fast, f"{PROVIDERS} providers", 0.9, ">="),
    ]  # fmt: skip
    transfer.print_table(rows)


if __name__ == "__main__":
    main()
