#!/usr/bin/env python3
"""Ingest and record-verification benchmark (issue: foundation).

Prints, measured in this one run (the machines are noisy, so every figure is
a ratio against a baseline taken here and now):

* wall time of ``remixnet add`` of a 512 MiB file vs ``sha256sum`` of the same
  file (both reading from the page cache), and their ratio (target <= 2);
* peak RSS of that add and of adding a 2 GiB file (target <= 150 MB, and
  independent of the file size);
* records signed and verified per second over 20,000 records (target >= 10,000/s).

Usage: .venv/bin/python scripts/bench_ingest.py [--small-mib 512] [--large-mib 2048]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from protocol.cid import Cid  # noqa: E402
from protocol.identity import private_key_from_seed  # noqa: E402
from protocol.records import Contribution, Parent, decode_record, sign_record  # noqa: E402

MIB = 1 << 20


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as out:
        remaining = size
        while remaining:
            piece = min(remaining, 16 * MIB)
            out.write(os.urandom(piece))
            remaining -= piece


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run ``command``; return (wall seconds, peak RSS in bytes) of that process alone."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    return elapsed, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux


def bench_add(work: Path, size_mib: int, env: dict[str, str]) -> tuple[float, float, int]:
    """(sha256sum seconds, remixnet add seconds, add peak RSS) for one file size."""
    source = work / f"input-{size_mib}.bin"
    write_random(source, size_mib * MIB)
    remixnet = [sys.executable, "-m", "node"]
    data_dir = work / f"node-{size_mib}"
    env = {**env, "REMIXNET_DATA_DIR": str(data_dir)}
    subprocess.run([*remixnet, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    run_measured(["sha256sum", str(source)], env)  # warm the page cache for both
    sha_seconds = min(run_measured(["sha256sum", str(source)], env)[0] for _ in range(2))
    add_seconds, add_rss = run_measured([*remixnet, "add", str(source), "--json"], env)
    source.unlink()
    shutil.rmtree(data_dir)
    return sha_seconds, add_seconds, add_rss


def bench_records(count: int) -> tuple[float, float]:
    """(records signed per second, records decoded and verified per second)."""
    key = private_key_from_seed(bytes(range(32)))
    parent = Parent(Cid.for_raw(b"parent"), 2)
    bodies = [
        Contribution(
            title=f"Remix number {n}",
            description="A drawing made from a poem, scored by a friend.",
            content=Cid.for_raw(n.to_bytes(8, "big")),
            size=n,
            media_type="image/png",
            license="CC-BY-SA-4.0",
            tags=("ink", "winter"),
            parents=(parent,),
        )
        for n in range(count)
    ]
    started = time.perf_counter()
    encoded = [
        sign_record(b, private_key=key, created_ms=1_700_000_000_000 + n).encoded
        for n, b in enumerate(bodies)
    ]
    signed_rate = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for data in encoded:
        decode_record(data)
    verified_rate = count / (time.perf_counter() - started)
    return signed_rate, verified_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-mib", type=int, default=512)
    parser.add_argument("--large-mib", type=int, default=2048)
    parser.add_argument("--records", type=int, default=20_000)
    arguments = parser.parse_args()
    if shutil.which("sha256sum") is None:
        raise SystemExit("sha256sum (coreutils) is needed for the baseline")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="remixnet-bench-") as tmp:
        work = Path(tmp)
        print(f"adding {arguments.small_mib} MiB ...", file=sys.stderr)
        sha_s, add_s, rss_small = bench_add(work, arguments.small_mib, env)
        print(f"adding {arguments.large_mib} MiB ...", file=sys.stderr)
        _, add_large_s, rss_large = bench_add(work, arguments.large_mib, env)
    print(f"signing and verifying {arguments.records} records ...", file=sys.stderr)
    signed, verified = bench_records(arguments.records)
    rows = [
        (
            f"add {arguments.small_mib} MiB (s)",
            f"{add_s:.2f}",
            f"sha256sum {sha_s:.2f}",
            add_s / sha_s,
            "<= 2.00",
            add_s / sha_s <= 2,
        ),
        (
            f"add {arguments.small_mib} MiB MB/s",
            f"{arguments.small_mib * MIB / add_s / 1e6:.0f}",
            f"{arguments.small_mib * MIB / sha_s / 1e6:.0f}",
            sha_s / add_s,
            "",
            None,
        ),
        (
            f"peak RSS add {arguments.small_mib} MiB (MB)",
            f"{rss_small / 1e6:.0f}",
            "",
            None,
            "<= 150",
            rss_small <= 150e6,
        ),
        (
            f"peak RSS add {arguments.large_mib} MiB (MB)",
            f"{rss_large / 1e6:.0f}",
            f"{rss_small / 1e6:.0f} ({arguments.small_mib} MiB)",
            rss_large / rss_small,
            "<= 150, ~1.0x",
            rss_large <= 150e6 and rss_large / rss_small < 1.1,
        ),
        (f"add {arguments.large_mib} MiB (s)", f"{add_large_s:.2f}", "", None, "", None),
        ("records signed /s", f"{signed:,.0f}", "", None, "", None),
        ("records verified /s", f"{verified:,.0f}", "", None, ">= 10,000", verified >= 10_000),
    ]
    print("| figure | ours | baseline | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for figure, ours, baseline, ratio, target, met in rows:
        ratio_text = f"{ratio:.2f}" if ratio is not None else ""
        met_text = "" if met is None else ("yes" if met else "NO")
        print(f"| {figure} | {ours} | {baseline} | {ratio_text} | {target} | {met_text} |")


if __name__ == "__main__":
    main()
