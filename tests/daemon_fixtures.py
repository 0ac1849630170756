"""Fixtures for daemon and RPC tests: daemons in subprocesses and in-process, raw connections.

Import the fixtures into a test module with
``from tests.daemon_fixtures import daemon_process, rpc_daemon  # noqa: F401``.
Every wait here is bounded.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from node.config import Config, LimitsConfig, NetworkConfig, RpcConfig
from node.daemon import Daemon, default_services
from node.daemon_process import process_alive
from node.datadir import DataDir
from node.unix_socket import reachable
from tests.conftest import Cli

SEED = bytes(range(32))
START_SECONDS = 30.0
STOP_SECONDS = 30.0


def loopback_config(**limits: int) -> Config:
    """A configuration for tests: loopback only, port 0, optional limits."""
    return Config(
        network=NetworkConfig(listen=("/ip4/127.0.0.1/tcp/0",)),
        limits=LimitsConfig(**limits),
        rpc=RpcConfig(),
    )


def write_test_config(data_dir: Path, extra: str = "") -> None:
    """A config.toml that listens on loopback only, plus ``extra`` TOML."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "config.toml").write_text(
        '[network]\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n' + extra, encoding="utf-8"
    )


@dataclass
class OnlineCli(Cli):
    """Runs ``remixnet --online …``: a command that does not go through the daemon fails."""

    def command(self, *args: str | Path) -> list[str]:
        return super().command("--online", *args)


@dataclass
class DaemonProcess:
    """``remixnet daemon`` in a subprocess; ``start`` returns when it is ready."""

    cli: Cli
    process: subprocess.Popen[bytes] | None = None
    output: Path = field(init=False)

    def __post_init__(self) -> None:
        self.output = self.cli.data_dir.parent / f"{self.cli.data_dir.name}-daemon.out"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *args: str) -> dict[str, Any]:
        """Start the daemon, wait until it reports ready, return its node.json."""
        read_end, write_end = os.pipe()
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [*self.cli.command("daemon", "--ready-fd", str(write_end), *args)],
                env=self.cli.environment(),
                stdout=out,
                stderr=out,
                pass_fds=(write_end,),
            )
        os.close(write_end)
        try:
            readable, _, _ = select.select([read_end], [], [], START_SECONDS)
            ready = bool(readable) and os.read(read_end, 16) == b"ready\n"
        finally:
            os.close(read_end)
        if not ready:
            self.kill()
            raise AssertionError(f"the daemon did not start: {self.log()}")
        return self.node_info()

    def node_info(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads((self.cli.data_dir / "node.json").read_text()))

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def wait(self) -> int:
        """Its exit code, waiting at most STOP_SECONDS."""
        assert self.process is not None
        return self.process.wait(timeout=STOP_SECONDS)

    def stop(self) -> int:
        self.signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_SECONDS)


@dataclass
class Daemons:
    """The daemon processes of one test, each on its own data directory under ``root``;
    ``close`` kills whatever still runs."""

    root: Path
    started: list[DaemonProcess] = field(default_factory=list)

    def prepare(self, name: str, *, bootstrap: tuple[str, ...] = (), extra: str = "") -> Cli:
        """An initialised data directory on loopback with a config (``extra`` TOML
        follows ``[network]``); not started."""
        cli = Cli(self.root / name)
        if not (cli.data_dir / "identity.key").exists():
            cli.run("init")
        write_test_config(cli.data_dir, f"bootstrap = {json.dumps(list(bootstrap))}\n" + extra)
        return cli

    def start(self, cli: Cli, *args: str) -> DaemonProcess:
        process = DaemonProcess(cli)
        self.started.append(process)
        process.start(*args)
        return process

    def launch(
        self,
        name: str,
        *,
        bootstrap: tuple[str, ...] = (),
        extra: str = "",
        args: tuple[str, ...] = (),
    ) -> DaemonProcess:
        """``prepare`` then ``start``."""
        return self.start(self.prepare(name, bootstrap=bootstrap, extra=extra), *args)

    def close(self) -> None:
        for process in self.started:
            process.kill()


@pytest.fixture(name="daemons")
def daemons_fixture(tmp_path: Path) -> Iterator[Daemons]:
    pool = Daemons(tmp_path)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def daemon_process(initialised_cli: Cli) -> Iterator[DaemonProcess]:
    """A daemon (not yet started) on an initialised data dir with a loopback config."""
    write_test_config(initialised_cli.data_dir)
    handle = DaemonProcess(initialised_cli)
    try:
        yield handle
    finally:
        handle.kill()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie is dead: see ``process_alive``)."""
    return process_alive(pid)


def wait_for(condition: Any, seconds: float = STOP_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
async def rpc_daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon with every service (on loopback) in this test's trio run, with a fixed identity.

    No signal handling.
    """
    data_dir = DataDir(tmp_path / "node")
    data_dir.init(seed=SEED)
    daemon = Daemon(data_dir, loopback_config(), services=default_services())
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        yield daemon
        daemon.request_shutdown()


@asynccontextmanager
async def running_daemons(root: Path, *names: str) -> AsyncIterator[list[Daemon]]:
    """In-process daemons with every service (on loopback), one per name under ``root``,
    in this test's trio run; shut down on leaving."""
    async with trio.open_nursery() as nursery:
        daemons: list[Daemon] = []
        try:
            for name in names:
                data_dir = DataDir(root / name)
                data_dir.init()
                daemon = Daemon(data_dir, loopback_config(), services=default_services())
                with trio.fail_after(START_SECONDS):
                    await nursery.start(daemon.run)
                daemons.append(daemon)
            yield daemons
        finally:
            for daemon in daemons:
                daemon.request_shutdown()


class RawConnection:
    """A bare socket connection to the daemon, for conformance tests: bytes in, messages out."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    async def send(self, data: bytes | str) -> None:
        await self.stream.send_all(data.encode() if isinstance(data, str) else data)

    async def receive(self, seconds: float = 10) -> Any:
        """The next message (one line of JSON); fails after ``seconds``."""
        with trio.fail_after(seconds):
            while b"\n" not in self._buffer:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("the daemon closed the connection")
                self._buffer += data
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        assert line == line.strip(), "a response line has surrounding whitespace"
        return json.loads(line)

    async def call(self, message: dict[str, Any]) -> Any:
        await self.send(json.dumps(message))
        return await self.receive()

    async def closed_by_daemon(self, seconds: float = 10) -> bool:
        """True when the daemon closes the connection within ``seconds`` (after any data)."""
        with trio.move_on_after(seconds):
            try:
                while await self.stream.receive_some(65536):
                    pass
            except trio.BrokenResourceError:
                pass
            return True
        return False

    async def nothing_within(self, seconds: float) -> bool:
        """True when no byte arrives within ``seconds``."""
        if self._buffer:
            return False
        with trio.move_on_after(seconds):
            data = await self.stream.receive_some(65536)
            self._buffer += data
            return False
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


async def open_raw(path: Path) -> RawConnection:
    with reachable(path) as name:
        stream = await trio.open_unix_socket(name)
    return RawConnection(stream)
