"""Block files on disk: one file per block, named by its CID.

Invariant: a file under ``blocks/`` always holds exactly the bytes of its CID.
Blocks are written to ``tmp/``, fsynced and only then renamed into place, so a
crash leaves at worst a stray temporary file (removed at the next open), never
a block that does not match its name. Readers verify every block anyway
(a disk can rot); ``fsck`` names the ones that do not match.

Writes of many blocks (an ingest) go through ``BlockWriter``, which overlaps
the fsyncs of several blocks on a small thread pool: an fsync costs about a
millisecond here, the same as hashing a 256 KiB chunk.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from node.datadir import fsync_directory
from protocol.cid import Cid
from protocol.content import Block
from protocol.errors import InvalidCid

WRITE_THREADS = 4
WRITES_IN_FLIGHT = 16  # blocks held in memory at most while being written: 4 MiB


class BlockFiles:
    """The ``blocks/`` directory. Thread-safe: every operation is one file op."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        # Shard directories that gained a rename since the last sync_directories().
        self._touched_shards: set[Path] = set()

    def path_of(self, cid: Cid) -> Path:
        name = str(cid)
        return self.root / name[-3:-1] / name

    def has(self, cid: Cid) -> bool:
        return self.path_of(cid).is_file()

    def read(self, cid: Cid) -> bytes:
        """The block's bytes, unverified. Raises ``FileNotFoundError``."""
        return self.path_of(cid).read_bytes()

    def size(self, cid: Cid) -> int:
        return self.path_of(cid).stat().st_size

    def write(self, block: Block) -> bool:
        """Durably store ``block`` unless present. Returns True when written now."""
        final = self.path_of(block.cid)
        if final.is_file():
            return False
        final.parent.mkdir(exist_ok=True)
        partial = self.tmp / f"{final.name}.{os.getpid()}.{threading.get_ident():x}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(block.data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, final)
        self._touched_shards.add(final.parent)
        return True

    def sync_directories(self) -> None:
        """fsync the shard directories renamed into since the last call (makes renames durable)."""
        touched, self._touched_shards = self._touched_shards, set()
        for shard in touched:
            fsync_directory(shard)
        if touched:
            fsync_directory(self.root)

    def delete(self, cid: Cid) -> bool:
        try:
            self.path_of(cid).unlink()
        except FileNotFoundError:
            return False
        return True

    def iter_cids(self) -> Iterator[tuple[Cid | None, Path]]:
        """Every file under ``blocks/``: its CID, or None when the name is not one."""
        for shard in sorted(self.root.iterdir()):
            if not shard.is_dir():
                yield None, shard
                continue
            for path in sorted(shard.iterdir()):
                try:
                    cid = Cid.parse(path.name)
                except InvalidCid:
                    yield None, path
                    continue
                yield (cid if self.path_of(cid) == path else None), path

    def remove_partials_of_dead_processes(self) -> int:
        """Delete half-written files whose writing process is gone (crash leftovers).

        Partial names carry the writer's pid, so a daemon and a CLI command
        sharing the data directory never delete each other's work in progress.
        """
        removed = 0
        for path in self.tmp.glob("*.partial"):
            parts = path.name.split(".")
            pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
            if pid is not None and _process_alive(pid):
                continue
            path.unlink(missing_ok=True)
            removed += 1
        return removed


class BlockWriter:
    """Writes a stream of blocks with several fsyncs in flight, in bounded memory.

    ``put`` blocks once ``WRITES_IN_FLIGHT`` blocks are pending, so the caller
    (the chunker) cannot run ahead of the disk. ``close`` waits for all writes
    and makes the renames durable; an error in any write is raised there or at
    the next ``put``.
    """

    def __init__(self, files: BlockFiles) -> None:
        self._files = files
        self._pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="block-writer")
        self._pending: deque[Future[bool]] = deque()
        self.blocks_written = 0
        self.blocks_present = 0

    def put(self, block: Block) -> None:
        while len(self._pending) >= WRITES_IN_FLIGHT:
            self._collect(self._pending.popleft())
        self._pending.append(self._pool.submit(self._files.write, block))

    def _collect(self, future: Future[bool]) -> None:
        if future.result():
            self.blocks_written += 1
        else:
            self.blocks_present += 1

    def flush(self) -> None:
        """Wait for every pending write and make the renames durable."""
        while self._pending:
            self._collect(self._pending.popleft())
        self._files.sync_directories()

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                self.flush()
        finally:
            for future in self._pending:
                future.cancel()
            with contextlib.suppress(Exception):
                for future in self._pending:
                    if not future.cancelled():
                        future.exception()
            self._pool.shutdown(wait=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
