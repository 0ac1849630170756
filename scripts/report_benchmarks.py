#!/usr/bin/env python3
"""Run every ``scripts/bench_*.py`` and merge their tables into one report.

Each benchmark prints a markdown table ``| figure | ours | baseline | ratio |
target | met |`` on stdout (its progress goes to stderr). This runs them one
after the other (discovered by glob, so a new benchmark is picked up without
editing this file), passes ``--quick`` to those that declare that option,
and prints one table with a leading ``script`` column, then a summary line:
how many figures with a target met it. A benchmark that exits non-zero, times
out or prints no table is a ``FAILED`` row, and the report goes on.

Usage (through the wrapper): ``scripts/bench_all [--quick] [-k NAME]...``
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
COLUMNS = ("figure", "ours", "baseline", "ratio", "target", "met")
# A benchmark's whole run, at full size, stays well under this on the 2-core machines here.
TIMEOUT_SECONDS = 3600
MET = frozenset({"yes", "true", "met", "ok"})
NOT_MET = frozenset({"no", "false", "not met", "failed"})


@dataclass(frozen=True)
class Row:
    script: str
    cells: tuple[str, str, str, str, str, str]

    @property
    def has_target(self) -> bool:
        return self.cells[5].strip().lower() in MET | NOT_MET

    @property
    def met(self) -> bool:
        return self.cells[5].strip().lower() in MET


def table_rows(script: str, output: str) -> list[Row]:
    """The data rows of every ``| figure | ours | … | met |`` table in ``output``."""
    rows: list[Row] = []
    in_table = False
    for line in output.splitlines():
        stripped = line.strip()
        if not stripped.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in stripped.strip("|").split("|")]
        if len(cells) != len(COLUMNS):
            continue
        if tuple(cell.lower() for cell in cells) == COLUMNS:
            in_table = True
            continue
        if not in_table or all(set(cell) <= set("-: ") for cell in cells):
            continue  # the separator line, or a six-column table of some other kind
        rows.append(Row(script, (cells[0], cells[1], cells[2], cells[3], cells[4], cells[5])))
    return rows


def accepts_quick(script: Path) -> bool:
    """Whether the benchmark declares a ``--quick`` option.

    Read from its source rather than asked with ``--help``: a script without
    an argument parser would run the whole benchmark for ``--help``.
    """
    return re.search(r"""["']--quick["']""", script.read_text(encoding="utf-8")) is not None


def failed_row(script: str, why: str) -> Row:
    return Row(script, ("FAILED: " + why, "-", "-", "-", "-", "FAILED"))


def run_benchmark(script: Path, *, quick: bool) -> tuple[list[Row], bool]:
    """The rows the benchmark printed, and whether it ran successfully."""
    name = script.name
    command = [sys.executable, str(script)]
    if quick and accepts_quick(script):
        command.append("--quick")
    print(f"== {' '.join([name, *command[2:]])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        completed = subprocess.run(
            command, stdout=subprocess.PIPE, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        return [failed_row(name, f"timed out after {TIMEOUT_SECONDS} s")], False
    seconds = time.monotonic() - started
    print(completed.stdout, file=sys.stderr, end="")
    print(f"== {name}: exit {completed.returncode} in {seconds:.0f} s", file=sys.stderr)
    rows = table_rows(name, completed.stdout)
    if completed.returncode != 0:
        return [*rows, failed_row(name, f"exit status {completed.returncode}")], False
    if not rows:
        return [failed_row(name, "printed no | figure | ours | … | met | table")], False
    return rows, True


def escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def report(rows: list[Row]) -> str:
    lines = [
        "| script | " + " | ".join(COLUMNS) + " |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row.script} | " + " | ".join(map(escape, row.cells)) + " |")
    with_target = [row for row in rows if row.has_target and not row.cells[0].startswith("FAILED")]
    met = sum(row.met for row in with_target)
    failed = sum(row.cells[0].startswith("FAILED") for row in rows)
    summary = f"{met} met / {len(with_target)} with targets"
    if failed:
        summary += f"; {failed} benchmark(s) FAILED"
    return "\n".join([*lines, "", summary])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="pass --quick to benchmarks that accept it"
    )
    parser.add_argument(
        "-k",
        dest="only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only benchmarks whose file name contains NAME (repeatable)",
    )
    parser.add_argument("--scripts-dir", type=Path, default=SCRIPTS, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    scripts = sorted(arguments.scripts_dir.glob("bench_*.py"))
    if arguments.only:
        scripts = [s for s in scripts if any(name in s.name for name in arguments.only)]
    if not scripts:
        parser.exit(2, "bench_all: error: no benchmark matches\n")
    rows: list[Row] = []
    all_ran = True
    for script in scripts:
        script_rows, ran = run_benchmark(script, quick=arguments.quick)
        rows += script_rows
        all_ran &= ran
    print(report(rows))
    sys.exit(0 if all_ran else 1)


if __name__ == "__main__":
    main()
