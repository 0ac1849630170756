#!/usr/bin/env python3
"""Catch-up sync benchmark (issue 4 item 4): reconciliation cost against the difference.

Two in-memory ``SyncSession``s reconcile sets of ``--items`` records (default
100 000 a side) that differ by 0, 10 and 1 000 records (half on each side,
spread uniformly over the sets), and, to show paging, one side against an empty
one. For each case it prints the bytes exchanged (both directions), the
messages and round trips, the largest message and the time (both sides'
CPU, best of ``--repeat``), against the baseline of sending the full id list
(32 bytes a record) and computing the difference from it. Then a markdown
table ``| figure | ours | baseline | ratio | target | met |``; the target is
bytes <= 5 % of the full list for 10 differences.

Usage: .venv/bin/python scripts/bench_sync.py [--items 100000] [--repeat 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.sync import DEFAULT_LIMITS, RecordSet, SyncItem, SyncSession

T0 = 1_700_000_000_000
YEAR_MS = 365 * 24 * 3600 * 1000
ID_SIZE = 32


@dataclass(frozen=True)
class Result:
    case: str
    differences: int
    bytes: int
    messages: int
    largest: int
    seconds: float
    baseline_bytes: int
    baseline_seconds: float


def make_sets(items: int, differences: int, seed: int) -> tuple[list[SyncItem], list[SyncItem]]:
    """Two sets of ``items`` records each, differing by ``differences`` (half a side)."""
    rng = random.Random(seed)
    pool = [
        SyncItem(T0 + rng.randrange(YEAR_MS), rng.randbytes(ID_SIZE))
        for _ in range(items + differences // 2)
    ]
    only_a = set(rng.sample(range(len(pool)), differences // 2))
    only_b = set(rng.sample(sorted(set(range(len(pool))) - only_a), differences - differences // 2))
    a = [x for n, x in enumerate(pool) if n not in only_b]
    b = [x for n, x in enumerate(pool) if n not in only_a]
    return a, b


def reconcile(a: RecordSet, b: RecordSet) -> tuple[int, int, int, SyncSession, SyncSession]:
    """Run one session; (bytes, messages, largest message, initiator, responder)."""
    initiator, message = SyncSession.initiate(a, limits=DEFAULT_LIMITS)
    responder = SyncSession.respond(b, limits=DEFAULT_LIMITS)
    total = largest = messages = 0
    receiver, other = responder, initiator
    next_message: bytes | None = message
    while next_message is not None:
        total += len(next_message)
        largest = max(largest, len(next_message))
        messages += 1
        next_message = receiver.receive(next_message)
        receiver, other = other, receiver
    return total, messages, largest, initiator, responder


def baseline(a: list[SyncItem], b: list[SyncItem]) -> tuple[int, float]:
    """Send a's full id list; b computes both differences from it. (bytes, seconds)."""
    start = time.perf_counter()
    wire = b"".join(x.record_id for x in a)
    theirs = {wire[i : i + ID_SIZE] for i in range(0, len(wire), ID_SIZE)}
    ours = {x.record_id for x in b}
    _ = (ours - theirs, theirs - ours)
    return len(wire), time.perf_counter() - start


def measure(case: str, a: list[SyncItem], b: list[SyncItem], repeat: int) -> Result:
    a_set, b_set = RecordSet(a), RecordSet(b)
    a_set.fingerprint(0, len(a_set))  # build the prefix sums outside the timing, as a node would
    b_set.fingerprint(0, len(b_set))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        total, messages, largest, initiator, responder = reconcile(a_set, b_set)
        best = min(best, time.perf_counter() - start)
    a_ids, b_ids = {x.record_id for x in a}, {x.record_id for x in b}
    if not (
        initiator.have == responder.need == a_ids - b_ids
        and initiator.need == responder.have == b_ids - a_ids
        and initiator.complete
        and responder.complete
    ):
        raise SystemExit(f"{case}: the session did not reconcile the sets exactly")
    base_bytes, base_seconds = min((baseline(a, b) for _ in range(repeat)), key=lambda r: r[1])
    return Result(
        case, len(a_ids ^ b_ids), total, messages, largest, best, base_bytes, base_seconds
    )


def row(figure: str, ours: str, base: str, ratio: str, target: str, met: str) -> str:
    return f"| {figure} | {ours} | {base} | {ratio} | {target} | {met} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    start = time.perf_counter()
    a, _ = make_sets(args.items, 0, args.seed)
    build = RecordSet(a)
    build.fingerprint(0, len(build))
    build_seconds = time.perf_counter() - start
    results = []
    for differences in (0, 10, 1000):
        a, b = make_sets(args.items, differences, args.seed)
        results.append(measure(f"{args.items} vs {args.items}", a, b, args.repeat))
    a, _ = make_sets(args.items, 0, args.seed)
    results.append(measure(f"{args.items} vs empty", a, [], args.repeat))

    print(f"items per side: {args.items}; limits: {DEFAULT_LIMITS}")
    print(
        f"building a RecordSet of {args.items} items with fingerprint sums: {build_seconds:.2f} s"
    )
    for r in results:
        print(
            f"{r.case}, {r.differences} differences: {r.bytes} bytes in {r.messages} messages"
            f" ({(r.messages + 1) // 2} round trips), largest {r.largest} bytes,"
            f" {r.seconds * 1000:.1f} ms; baseline {r.baseline_bytes} bytes,"
            f" {r.baseline_seconds * 1000:.1f} ms"
        )
    print()
    print(row("figure", "ours", "baseline", "ratio", "target", "met"))
    print(row("---", "---:", "---:", "---:", "---", "---"))
    for r in results:
        name = f"{r.case}, {r.differences} differences"
        ratio = r.bytes / r.baseline_bytes
        if r.differences == 10:
            target, met = "<= 5 %", "yes" if ratio <= 0.05 else "no"
        else:
            target, met = "-", "-"
        print(
            row(
                f"bytes, {name}",
                f"{r.bytes:,}",
                f"{r.baseline_bytes:,}",
                f"{ratio:.2%}",
                target,
                met,
            )
        )
        print(row(f"round trips, {name}", str((r.messages + 1) // 2), "1", "-", "-", "-"))
        print(
            row(
                f"time, {name}",
                f"{r.seconds * 1000:.1f} ms",
                f"{r.baseline_seconds * 1000:.1f} ms",
                f"{r.seconds / r.baseline_seconds:.1f}x",
                "-",
                "-",
            )
        )


if __name__ == "__main__":
    main()
