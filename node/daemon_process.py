"""The daemon as an operating-system process: its lock, pid, log, files and readiness.

One daemon per data directory: ``DaemonLock`` holds an exclusive ``flock`` on
``daemon.pid`` (which also holds the pid). The kernel drops the lock when the
process dies, however it dies, so a pid file left by ``kill -9`` never blocks a
restart, and "is a daemon running here" is answered by trying the lock, never
by trusting the pid in a file.

Files in the data directory (all written atomically):

    daemon.pid   the lock file; the pid of the running daemon
    daemon.log   stdout and stderr of a ``--detach``-ed daemon (appended)
    node.json    the running node's ids and addresses; removed on clean exit
    rpc.sock     the JSON-RPC socket (``node.rpc_server``)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import psutil

from node.config import LogSettings, write_atomically
from node.datadir import DataDir, DataDirError

PID_FILE: Final = "daemon.pid"
LOG_FILE: Final = "daemon.log"
NODE_FILE: Final = "node.json"
RPC_SOCKET: Final = "rpc.sock"
READY: Final = b"ready\n"


class AlreadyRunning(DataDirError):
    """Another daemon holds this data directory."""


def pid_path(data_dir: DataDir) -> Path:
    return data_dir.root / PID_FILE


def log_path(data_dir: DataDir) -> Path:
    return data_dir.root / LOG_FILE


def node_info_path(data_dir: DataDir) -> Path:
    return data_dir.root / NODE_FILE


def rpc_socket_path(data_dir: DataDir) -> Path:
    return data_dir.root / RPC_SOCKET


class DaemonLock:
    """The exclusive lock of one data directory, held for the daemon's lifetime."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: DataDir) -> DaemonLock:
        """Lock ``daemon.pid`` and write our pid into it. Raises ``AlreadyRunning``."""
        path = pid_path(data_dir)
        for _attempt in range(100):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                pid = running_pid(data_dir)
                raise AlreadyRunning(
                    f"a daemon is already running on {data_dir.root}"
                    + (f" (pid {pid})" if pid else "")
                ) from None
            # A stopping daemon unlinks the file before it unlocks: if we locked
            # an unlinked (or replaced) file, try again with the one at ``path``.
            if _same_file(fd, path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                os.fsync(fd)
                return cls(path, fd)
            os.close(fd)
        raise DataDirError(f"cannot lock {path}: it keeps being replaced")

    def release(self) -> None:
        """Remove the pid file, then unlock (in that order: see ``acquire``)."""
        if self._fd is None:
            return
        if _same_file(self._fd, self.path):
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def running_pid(data_dir: DataDir) -> int | None:
    """The pid of the daemon holding the data directory's lock, or None when none runs.

    Reads the pid only while the lock is held by someone else, so a stale pid
    file (after ``kill -9``) reads as "not running".
    """
    path = pid_path(data_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            # Locked: a daemon runs. It writes its pid right after locking.
            for _attempt in range(100):
                text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                if text.isdigit():
                    return int(text)
                time.sleep(0.01)
            return 0  # running, pid not written (yet)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def wait_until_stopped(data_dir: DataDir, seconds: float, pid: int = 0) -> bool:
    """Poll until no daemon holds the lock and process ``pid`` (when given) has exited;
    False if either still holds after ``seconds``.

    The daemon releases its lock as its last act, but the interpreter then
    takes a moment (measured: up to ~1 s) to tear down: a caller told "stopped"
    must not find the process still there.
    """
    deadline = time.monotonic() + seconds
    while running_pid(data_dir) is not None or (pid and process_alive(pid)):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; an exited process not yet reaped (a zombie) counts as gone.

    A ``--detach``-ed daemon is reparented to PID 1, which in a container may
    reap it late or never, so signal 0 alone would see it alive.
    """
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists; whose it is does not matter here
        return True


def terminate(pid: int) -> None:
    """SIGTERM ``pid`` (the daemon shuts down cleanly on it); gone already is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def start_detached(data_dir: DataDir, *, ready_seconds: float, extra_args: list[str]) -> int:
    """Start ``remixnet daemon`` in a new session, logging to ``daemon.log``; its pid.

    Returns once the daemon reports itself ready (RPC socket bound, node.json
    written). Raises ``DataDirError`` with the daemon's own one-line error when
    it fails to start, or when it is not ready after ``ready_seconds``.
    """
    root = data_dir.root.resolve()
    log = log_path(data_dir)
    read_end, write_end = os.pipe()
    try:
        with log.open("ab") as log_file:
            start = log_file.tell()
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "node",
                    "--data-dir",
                    str(root),
                    "daemon",
                    "--ready-fd",
                    str(write_end),
                    *extra_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                pass_fds=(write_end,),
                start_new_session=True,  # no SIGINT/SIGHUP from this terminal
                cwd="/",  # do not keep the caller's directory busy
            )
    finally:
        os.close(write_end)
    try:
        ready = _read_ready(read_end, ready_seconds)
    finally:
        os.close(read_end)
    if ready:
        return process.pid
    try:
        code = process.wait(timeout=ready_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise DataDirError(
            f"the daemon did not start within {ready_seconds:g} s (see {log})"
        ) from None
    raise DataDirError(_last_error(log, start) or f"the daemon exited with code {code} (see {log})")


def _read_ready(fd: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    received = b""
    while len(received) < len(READY):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            return False
        piece = os.read(fd, len(READY) - len(received))
        if not piece:
            return False  # the daemon exited (or closed the pipe) before it was ready
        received += piece
    return received == READY


def _last_error(log: Path, start: int) -> str | None:
    """The daemon's one-line error in what it logged since ``start``."""
    with log.open("rb") as file:
        file.seek(start)
        lines = file.read().decode("utf-8", "replace").splitlines()
    prefix = "remixnet: error: "
    for line in reversed(lines):
        if line.startswith(prefix):
            return line[len(prefix) :]
    return None


def signal_ready(fd: int) -> None:
    """Tell the ``--detach``-ing parent that the daemon is up."""
    try:
        os.write(fd, READY)
    finally:
        os.close(fd)


def notify_systemd(state: str) -> None:
    """``sd_notify(state)`` when run by systemd with ``Type=notify``; else nothing."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode())


def write_node_info(data_dir: DataDir, info: Mapping[str, object]) -> None:
    text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    write_atomically(node_info_path(data_dir), text.encode(), mode=0o644)


def read_node_info(data_dir: DataDir) -> dict[str, object] | None:
    """``node.json`` if present and readable, else None."""
    try:
        value = json.loads(node_info_path(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def remove_node_info(data_dir: DataDir) -> None:
    node_info_path(data_dir).unlink(missing_ok=True)


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``
    (and ``exception`` with the traceback, when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: LogSettings) -> None:
    """Send the daemon's log to stderr at ``[log] level``, as text or JSON lines (``format``)."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonLinesFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    if settings.level != "debug":
        logging.getLogger("libp2p").setLevel(logging.WARNING)  # chatty at info
