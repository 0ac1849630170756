"""What garbage collection must leave alone while other work runs: leases and the store lock.

Garbage collection (``node.gc``) deletes every block that no pin reaches.
Blocks that some operation is about to pin, or is reading, are not reached by
any pin yet; this module is how those operations tell the collector:

* a **fetch lease** (``StoreGuard.fetching(root)``): every block reachable
  from ``root`` through blocks the store holds is kept while the fetch runs
  and for ``grace`` seconds after it ends (time for its caller to pin or read
  what it fetched);
* a **writer** (``StoreGuard.writing()``, which ``Store.writer()`` enters):
  the collector never runs while a writer is open in this process, and keeps
  every block stored since the start of a writer that is open or closed less
  than ``grace`` seconds ago (``add`` pins its root just after its writer
  closes);
* across processes, the **store lock**: every process that opens the store
  holds a shared ``flock`` on ``DATA_DIR/store.lock`` as long as it is open;
  the collector needs it exclusively, so it never runs while another process
  (an offline ``remixnet add``, say) has the store open.

Why this is enough for a fetch: a fetch only finds a block "already stored"
after storing or finding its parent, so every block it relies on is reachable
from its root through held blocks, and the collector marks exactly those
while no writer can run; a block deleted before the fetch looked is simply
fetched. Everything here is bounded: the collector waits for the locks at
most as long as its caller says, then gives up with ``StoreBusy``.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from protocol.cid import Cid

LOCK_FILE = "store.lock"
DEFAULT_GRACE_SECONDS = 60.0
_POLL_SECONDS = 0.05


class StoreBusy(Exception):
    """The collector could not get the store to itself in time (another process or writer)."""


class QuotaExceeded(Exception):
    """Storing more would exceed the storage quota, even after garbage collection."""

    def __init__(self, quota: int, used: int, wanted: int) -> None:
        self.quota, self.used, self.wanted = quota, used, wanted
        super().__init__(
            f"storage quota of {format_bytes(quota)} reached ({format_bytes(used)} used,"
            f" {format_bytes(wanted)} more wanted): unpin something and run `remixnet gc`,"
            " or raise [storage] quota"
        )


def format_bytes(count: int) -> str:
    """``52428800`` -> ``50 MiB`` (exact binary units when they fit, else one decimal)."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if size == int(size) else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class StoreGuard:
    """The leases, writers and locks of one open store (one per ``Store``). Thread-safe."""

    def __init__(self, data_dir_root: Path, *, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        self.grace = grace
        self._condition = threading.Condition()
        self._writers = 0  # writers open now (nesting in one thread counts once)
        self._collecting = False
        self._collector_waiting = 0
        self._depth = threading.local()  # per thread: writers nested in this thread
        self._writer_starts: dict[int, float] = {}  # open writer -> wall-clock start (ms)
        self._recent_starts: list[tuple[float, float]] = []  # (closed at, start ms)
        self._leases: dict[int, Cid] = {}
        self._recent_leases: list[tuple[float, Cid]] = []  # (ended at, root)
        self._ids = itertools.count()
        self._lock_fd = os.open(data_dir_root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)  # released by close (or by the kernel on a crash)

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- what other work calls ----------------------------------------------------

    @contextmanager
    def fetching(self, root: Cid) -> Iterator[None]:
        """Keep the DAG under ``root`` (as far as held) while this runs, and ``grace`` after."""
        with self._condition:
            lease = next(self._ids)
            self._leases[lease] = root
        try:
            yield
        finally:
            with self._condition:
                del self._leases[lease]
                self._recent_leases.append((time.monotonic(), root))

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold off the collector while blocks are being stored by this thread."""
        depth = getattr(self._depth, "value", 0)
        if depth:  # nested in this thread: the outer writer holds it already
            self._depth.value = depth + 1
            try:
                yield
            finally:
                self._depth.value = depth
            return
        with self._condition:
            while self._collecting or self._collector_waiting:
                self._condition.wait()
            self._writers += 1
            writer = next(self._ids)
            self._writer_starts[writer] = time.time() * 1000
        self._depth.value = 1
        try:
            yield
        finally:
            self._depth.value = 0
            with self._condition:
                self._writers -= 1
                start = self._writer_starts.pop(writer)
                self._recent_starts.append((time.monotonic(), start))
                self._condition.notify_all()

    # -- what the collector calls -------------------------------------------------

    @contextmanager
    def collecting(self, wait: float) -> Iterator[Collection]:
        """The store to the collector alone: no writer here, no other process with it open.

        Waits at most ``wait`` seconds, then raises ``StoreBusy``. Other
        processes are waited for first, so that writers here are held off only
        while this process's own writers finish.
        """
        deadline = time.monotonic() + wait
        self._lock_exclusive(deadline)
        try:
            with self._condition:
                self._collector_waiting += 1
                try:
                    while self._writers or self._collecting:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise StoreBusy(
                                "the store is busy writing in this process; try again later"
                            )
                        self._condition.wait(remaining)
                    self._collecting = True
                finally:
                    self._collector_waiting -= 1
                    self._condition.notify_all()  # writers held off by our waiting may go on
            try:
                yield self._collection()
            finally:
                with self._condition:
                    self._collecting = False
                    self._condition.notify_all()
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)

    def _lock_exclusive(self, deadline: float) -> None:
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                # A failed conversion may have dropped the shared lock: take it back.
                fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            if time.monotonic() >= deadline:
                raise StoreBusy(
                    "another process has the store open (a running daemon? then run"
                    " `remixnet gc` without --offline); try again when it has finished"
                )
            time.sleep(_POLL_SECONDS)

    def _collection(self) -> Collection:
        """What to keep besides pinned blocks, as of now (called with the store to ourselves)."""
        now = time.monotonic()
        with self._condition:
            self._recent_leases = [(t, r) for t, r in self._recent_leases if now - t < self.grace]
            self._recent_starts = [(t, s) for t, s in self._recent_starts if now - t < self.grace]
            roots = list(self._leases.values()) + [root for _, root in self._recent_leases]
            starts = [start for _, start in self._recent_starts]
        return Collection(tuple(dict.fromkeys(roots)), min(starts) if starts else None)


@dataclass(frozen=True, slots=True)
class Collection:
    """What the collector keeps besides pins: lease roots, and blocks stored since a time."""

    lease_roots: tuple[Cid, ...]
    stored_since_ms: float | None  # keep blocks stored at or after this; None: no such writer
