"""The store: the only owner of a data directory's disk.

``Store`` joins the database (records, lineage, pins: this module) and the
content blocks (``node.blocks``, pack files). It is blocking and thread-safe:
code under trio calls it through ``trio.to_thread.run_sync`` (never on the
event loop); the offline CLI, which has no event loop, calls it directly.
Several processes (a daemon and an offline CLI command) may open one data
directory at once: SQLite serialises their transactions and each process
appends to its own flocked pack.

Invariants:
* every record row holds signed bytes that ``decode_record`` accepts, and its
  ``id`` is their CID: records are verified before they are stored; read
  back, they are checked against that id (``load_stored_record``), not
  verified again (fsck does that);
* a block index row points only at fsynced pack bytes (see ``node.blocks``);
* block bytes are verified against their CID every time they are read.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from node.blocks import BlockStore, BlockWriter
from node.database import Database, now_ms
from node.datadir import DataDir
from node.errors import CorruptBlock, MissingBlock, NotFound
from node.leases import QuotaExceeded, StoreGuard
from node.packs import PackFiles
from protocol.cid import Cid
from protocol.content import Block
from protocol.records import (
    Collab,
    Contribution,
    Production,
    Profile,
    RecordType,
    SignedRecord,
    load_stored_record,
)

if TYPE_CHECKING:
    from node.fsck import FsckReport
    from node.gc import GcReport

__all__ = [
    "CorruptBlock",
    "MissingBlock",
    "NotFound",
    "NotHeld",
    "QuotaExceeded",
    "RecordFilter",
    "Store",
]


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Criteria of ``Store.list_records``; None means any."""

    author: bytes | None = None
    tag: str | None = None
    media_type: str | None = None  # exact, or "image/*" for a whole top-level type
    record_type: RecordType | None = None
    collab: Cid | None = None
    title_contains: str | None = None
    limit: int = 100


