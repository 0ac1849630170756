"""scripts/bench_all: one table from every benchmark, failures reported as rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

REPORT = REPO / "scripts" / "report_benchmarks.py"

TABLE = """
print("progress goes to stderr", file=sys.stderr)
print("some preamble | with a pipe")
print("| figure | ours | baseline | ratio | target | met |")
print("|---|---:|---:|---:|---|---|")
"""


def write_benchmark(directory: Path, name: str, body: str) -> None:
    (directory / name).write_text("import sys\n" + body, encoding="utf-8")


def run_report(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPORT), "--scripts-dir", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rows_of_every_benchmark_are_merged_and_failures_reported(tmp_path: Path) -> None:
    write_benchmark(
        tmp_path,
        "bench_fast.py",
        "import argparse\n"
        "parser = argparse.ArgumentParser()\n"
        "parser.add_argument('--quick', action='store_true')\n"
        "quick = parser.parse_args().quick\n"
        + TABLE
        + "print(f'| add, quick={quick} | 2.0 s | 1.0 s | 2.00 | <= 3 | yes |')\n"
        "print('| peak RSS | 90 MiB | - | - | <= 64 MiB | no |')\n"
        "print('| round trips | 3 | 1 | - | - | - |')\n",
    )
    write_benchmark(tmp_path, "bench_plain.py", TABLE + "print('| sync | 1 | 2 | 0.5 | - | - |')\n")
    write_benchmark(tmp_path, "bench_crash.py", TABLE + "raise SystemExit(3)\n")
    write_benchmark(tmp_path, "bench_silent.py", "print('no table here')\n")
    (tmp_path / "helper.py").write_text("raise SystemExit('not a benchmark')\n")

    completed = run_report(tmp_path, "--quick")

    assert completed.returncode == 1  # two benchmarks failed
    lines = completed.stdout.strip().splitlines()
    assert lines[0] == "| script | figure | ours | baseline | ratio | target | met |"
    rows = [line for line in lines[2:] if line.startswith("|")]
    assert rows == [
        "| bench_crash.py | FAILED: exit status 3 | - | - | - | - | FAILED |",
        "| bench_fast.py | add, quick=True | 2.0 s | 1.0 s | 2.00 | <= 3 | yes |",
        "| bench_fast.py | peak RSS | 90 MiB | - | - | <= 64 MiB | no |",
        "| bench_fast.py | round trips | 3 | 1 | - | - | - |",
        "| bench_plain.py | sync | 1 | 2 | 0.5 | - | - |",
        "| bench_silent.py | FAILED: printed no \\| figure \\| ours \\| … \\| met \\| table"
        " | - | - | - | - | FAILED |",
    ]
    assert lines[-1] == "1 met / 2 with targets; 2 benchmark(s) FAILED"
    assert "progress goes to stderr" in completed.stderr


def test_only_selected_benchmarks_run_and_quick_is_not_forced(tmp_path: Path) -> None:
    write_benchmark(
        tmp_path, "bench_plain.py", TABLE + "print('| sync | 1 | 2 | 0.5 | 1 | yes |')\n"
    )
    write_benchmark(tmp_path, "bench_other.py", "raise SystemExit(1)\n")
    completed = run_report(tmp_path, "--quick", "-k", "plain")
    assert completed.returncode == 0, completed.stderr
    assert "bench_other" not in completed.stdout
    assert completed.stdout.strip().splitlines()[-1] == "1 met / 1 with targets"
    assert run_report(tmp_path, "-k", "nothing").returncode == 2
