"""The store: SQLite metadata plus block files; the only owner of the disk.

``Store`` is a blocking, thread-safe object. Code running under trio calls it
through ``trio.to_thread.run_sync`` (never on the event loop); the offline CLI,
which has no event loop, calls it directly. One ``sqlite3`` connection in WAL
mode serves all threads behind a lock; several processes (a daemon and an
offline CLI command) may open the same data directory at once, SQLite and the
write-then-rename block files keep them consistent.

Invariants:
* every record row holds signed bytes that ``decode_record`` accepts, and its
  ``id`` is their CID: records are verified before they are stored;
* a ``blocks`` row is only written after its file is durable, so a row without
  a file (or the reverse, after a crash) is what ``fsck`` reports;
* block bytes are verified against their CID every time they are read.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType

from node.blockstore import BlockFiles
from node.datadir import DataDir
from node.migrations import MIGRATIONS, SCHEMA_VERSION
from protocol.cid import Cid
from protocol.content import Block
from protocol.errors import BlockMismatch, RemoteProtocolError
from protocol.records import (
    Collab,
    Contribution,
    Production,
    Profile,
    RecordType,
    SignedRecord,
    decode_record,
)


class NotFound(Exception):
    """Something the caller named (a record, a block) is not in this store."""

    def __init__(self, what: str, name: object) -> None:
        self.what = what
        self.name = name
        super().__init__(f"unknown {what} {name}")


class MissingBlock(NotFound):
    """A block this store does not have (yet): fetch it from a peer."""

    def __init__(self, cid: Cid) -> None:
        super().__init__("block", cid)
        self.cid = cid


class CorruptBlock(BlockMismatch):
    """A block file on disk does not match its CID (disk rot or tampering)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class FsckReport:
    """What ``Store.fsck`` found; with ``repair`` also what it removed or indexed."""

    blocks_checked: int = 0
    records_checked: int = 0
    corrupt_blocks: list[str] = field(default_factory=list)  # block file != CID
    stray_files: list[str] = field(default_factory=list)  # names that are not block CIDs
    missing_blocks: list[str] = field(default_factory=list)  # indexed, but no file
    bad_records: list[str] = field(default_factory=list)  # signature/encoding/id wrong
    # Valid block files with no index row: what a crash between the fsync of a
    # block and its index transaction leaves. Not damage (the bytes match the
    # CID); ``repair`` or the next ingest of the same content indexes them.
    unindexed_blocks: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def clean(self) -> bool:
        """No damage: every block matches its CID, every indexed block exists, records verify."""
        return self.problems == 0

    @property
    def problems(self) -> int:
        return (
            len(self.corrupt_blocks)
            + len(self.stray_files)
            + len(self.missing_blocks)
            + len(self.bad_records)
        )


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
        self.blocks = BlockFiles(data_dir.blocks, data_dir.tmp)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            data_dir.database, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._closed = False
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self._db.close()
            raise
        self.blocks.remove_partials_of_dead_processes()

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._lock:
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"database schema {version} is newer than this remixnet ({SCHEMA_VERSION})"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                self._db.execute("BEGIN IMMEDIATE")
                for statement in _split_sql(MIGRATIONS[number - 1]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
                self._db.execute("COMMIT")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    # -- records -------------------------------------------------------------

    def put_record(self, record: SignedRecord) -> bool:
        """Store a verified record with its tags and lineage edges.

        Returns False when it was already stored. The record must come from
        ``decode_record`` or ``sign_record`` (both verify it).
        """
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
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO records (id, type, author, created_ms, received_ms,"
                " title, media_type, content, collab, encoded) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    record_id,
                    str(record.type),
                    record.author,
                    record.created_ms,
                    _now_ms(),
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

    def get_record(self, record_id: Cid) -> SignedRecord:
        """The record with this id. Raises ``NotFound``."""
        with self._lock:
            row = self._db.execute(
                "SELECT encoded FROM records WHERE id = ?", (record_id.to_bytes(),)
            ).fetchone()
        if row is None:
            raise NotFound("record", record_id)
        return decode_record(row[0])

    def has_record(self, record_id: Cid) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM records WHERE id = ?", (record_id.to_bytes(),)
                ).fetchone()
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
        with self._lock:
            rows = self._db.execute(
                f"SELECT r.encoded FROM records r{where} ORDER BY r.created_ms DESC, r.id LIMIT ?",
                params,
            ).fetchall()
        return [decode_record(row[0]) for row in rows]

    def records_with_content(self, content: Cid) -> list[Cid]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM records WHERE content = ? ORDER BY created_ms",
                (content.to_bytes(),),
            ).fetchall()
        return [Cid.from_bytes(row[0]) for row in rows]

    def parents_of(self, record_id: Cid) -> list[tuple[Cid, int | None]]:
        """The lineage edges up from a record: (parent id, declared weight)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT parent, weight FROM lineage WHERE child = ? ORDER BY parent",
                (record_id.to_bytes(),),
            ).fetchall()
        return [(Cid.from_bytes(parent), weight) for parent, weight in rows]

    def children_of(self, record_id: Cid) -> list[Cid]:
        """The records that name this one as a parent (its remixes)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT child FROM lineage WHERE parent = ? ORDER BY child",
                (record_id.to_bytes(),),
            ).fetchall()
        return [Cid.from_bytes(row[0]) for row in rows]

    # -- blocks --------------------------------------------------------------

    def index_blocks(self, blocks: Iterable[tuple[Cid, int]]) -> None:
        """Record durable block files in the index (idempotent)."""
        now = _now_ms()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO blocks (cid, size, stored_ms) VALUES (?, ?, ?)",
                [(cid.to_bytes(), size, now) for cid, size in blocks],
            )

    def put_block(self, block: Block) -> None:
        """Verify and durably store one block, then index it."""
        block.cid.verify(block.data)
        self.blocks.write(block)
        self.blocks.sync_directories()
        self.index_blocks([(block.cid, len(block.data))])

    def has_block(self, cid: Cid) -> bool:
        return self.blocks.has(cid) or self.has_record(cid)

    def get_block(self, cid: Cid) -> bytes:
        """The verified bytes of a block (records are blocks too).

        Raises ``MissingBlock`` when absent and ``CorruptBlock`` when the file
        on disk no longer matches its CID.
        """
        try:
            data = self.blocks.read(cid)
        except FileNotFoundError:
            with self._lock:
                row = self._db.execute(
                    "SELECT encoded FROM records WHERE id = ?", (cid.to_bytes(),)
                ).fetchone()
            if row is None:
                raise MissingBlock(cid) from None
            data = row[0]
        if not cid.matches(data):
            raise CorruptBlock("corrupt-block", f"{cid} on disk does not match its CID: run fsck")
        return data

    # -- pins ----------------------------------------------------------------

    def pin(self, root: Cid, reason: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO pins (cid, reason, created_ms) VALUES (?, ?, ?)",
                (root.to_bytes(), reason, _now_ms()),
            )

    def unpin(self, root: Cid) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM pins WHERE cid = ?", (root.to_bytes(),)).rowcount > 0

    def pins(self) -> list[tuple[Cid, str]]:
        with self._lock:
            rows = self._db.execute("SELECT cid, reason FROM pins ORDER BY created_ms").fetchall()
        return [(Cid.from_bytes(cid), reason) for cid, reason in rows]

    # -- checking ------------------------------------------------------------

    def fsck(
        self, *, repair: bool = False, on_progress: Callable[[int], None] | None = None
    ) -> FsckReport:
        """Verify every block file against its CID and every record's signature.

        With ``repair``: delete corrupt blocks and stray files, drop index rows
        whose file is gone, index durable unindexed blocks, delete bad records.
        """
        report = FsckReport(repaired=repair)
        with self._lock:
            indexed = {row[0] for row in self._db.execute("SELECT cid FROM blocks")}
        for cid, path in self.blocks.iter_cids():
            if cid is None:
                report.stray_files.append(str(path))
                if repair:
                    path.unlink(missing_ok=True)
                continue
            report.blocks_checked += 1
            data = path.read_bytes()
            if on_progress is not None:
                on_progress(len(data))
            key = cid.to_bytes()
            if not cid.matches(data):
                report.corrupt_blocks.append(str(cid))
                if repair:
                    path.unlink(missing_ok=True)
                    with self._transaction() as db:
                        db.execute("DELETE FROM blocks WHERE cid = ?", (key,))
                indexed.discard(key)
                continue
            if key in indexed:
                indexed.discard(key)
            else:
                report.unindexed_blocks.append(str(cid))
                if repair:
                    self.index_blocks([(cid, len(data))])
        for key in sorted(indexed):
            report.missing_blocks.append(str(Cid.from_bytes(key)))
            if repair:
                with self._transaction() as db:
                    db.execute("DELETE FROM blocks WHERE cid = ?", (key,))
        for record_key, encoded in self._iter_record_rows():
            report.records_checked += 1
            try:
                ok = decode_record(encoded).id.to_bytes() == record_key
            except RemoteProtocolError:
                ok = False
            if not ok:
                report.bad_records.append(str(Cid.from_bytes(record_key)))
                if repair:
                    with self._transaction() as db:
                        db.execute("DELETE FROM records WHERE id = ?", (record_key,))
        return report

    def _iter_record_rows(self) -> Iterator[tuple[bytes, bytes]]:
        last = b""
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, encoded FROM records WHERE id > ? ORDER BY id LIMIT 500", (last,)
                ).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]

    def statistics(self) -> dict[str, int]:
        """Counts for ``status`` and benchmarks."""
        with self._lock:
            records = self._db.execute("SELECT count(*) FROM records").fetchone()[0]
            blocks, stored = self._db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM blocks"
            ).fetchone()
            pins = self._db.execute("SELECT count(*) FROM pins").fetchone()[0]
        return {"records": records, "blocks": blocks, "block_bytes": stored, "pins": pins}


class _Transaction:
    """``with store._transaction() as db``: BEGIN IMMEDIATE … COMMIT under the lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._db.execute("COMMIT" if exc is None else "ROLLBACK")
        finally:
            self._lock.release()


def _split_sql(script: str) -> list[str]:
    """Statements of a migration script (ours: no ';' inside literals)."""
    statements = []
    for chunk in script.split(";"):
        lines = [line.split("--", 1)[0] for line in chunk.splitlines()]
        statement = "\n".join(lines).strip()
        if statement:
            statements.append(statement)
    return statements


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
