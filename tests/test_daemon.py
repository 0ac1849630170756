"""`remixnet daemon`, `stop`, `status`, `rpc`, `events` as a user runs them: real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from node.client import RpcClient, open_trio_client
from tests.conftest import Cli
from tests.daemon_fixtures import (
    STOP_SECONDS,
    DaemonProcess,
    daemon_process,  # noqa: F401
    pid_alive,
    wait_for,
    write_test_config,
)

pytestmark = pytest.mark.slow


def status_of(cli: Cli) -> dict[str, Any]:
    result = cli.run("status", "--json")
    return cast(dict[str, Any], result.json())


def test_daemon_starts_serves_and_stops_cleanly_on_sigterm(
    daemon_process: DaemonProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli = daemon_process.cli
    info = daemon_process.start()
    author = cli.run("id").text.strip()
    assert info["author"] == info["peer_id"] == author
    assert info["pid"] == daemon_process.pid
    assert info["configured_listen"] == ["/ip4/127.0.0.1/tcp/0"]
    socket_path = cli.data_dir / "rpc.sock"
    assert info["rpc_socket"] == str(socket_path)
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    assert f"rpc       {socket_path}" in daemon_process.log()  # printed at start

    status = status_of(cli)
    assert status["running"] is True
    assert (status["author"], status["pid"]) == (author, daemon_process.pid)
    human = cli.run("status").text
    assert str(socket_path) in human
    assert author in human

    (tmp_path / "poem.txt").write_text("snow on snow")
    added = cast(
        dict[str, Any],
        cli.run("rpc", "content.add", f"path={tmp_path / 'poem.txt'}", "title=Poem").json(),
    )
    assert daemon_process.stop() == 0
    assert not socket_path.exists()
    assert not (cli.data_dir / "node.json").exists()
    assert not (cli.data_dir / "daemon.pid").exists()
    assert cli.run("status", check=False).returncode == 3
    assert "stopped" in daemon_process.log()

    # Restart: same identity, same store.
    again = daemon_process.start()
    assert again["author"] == author
    shown = cast(dict[str, Any], cli.run("rpc", "records.get", f"id={added['id']}").json())
    assert shown["record"]["title"] == "Poem"
    daemon_process.signal(signal.SIGINT)
    assert daemon_process.wait() == 0
    assert not socket_path.exists()


def test_a_second_daemon_on_the_same_data_dir_is_refused(
    daemon_process: DaemonProcess,  # noqa: F811
) -> None:
    cli = daemon_process.cli
    daemon_process.start()
    refused = cli.fail("daemon")
    assert f"already running on {cli.data_dir} (pid {daemon_process.pid})" in refused.stderr
    assert cli.fail("daemon", "--detach").returncode == 1
    assert status_of(cli)["pid"] == daemon_process.pid  # the first one is untouched
    assert daemon_process.stop() == 0


def test_detach_stop_and_restart_after_kill_9(
    daemon_process: DaemonProcess,  # noqa: F811
) -> None:
    cli = daemon_process.cli
    started = cli.run("daemon", "--detach", "--json").json()
    assert isinstance(started, dict)
    pid = started["pid"]
    assert pid_alive(pid)
    assert (cli.data_dir / "daemon.pid").read_text().strip() == str(pid)
    assert status_of(cli)["pid"] == pid
    assert "pid" in cli.run("stop").text
    assert not pid_alive(pid)  # `stop` returns only once it is gone
    assert cli.run("status", check=False).returncode == 3
    assert "not running" in cli.run("stop").text  # stopping a stopped node is fine

    cli.run("daemon", "--detach")
    pid = status_of(cli)["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(pid))
    # Left behind: pid file, socket and node.json of the dead daemon.
    assert (cli.data_dir / "daemon.pid").exists()
    assert (cli.data_dir / "rpc.sock").exists()
    assert cli.run("status", check=False).returncode == 3
    restarted = cli.run("daemon", "--detach", "--json").json()
    assert isinstance(restarted, dict)
    assert restarted["pid"] != pid
    assert status_of(cli)["pid"] == restarted["pid"]
    cli.run("stop")
    assert not pid_alive(restarted["pid"])


def test_stop_falls_back_to_sigterm_when_rpc_does_not_answer(
    daemon_process: DaemonProcess,  # noqa: F811
) -> None:
    cli = daemon_process.cli
    daemon_process.start()
    (cli.data_dir / "rpc.sock").unlink()  # nobody can reach it over RPC any more
    stopped = cast(dict[str, Any], cli.run("stop", "--json").json())
    assert stopped == {
        "pid": daemon_process.pid,
        "running": False,
        "stopped": True,
        "via": "sigterm",
    }
    assert daemon_process.wait() == 0


def test_daemon_start_errors_are_one_line(cli: Cli) -> None:
    assert "not initialised" in cli.fail("daemon").stderr
    cli.run("init")
    write_test_config(cli.data_dir, "[limits]\nrpc_clients = -1\n")
    assert "rpc_clients" in cli.fail("daemon").stderr
    assert "rpc_clients" in cli.fail("daemon", "--detach").stderr
    assert "no daemon is running" in cli.fail("rpc", "node.status").stderr
    assert "no daemon is running" in cli.fail("events").stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        write_test_config(cli.data_dir, f'[rpc]\ntcp = "127.0.0.1:{port}"\n')
        in_use = f"rpc.tcp 127.0.0.1:{port}: Address already in use"
        assert in_use in cli.fail("daemon").stderr
        assert in_use in cli.fail("daemon", "--detach").stderr
    assert not (cli.data_dir / "rpc.sock").exists()
    assert not (cli.data_dir / "daemon.pid").exists()


def test_first_start_writes_the_commented_default_config(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "fresh")
    handle = DaemonProcess(cli)
    try:
        handle.start("--init")  # also creates the identity
        config = (cli.data_dir / "config.toml").read_text()
        assert "[network]" in config
        assert "# Multiaddrs" in config
        assert handle.stop() == 0
    finally:
        handle.kill()


def test_fifty_clients_against_a_daemon_process(
    daemon_process: DaemonProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    info = daemon_process.start()
    socket_path = Path(info["rpc_socket"])
    (tmp_path / "poem.txt").write_text("snow")
    with RpcClient.connect(socket_path) as client:
        poem = client.call("content.add", {"path": str(tmp_path / "poem.txt")})

    async def main() -> list[Any]:
        answers: list[Any] = []

        async def one(number: int) -> None:
            async with open_trio_client(socket_path) as each:
                for method, params in (
                    ("node.status", None),
                    ("records.get", {"id": poem["id"]}),
                    ("content.cat", [poem["id"]]),
                ):
                    answers.append((number, await each.call(method, params)))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for number in range(50):
                    nursery.start_soon(one, number)
        return answers

    answers = trio.run(main)
    assert len(answers) == 150
    assert {number for number, _ in answers} == set(range(50))
    assert daemon_process.stop() == 0


def test_rpc_and_events_commands(
    daemon_process: DaemonProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli = daemon_process.cli
    daemon_process.start()
    listener = subprocess.Popen(
        cli.command("events", "--json", "record.added"),
        env=cli.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert listener.stdout is not None
        assert wait_for(lambda: status_of(cli)["rpc"].get("subscriptions") == 1)
        (tmp_path / "a.txt").write_text("a")
        added = cli.run("rpc", "content.add", json.dumps({"path": str(tmp_path / "a.txt")})).json()
        assert isinstance(added, dict)
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.append(listener.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(STOP_SECONDS)
        event = json.loads(lines[0])
        assert event["event"] == "record.added"
        assert event["data"]["record"]["id"] == added["id"]
    finally:
        listener.kill()
        listener.wait(timeout=STOP_SECONDS)
        if listener.stdout is not None:
            listener.stdout.close()
        if listener.stderr is not None:
            listener.stderr.close()
    bad = cli.fail("rpc", "records.get", "id=nope")
    assert "code -32602" in bad.stderr
    assert "code -32601" in cli.fail("rpc", "no.such.method").stderr
    unknown = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert "unknown record" in cli.fail("rpc", "records.get", unknown).stderr
    assert "give params either" in cli.fail("rpc", "records.list", "a=1", "2").stderr
    assert daemon_process.stop() == 0


def test_json_logs_at_the_configured_level_and_the_seed_profile(
    initialised_cli: Cli,
) -> None:
    write_test_config(
        initialised_cli.data_dir,
        '\n[log]\nlevel = "debug"\nformat = "json"\n\n[seed]\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n',
    )
    daemon = DaemonProcess(initialised_cli)
    try:
        info = daemon.start("--seed")
        assert info["listen_addrs"][0].startswith("/ip4/127.0.0.1/tcp/")
        status = status_of(initialised_cli)
        assert status["profile"] == "seed"
        assert status["services"]["replication"]["mode"] == "off"
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    lines = [line for line in daemon.log().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    assert {"ts", "level", "logger", "message"} <= entries[0].keys()
    assert "debug" in {entry["level"] for entry in entries}  # level = "debug" is honoured
    assert any(entry["message"] == "stopped" for entry in entries)


def test_a_bad_listen_option_is_one_line(initialised_cli: Cli) -> None:
    failure = initialised_cli.fail("daemon", "--listen", "/ip4/127.0.0.1/udp/1")
    assert "has no /tcp/ part" in failure.stderr
    assert failure.returncode == 2


def test_process_alive_counts_a_zombie_as_gone() -> None:
    """A detached daemon's parent may reap it late: an exited, unreaped process is gone."""
    from node.daemon_process import process_alive

    child = subprocess.Popen(["sleep", "30"])
    try:
        assert process_alive(child.pid)
        child.kill()
        # Not reaped yet: it is a zombie until wait(). Bounded: 5 s at most.
        assert wait_for(lambda: not process_alive(child.pid), seconds=5)
        assert child.poll() is not None  # reaped only now, after it was seen gone
        assert not process_alive(child.pid)
    finally:
        child.kill()
        child.wait()
