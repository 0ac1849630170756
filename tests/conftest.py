"""Shared fixtures: temporary data directories and a CLI runner in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from node.datadir import DataDir
from node.store import Store

REPO = Path(__file__).resolve().parent.parent

# Hypothesis budget of the fuzz tests (tests/test_fuzz.py, marker ``fuzz``): small in a
# normal run, so the whole suite stays fast; large with ``pytest -m fuzz`` or with
# REMIXNET_FUZZ=large (REMIXNET_FUZZ_EXAMPLES=N sets the large budget).
FUZZ_SMALL_EXAMPLES = 100
FUZZ_LARGE_EXAMPLES = int(os.environ.get("REMIXNET_FUZZ_EXAMPLES", "5000"))


def register_fuzz_profile(large: bool) -> None:
    settings.register_profile(
        "fuzz",
        max_examples=FUZZ_LARGE_EXAMPLES if large else FUZZ_SMALL_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


register_fuzz_profile(os.environ.get("REMIXNET_FUZZ") == "large")


def pytest_configure(config: pytest.Config) -> None:
    if str(config.getoption("markexpr", "")).strip() == "fuzz":
        register_fuzz_profile(large=True)


@dataclass
class CliResult:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode()

    def json(self) -> object:
        return json.loads(self.stdout)


@dataclass
class Cli:
    """Runs ``remixnet`` in a subprocess against one data directory (from ``cwd``, if given)."""

    data_dir: Path
    cwd: Path | None = None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["REMIXNET_DATA_DIR"] = str(self.data_dir)
        env["PYTHONPATH"] = str(REPO)
        env.pop("COLUMNS", None)
        return env

    def command(self, *args: str | Path) -> list[str]:
        return [sys.executable, "-m", "node", *map(str, args)]

    def run(self, *args: str | Path, check: bool = True, stdin: bytes | None = None) -> CliResult:
        completed = subprocess.run(
            self.command(*args),
            env=self.environment(),
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            timeout=300,
            check=False,
        )
        result = CliResult(completed.returncode, completed.stdout, completed.stderr.decode())
        if check and result.returncode != 0:
            raise AssertionError(f"remixnet {args} failed ({result.returncode}): {result.stderr}")
        return result

    def json(self, *args: str | Path) -> object:
        return self.run(*args, "--json").json()

    def fail(self, *args: str | Path) -> CliResult:
        """Run a command that must fail with one clear line and no traceback."""
        result = self.run(*args, check=False)
        assert result.returncode != 0, f"remixnet {args} should have failed"
        assert "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("remixnet: error: "), result.stderr
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A CLI runner on a fresh, *uninitialised* data directory."""
    return Cli(tmp_path / "node")


@pytest.fixture
def initialised_cli(cli: Cli) -> Cli:
    cli.run("init")
    return cli


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """An open store on a fresh, initialised data directory."""
    data_dir = DataDir(tmp_path / "store")
    data_dir.init(seed=bytes(range(32)))
    with Store(data_dir) as opened:
        yield opened


def write_random_file(path: Path, size: int, seed: int = 0) -> bytes:
    """A file of ``size`` pseudo-random bytes (deterministic by ``seed``)."""
    import random

    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def block_location(data_dir: Path, cid: str) -> tuple[Path, int, int]:
    """(pack file, data offset, size) of a stored block, read from the index."""
    import sqlite3

    from protocol.cid import Cid

    with sqlite3.connect(data_dir / "remixnet.db") as db:
        row = db.execute(
            "SELECT p.name, b.offset, b.size FROM blocks b JOIN packs p ON p.id = b.pack"
            " WHERE b.cid = ?",
            (Cid.parse(cid).to_bytes(),),
        ).fetchone()
    assert row is not None, f"{cid} is not indexed"
    return data_dir / "blocks" / row[0], row[1], row[2]


def corrupt_block(data_dir: Path, cid: str) -> None:
    """Flip the first byte of a stored block's data in its pack (disk rot)."""
    pack, offset, _ = block_location(data_dir, cid)
    with pack.open("r+b") as file:
        file.seek(offset)
        first = file.read(1)
        file.seek(offset)
        file.write(bytes([first[0] ^ 0xFF]))


def indexed_blocks(data_dir: Path) -> list[str]:
    """CIDs of the index, in CID order."""
    import sqlite3

    from protocol.cid import Cid

    with sqlite3.connect(data_dir / "remixnet.db") as db:
        rows = db.execute("SELECT cid FROM blocks ORDER BY cid").fetchall()
    return [str(Cid.from_bytes(row[0])) for row in rows]