class Store:
    """Records, lineage, pins and blocks of one data directory. Thread-safe."""

    def __init__(self, data_dir: DataDir) -> None:
        data_dir.require_initialised()
        self.data_dir = data_dir
        self.database = Database(data_dir.database)
        self.blocks = BlockStore(self.database, PackFiles(data_dir.blocks))
        # Leases, writers and the store lock that garbage collection respects (node.leases).
        self.guard = StoreGuard(data_dir.root)
        self.quota = 0  # bytes the packs may hold; 0: no limit (the daemon sets it from config)
        # Called (in the writer's thread) when storing would exceed the quota: the daemon
        # collects garbage there.
        self.on_full: Callable[[], None] | None = None
        self._gc_lock = threading.Lock()  # one collection at a time

    def close(self) -> None:
        self.blocks.close()
        self.database.close()
        self.guard.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- records -------------------------------------------------------------

    def put_record(self, record: SignedRecord) -> bool:
        """Store a verified record with its tags and lineage edges.

        Returns False when it was already stored. The record must come from
        ``decode_record`` or ``sign_record`` (both verify it).
        """
        with self.database.transaction() as db:
            return _insert_record(db, record)

    def put_records(self, records: Sequence[SignedRecord]) -> list[bool]:
        """``put_record`` of each record, all in one transaction (one fsync, not one each).

        Returns, for each record, False when it was already stored. Gossip and
        sync store what peers send in batches through this.
        """
        with self.database.transaction() as db:
            return [_insert_record(db, record) for record in records]

    def get_record(self, record_id: Cid) -> SignedRecord:
        """The record with this id. Raises ``NotFound``."""
        row = self.database.query_one(
            "SELECT encoded FROM records WHERE id = ?", (record_id.to_bytes(),)
        )
        if row is None:
            raise NotFound("record", record_id)
        return load_stored_record(row[0], record_id.to_bytes())

    def has_record(self, record_id: Cid) -> bool:
        return (
            self.database.query_one("SELECT 1 FROM records WHERE id = ?", (record_id.to_bytes(),))
            is not None
        )

    def list_records(self, criteria: RecordFilter) -> list[SignedRecord]:
        """Records matching every given criterion, newest first."""
        clauses: list[str] = []
        params: list[object] = []
        if criteria.author is not None:
            clauses.append("r.author = ?")
            params.append(criteria.author)
        if criteria.record_type is not None:
            clauses.append("r.type = ?")
            params.append(str(criteria.record_type))
        if criteria.media_type is not None:
            if criteria.media_type.endswith("/*"):
                clauses.append("r.media_type LIKE ? ESCAPE '\\'")
                params.append(_like_escape(criteria.media_type[:-1]) + "%")
            else:
                clauses.append("r.media_type = ?")
                params.append(criteria.media_type)
        if criteria.tag is not None:
            clauses.append("r.id IN (SELECT record_id FROM record_tags WHERE tag = ?)")
            params.append(criteria.tag)
        if criteria.collab is not None:
            clauses.append("r.collab = ?")
            params.append(criteria.collab.to_bytes())
        if criteria.title_contains is not None:
            clauses.append("r.title LIKE ? ESCAPE '\\'")
            params.append("%" + _like_escape(criteria.title_contains) + "%")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(criteria.limit)
        rows = self.database.query(
            f"SELECT r.id, r.encoded FROM records r{where}"
            " ORDER BY r.created_ms DESC, r.id LIMIT ?",
            params,
        )
        return [load_stored_record(encoded, record_id) for record_id, encoded in rows]

    def records_with_content(self, content: Cid) -> list[Cid]:
        rows = self.database.query(
            "SELECT id FROM records WHERE content = ? ORDER BY created_ms",
            (content.to_bytes(),),
        )
        return [Cid.from_bytes(row[0]) for row in rows]

    def parents_of(self, record_id: Cid) -> list[tuple[Cid, int | None]]:
        """The lineage edges up from a record: (parent id, declared weight)."""
        rows = self.database.query(
            "SELECT parent, weight FROM lineage WHERE child = ? ORDER BY parent",
            (record_id.to_bytes(),),
        )
        return [(Cid.from_bytes(parent), weight) for parent, weight in rows]

    def children_of(self, record_id: Cid) -> list[Cid]:
        """The records that name this one as a parent (its remixes)."""
        rows = self.database.query(
            "SELECT child FROM lineage WHERE parent = ? ORDER BY child",
            (record_id.to_bytes(),),
        )
        return [Cid.from_bytes(row[0]) for row in rows]

    # -- blocks (records are blocks too) --------------------------------------

    def writer(self, *, reserve: int = 0) -> _GuardedWriter:
        """A batch writer for content blocks: ``with store.writer() as writer: writer.put(b)``.

        Garbage collection waits while it is open and keeps what it stores
        (``node.leases``). ``reserve``: bytes about to be stored that must fit
        in the quota; raises ``QuotaExceeded`` when they do not, even after
        ``on_full`` (garbage collection) ran.
        """
        if reserve > 0:
            self.check_room(reserve)
        return _GuardedWriter(self)

    def check_room(self, wanted: int) -> None:
        """Raise ``QuotaExceeded`` unless ``wanted`` more bytes fit in the quota (after GC)."""
        if not self.quota or self.blocks.used_bytes() + wanted <= self.quota:
            return
        if self.on_full is not None:
            self.on_full()
        used = self.blocks.used_bytes()
        if used + wanted > self.quota:
            raise QuotaExceeded(self.quota, used, wanted)

    def put_block(self, block: Block) -> bool:
        """Verify and durably store one block. Returns False when it was already stored."""
        with self.guard.writing():
            return self.blocks.put(block)

    def put_blocks(self, blocks: Iterable[Block]) -> int:
        """Verify and durably store blocks with one fsync. Returns how many were new."""
        with self.guard.writing():
            return self.blocks.put_many(blocks)

    def has_block(self, cid: Cid) -> bool:
        return self.blocks.has(cid) or self.has_record(cid)

    def get_block(self, cid: Cid) -> bytes:
        """The verified bytes of a content block or of a record.

        Raises ``MissingBlock`` when absent and ``CorruptBlock`` when the bytes
        on disk no longer match the CID.
        """
        try:
            return self.blocks.get(cid)
        except MissingBlock:
            row = self.database.query_one(
                "SELECT encoded FROM records WHERE id = ?", (cid.to_bytes(),)
            )
            if row is None:
                raise
            return bytes(row[0])

    def delete_blocks(self, cids: Iterable[Cid]) -> int:
        return self.blocks.delete(cids)

    # -- pins ----------------------------------------------------------------

    def pin(self, root: Cid, reason: str) -> None:
        """Keep the DAG under ``root`` from garbage collection (see ``pin_held`` to check it)."""
        with self.database.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO pins (cid, reason, created_ms) VALUES (?, ?, ?)",
                (root.to_bytes(), reason, now_ms()),
            )

    def unpin(self, root: Cid) -> bool:
        with self.database.transaction() as db:
            return db.execute("DELETE FROM pins WHERE cid = ?", (root.to_bytes(),)).rowcount > 0

    def pins(self) -> list[tuple[Cid, str]]:
        rows = self.database.query("SELECT cid, reason FROM pins ORDER BY created_ms")
        return [(Cid.from_bytes(cid), reason) for cid, reason in rows]

    def pin_held(self, cid: Cid, reason: str) -> PinResult:
        """Pin ``cid`` (a content CID, or a record id: its content) if every block is here.

        Raises ``NotFound`` for an unknown record or content; ``NotHeld`` when
        blocks are missing (then nothing is pinned). Runs as a writer, so a
        collection cannot remove the blocks between the check and the pin.
        """
        from node.gc import missing_blocks

        with self.guard.writing():
            root, record_id = self._content_of(cid)
            missing = missing_blocks(self, root)
            if missing:
                raise NotHeld(root, missing)
            with self.database.transaction() as db:
                new = (
                    db.execute(
                        "INSERT OR IGNORE INTO pins (cid, reason, created_ms) VALUES (?, ?, ?)",
                        (root.to_bytes(), reason, now_ms()),
                    ).rowcount
                    > 0
                )
        return PinResult(root, record_id, new)

    def unpin_content(self, cid: Cid) -> PinResult:
        """Unpin ``cid`` (or the content of the record ``cid``); ``NotFound`` if not pinned."""
        root, record_id = cid, None
        if not self.unpin(cid):
            root, record_id = self._content_of(cid)
            if record_id is None or not self.unpin(root):
                raise NotFound("pin", cid)
        return PinResult(root, record_id, True)

    def _content_of(self, cid: Cid) -> tuple[Cid, Cid | None]:
        """(content root, record id or None) for a record id or a content CID held here."""
        row = self.database.query_one("SELECT content FROM records WHERE id = ?", (cid.to_bytes(),))
        if row is not None:
            if row[0] is None:
                raise NotFound("content of record", cid)
            return Cid.from_bytes(row[0]), cid
        if not self.blocks.has(cid):
            raise NotFound("content", cid)
        return cid, None

    # -- garbage collection --------------------------------------------------

    def collect_garbage(
        self, *, wait: float = 30.0, on_progress: Callable[[int], None] | None = None
    ) -> GcReport:
        """Delete blocks no pin or lease needs and reclaim their space; see ``node.gc``.

        Raises ``StoreBusy`` when the store is not free within ``wait`` seconds.
        """
        from node.gc import collect_garbage

        with self._gc_lock:
            return collect_garbage(self, wait=wait, on_progress=on_progress)

    # -- checking ------------------------------------------------------------

    def fsck(
        self, *, repair: bool = False, on_progress: Callable[[int], None] | None = None
    ) -> FsckReport:
        """Verify every block and record; see ``node.fsck``."""
        from node.fsck import check_store

        return check_store(self, repair=repair, on_progress=on_progress)

    def iter_record_rows(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (id, encoded) record row, a page at a time."""
        last = b""
        while True:
            rows = self.database.query(
                "SELECT id, encoded FROM records WHERE id > ? ORDER BY id LIMIT 500", (last,)
            )
            if not rows:
                return
            yield from rows
            last = rows[-1][0]

    def statistics(self) -> dict[str, int]:
        """Counts for ``status`` and benchmarks."""
        records = self.database.query_one("SELECT count(*) FROM records")[0]
        pins = self.database.query_one("SELECT count(*) FROM pins")[0]
        return {
            "records": records,
            "pins": pins,
            **self.blocks.statistics(),
            "used_bytes": self.blocks.used_bytes(),
            "quota": self.quota,
        }


@dataclass(frozen=True, slots=True)
class PinResult:
    root: Cid  # the content pinned or unpinned
    record_id: Cid | None  # the record whose content it is, when a record id was given
    changed: bool  # False: it was pinned already

    def to_json(self) -> dict[str, object]:
        """As ``pins.add`` / ``pins.rm`` return it."""
        return {
            "cid": str(self.root),
            "record": str(self.record_id) if self.record_id is not None else None,
            "changed": self.changed,
        }


class NotHeld(NotFound):
    """Content that cannot be pinned because blocks of it are not in the store."""

    def __init__(self, root: Cid, missing: int) -> None:
        super().__init__("content", root)
        self.root, self.missing = root, missing
        self.args = (
            f"{root}: not held fully here (at least {missing} block(s) missing);"
            " fetch it first with `remixnet get`",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class _GuardedWriter:
    """``Store.writer()``: a ``BlockWriter`` inside ``StoreGuard.writing()``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._writing = store.guard.writing()
        self._writer: BlockWriter | None = None

    def __enter__(self) -> BlockWriter:
        self._writing.__enter__()
        try:
            self._writer = self._store.blocks.writer().__enter__()
        except BaseException:
            self._writing.__exit__(None, None, None)
            raise
        return self._writer

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            assert self._writer is not None
            self._writer.__exit__(exc_type, exc, traceback)
        finally:
            self._writing.__exit__(exc_type, exc, traceback)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _insert_record(db: sqlite3.Connection, record: SignedRecord) -> bool:
    """Insert ``record`` (and its tags and lineage edges) in the open transaction ``db``."""
    body = record.body
    title: str | None = None
    media_type: str | None = None
    content: bytes | None = None
    collab: bytes | None = None
    tags: tuple[str, ...] = ()
    parents: list[tuple[bytes, int | None]] = []
    if isinstance(body, Contribution):
        title, media_type, content = body.title, body.media_type, body.content.to_bytes()
        collab = body.collab.to_bytes() if body.collab else None
        tags = body.tags
        parents = [(p.record_id.to_bytes(), p.weight) for p in body.parents]
    elif isinstance(body, Collab | Production):
        title = body.title
        if isinstance(body, Production) and body.collab:
            collab = body.collab.to_bytes()
    elif isinstance(body, Profile):
        title = body.name
    record_id = record.id.to_bytes()
    inserted = db.execute(
        "INSERT OR IGNORE INTO records (id, type, author, created_ms, received_ms,"
        " title, media_type, content, collab, encoded) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            record_id,
            str(record.type),
            record.author,
            record.created_ms,
            now_ms(),
            title,
            media_type,
            content,
            collab,
            record.encoded,
        ),
    ).rowcount
    if not inserted:
        return False
    db.executemany(
        "INSERT OR IGNORE INTO record_tags (tag, record_id) VALUES (?, ?)",
        [(tag, record_id) for tag in tags],
    )
    db.executemany(
        "INSERT OR IGNORE INTO lineage (child, parent, weight) VALUES (?, ?, ?)",
        [(record_id, parent, weight) for parent, weight in parents],
    )
    return True
