"""Pack files: append-only files of content blocks under ``blocks/``.

Why packs and not one file per block: creating a file costs about a
millisecond on the disks measured here, as much as hashing a 256 KiB chunk, so
a file per block made ``remixnet add`` three times slower than ``sha256sum``.
Appending to a pack and fsyncing once per batch writes at the disk's
sequential speed.

Format of a pack::

    "RMXPACK1"                                  8-byte magic
    entry*: u32 big-endian data length
            u8 CID length, binary CID
            data

A pack is self-describing, so ``fsck`` can check every entry against its CID
without the database. Invariants, with ``node.store`` (which owns the index):

* only one process appends to a pack at a time: the appender holds an
  exclusive ``flock`` on it for as long as it is open;
* the database records, per pack, the size up to which every entry is
  fsynced and indexed (``committed_size``); an index row only ever points
  below it. Bytes beyond it are what a crash interrupted: the next appender
  truncates them away before appending;
* bytes are verified against their CID on every read anyway (disks rot).
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from protocol.cid import Cid
from protocol.content import MAX_BLOCK_SIZE
from protocol.errors import InvalidCid

MAGIC = b"RMXPACK1"
ENTRY_HEADER = struct.Struct(">IB")
SUFFIX = ".pack"
OPEN_READERS = 64  # file descriptors kept open for reading


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry found by ``scan``: the CID (None if unparsable) and where its data is."""

    cid: Cid | None
    offset: int  # of the data
    data: bytes


@dataclass(frozen=True, slots=True)
class ScanEnd:
    """Where a scan stopped: ``torn`` when the bytes after ``offset`` are no whole entry."""

    offset: int
    torn: bool


class PackAppender:
    """Appends entries to one pack, holding its lock. Not thread-safe: the store serialises."""

    def __init__(self, path: Path) -> None:
        """Open and lock ``path``. Raises ``BlockingIOError`` when another process holds it."""
        self.path = path
        self.name = path.name
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise
        self._fd = fd
        self.size = 0

    def start_at(self, committed_size: int) -> None:
        """Drop whatever lies beyond ``committed_size`` (a crash's leftovers); append there.

        Call with the committed size read *after* the lock was taken.
        """
        if committed_size < len(MAGIC):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, MAGIC, 0)
            committed_size = len(MAGIC)
        else:
            os.ftruncate(self._fd, committed_size)
        self.size = committed_size

    def append(self, cid: Cid, data: bytes | memoryview) -> int:
        """Write one entry at the end; returns the offset of its data (not yet durable)."""
        cid_bytes = cid.to_bytes()
        header = ENTRY_HEADER.pack(len(data), len(cid_bytes)) + cid_bytes
        written = os.pwritev(self._fd, [header, data], self.size)
        if written != len(header) + len(data):
            # A short write to a regular file means the filesystem is full; say
            # so with ENOSPC, which callers and the RPC error mapping understand.
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        offset = self.size + len(header)
        self.size += written
        return offset

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1


class PackFiles:
    """The pack directory: naming, locked appenders, cached readers, scanning."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._readers: OrderedDict[str, int] = OrderedDict()
        self._readers_lock = threading.Lock()

    def new_name(self) -> str:
        return secrets.token_hex(8) + SUFFIX

    def path_of(self, name: str) -> Path:
        return self.directory / name

    def open_appender(self, name: str) -> PackAppender | None:
        """Lock ``name`` for appending, or None when another process holds it."""
        try:
            return PackAppender(self.path_of(name))
        except BlockingIOError:
            return None

    def read(self, name: str, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of a pack. Raises ``FileNotFoundError``."""
        fd = self._reader(name)
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise FileNotFoundError(2, "pack is shorter than its index says", name)
        return data

    def _reader(self, name: str) -> int:
        with self._readers_lock:
            fd = self._readers.get(name)
            if fd is not None:
                self._readers.move_to_end(name)
                return fd
            fd = os.open(self.path_of(name), os.O_RDONLY)
            self._readers[name] = fd
            while len(self._readers) > OPEN_READERS:
                _, oldest = self._readers.popitem(last=False)
                os.close(oldest)
            return fd

    def forget(self, name: str) -> None:
        """Close a cached reader (before a pack is deleted or rewritten)."""
        with self._readers_lock:
            fd = self._readers.pop(name, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        with self._readers_lock:
            for fd in self._readers.values():
                os.close(fd)
            self._readers.clear()

    def names(self) -> list[str]:
        return sorted(path.name for path in self.directory.iterdir())

    def scan(self, name: str) -> Iterator[Entry | ScanEnd]:
        """Every whole entry of a pack, then a ``ScanEnd``. Reads sequentially."""
        with self.path_of(name).open("rb") as pack:
            if pack.read(len(MAGIC)) != MAGIC:
                yield ScanEnd(0, torn=True)
                return
            offset = len(MAGIC)
            while True:
                header = pack.read(ENTRY_HEADER.size)
                if not header:
                    yield ScanEnd(offset, torn=False)
                    return
                if len(header) < ENTRY_HEADER.size:
                    yield ScanEnd(offset, torn=True)
                    return
                data_size, cid_size = ENTRY_HEADER.unpack(header)
                cid_bytes = pack.read(cid_size)
                if data_size > MAX_BLOCK_SIZE or len(cid_bytes) < cid_size:
                    yield ScanEnd(offset, torn=True)
                    return
                data = pack.read(data_size)
                if len(data) < data_size:
                    yield ScanEnd(offset, torn=True)
                    return
                try:
                    cid: Cid | None = Cid.from_bytes(cid_bytes)
                except InvalidCid:
                    cid = None
                data_offset = offset + ENTRY_HEADER.size + cid_size
                yield Entry(cid, data_offset, data)
                offset = data_offset + data_size
