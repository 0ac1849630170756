"""Unix socket paths: creating the RPC socket privately, and reaching long paths.

A ``sockaddr_un`` holds at most 107 bytes of path, and data directories can be
deeper than that. ``reachable`` gives an equivalent short name through the
``/proc/self/fd`` entry of the socket's directory (Linux), so ``bind`` and
``connect`` work whatever the directory's length.

``bind_private`` creates the socket with mode 0600 without a window in which
another user could connect: it is bound inside a fresh 0700 directory,
chmod-ed, then renamed into place (connecting goes by the socket's inode, so
the rename keeps it working).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

MAX_PATH_BYTES: Final = 100  # sun_path is 108 bytes with the NUL; leave a margin


@contextmanager
def reachable(path: Path) -> Iterator[str]:
    """A name under which ``bind``/``connect`` reach ``path``, valid inside the block."""
    if len(os.fsencode(path)) <= MAX_PATH_BYTES:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        short = f"/proc/self/fd/{directory}/{path.name}"
        if len(os.fsencode(short)) > MAX_PATH_BYTES:
            raise OSError(36, "socket file name too long", str(path))
        yield short
    finally:
        os.close(directory)


def bind_private(sock: socket.socket, path: Path) -> tuple[int, int]:
    """Bind ``sock`` at ``path`` with mode 0600, replacing a stale socket file.

    The caller must own ``path`` (the daemon holds the data directory's lock).
    Returns the socket file's (st_dev, st_ino), for ``remove_if_ours``.
    """
    private = path.parent / f".{path.name}.{secrets.token_hex(6)}"
    private.mkdir(mode=0o700)
    try:
        staged = private / path.name
        with reachable(staged) as name:
            sock.bind(name)
        os.chmod(staged, 0o600)
        os.replace(staged, path)
    finally:
        for leftover in private.iterdir():
            leftover.unlink()
        private.rmdir()
    status = path.stat()
    return status.st_dev, status.st_ino


def remove_if_ours(path: Path, identity: tuple[int, int]) -> None:
    """Unlink the socket file unless something else has replaced it since."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return
    if (status.st_dev, status.st_ino) == identity:
        path.unlink(missing_ok=True)


def connect_blocking(path: Path) -> socket.socket:
    """A connected blocking stream socket. Raises ``OSError`` (ENOENT, ECONNREFUSED…)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with reachable(path) as name:
            sock.connect(name)
    except BaseException:
        sock.close()
        raise
    return sock
