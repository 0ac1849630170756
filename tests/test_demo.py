"""scripts/demo, the newcomer's tour: it runs end to end and leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.daemon_fixtures import pid_alive, wait_for

pytestmark = pytest.mark.slow

DEMO = REPO / "scripts" / "demo"
# The demo takes about a minute; much longer on a machine shared with other test runs.
DEMO_SECONDS = 900
RECORD_ID = r"bafkrei[a-z2-7]{52}"


def demo_environment(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path / "tmp")  # where the demo puts its four data directories
    (tmp_path / "tmp").mkdir()
    env.pop("REMIXNET_DATA_DIR", None)
    return env


def daemon_pids(output: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"\(daemon pid (\d+)\)", output)]


def kill_leftovers(output: str) -> None:
    """After a failed test: kill the daemons the demo started and left running."""
    for pid in daemon_pids(output):
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def run_demo(tmp_path: Path) -> tuple[int, str, str]:
    """Run the demo to its end: (exit status, stdout, stderr)."""
    with subprocess.Popen(
        [str(DEMO), str(tmp_path / "out")],
        env=demo_environment(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as demo:
        try:
            stdout, stderr = demo.communicate(timeout=DEMO_SECONDS)
        except subprocess.TimeoutExpired:
            demo.send_signal(signal.SIGTERM)  # its trap stops the daemons
            stdout, stderr = demo.communicate(timeout=120)
            kill_leftovers(stdout)
            raise AssertionError(f"the demo took over {DEMO_SECONDS} s:\n{stdout}") from None
    return demo.returncode, stdout, stderr


def test_demo_tells_the_whole_story_and_stops_everything(tmp_path: Path) -> None:
    returncode, output, errors = run_demo(tmp_path)
    if returncode != 0:
        kill_leftovers(output)
    assert returncode == 0, output + errors
    pids = daemon_pids(output)
    assert len(pids) == 4, output
    assert "all four connected: each has 3 peers" in output
    for step in (
        rf"poem  {RECORD_ID}",
        rf"drawing  {RECORD_ID}",
        rf"score  {RECORD_ID}",
        rf"collab  {RECORD_ID}",
        rf"film  {RECORD_ID}",
        rf"production  {RECORD_ID}",
    ):
        assert re.search(step, output), step
    # Bob read Alice's poem, fetched from her node.
    assert "| Snow on the lantern," in output
    # The lineage tree reaches from the film back to the poem.
    lineage = output.split("== The lineage of the film")[1].split("==")[0]
    for title in ("Lantern (short film)", "Lantern, drawn", "Lantern, scored", "Lantern "):
        assert title in lineage
    svg = (tmp_path / "out" / "lantern.svg").read_text()
    assert svg.lstrip().startswith(("<svg", "<?xml"))
    assert "</svg>" in svg
    # Four authors share the credit, and the split sums to exactly 100 %.
    credits = output.split("== The credit split")[1].split("==")[0]
    shares = re.findall(r"12D3KooW\w+\s+(\d+)\s+(\d+\.\d\d)", credits)
    assert len(shares) == 4, credits
    assert sum(int(bps) for bps, _ in shares) == 10_000
    assert "credit split total: 100% (10000 basis points)" in credits
    assert output.rstrip().endswith("demo complete")
    # Nothing left behind: every daemon has exited and the temporary directory is gone.
    assert all(not pid_alive(pid) for pid in pids)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_interrupted_demo_stops_every_daemon(tmp_path: Path) -> None:
    output = ""
    try:
        with subprocess.Popen(
            [str(DEMO), str(tmp_path / "out")],
            env=demo_environment(tmp_path),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as demo:
            assert demo.stdout is not None
            deadline = time.monotonic() + DEMO_SECONDS
            while len(daemon_pids(output)) < 4 and time.monotonic() < deadline:
                line = demo.stdout.readline()
                if not line:
                    break
                output += line
            pids = daemon_pids(output)
            assert len(pids) == 4, output
            assert all(pid_alive(pid) for pid in pids)
            demo.send_signal(signal.SIGINT)  # Ctrl-C while the nodes run
            output += demo.stdout.read()  # until the demo exits and closes it
            assert demo.wait(timeout=120) != 0
        assert wait_for(lambda: not any(pid_alive(pid) for pid in pids), 10)
        assert list((tmp_path / "tmp").iterdir()) == []
    finally:
        kill_leftovers(output)
