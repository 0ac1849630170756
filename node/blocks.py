"""Content blocks: pack files on disk plus their index in the database.

Owns the ``packs`` and ``blocks`` tables and the pack files (``node.packs``).
Invariants:
* an index row points only at pack bytes that were fsynced before the row
  was written, in the transaction that raised the pack's ``committed_size``;
* each process appends to one pack at a time, which it holds flocked;
* bytes are verified against their CID on every read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType

from node.database import Database, now_ms
from node.errors import CorruptBlock, MissingBlock
from node.packs import ENTRY_HEADER, PackAppender, PackFiles
from protocol.cid import Cid
from protocol.content import Block

PACK_ROLL_SIZE = 1 << 30  # start a new pack past 1 GiB
RETIRED = -1  # committed_size of a pack a compaction replaced: its file is to be deleted
COMMIT_BYTES = 64 << 20  # a BlockWriter fsyncs and indexes at least this often


class BlockWriter:
    """Stores a stream of blocks with one fsync per ``COMMIT_BYTES``, in bounded memory.

    ``put`` appends to the pack (deduplicating against the index and this
    batch); ``commit`` (automatic every ``COMMIT_BYTES`` and on a clean exit)
    makes them durable and indexes them. Blocks must already be verified (the
    DAG builder made them, or the caller checked them against their CID).
    """

    def __init__(self, blocks: BlockStore) -> None:
        self._blocks = blocks
        self._pending: list[tuple[bytes, int, int, int]] = []
        self._pending_cids: set[bytes] = set()
        self._pending_bytes = 0
        self.blocks_written = 0
        self.blocks_present = 0

    def put(self, block: Block) -> bool:
        """Append ``block`` unless stored already. Returns True when it was new."""
        key = block.cid.to_bytes()
        if key in self._pending_cids or self._blocks.has(block.cid):
            self.blocks_present += 1
            return False
        pack_id, offset = self._blocks._append(block)
        self._pending.append((key, pack_id, offset, len(block.data)))
        self._pending_cids.add(key)
        self._pending_bytes += len(block.data)
        self.blocks_written += 1
        if self._pending_bytes >= COMMIT_BYTES:
            self.commit()
        return True

    def commit(self) -> None:
        if self._pending:
            self._blocks._commit(self._pending)
        self._pending = []
        self._pending_cids = set()
        self._pending_bytes = 0

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.commit()


class BlockStore:
    """Content blocks of one data directory. Thread-safe."""

    def __init__(self, database: Database, packs: PackFiles) -> None:
        self._database = database
        self.packs = packs
        # Appending: one appender per process, shared by every writer.
        self._write_lock = threading.Lock()
        self._appender: PackAppender | None = None
        self._appender_id = 0

    def close(self) -> None:
        with self._write_lock:
            if self._appender is not None:
                self._appender.close()
                self._appender = None
        self.packs.close()

    def writer(self) -> BlockWriter:
        """A batch writer: ``with blocks.writer() as writer: writer.put(block)``."""
        return BlockWriter(self)

    def put(self, block: Block) -> bool:
        """Verify and durably store one block. Returns False when it was already stored."""
        return self.put_many([block]) == 1

    def put_many(self, blocks: Iterable[Block]) -> int:
        """Verify and durably store blocks (one fsync for all). Returns how many were new."""
        with self.writer() as writer:
            new = 0
            for block in blocks:
                block.cid.verify(block.data)
                new += writer.put(block)
            return new

    def has(self, cid: Cid) -> bool:
        return (
            self._database.query_one("SELECT 1 FROM blocks WHERE cid = ?", (cid.to_bytes(),))
            is not None
        )

    def get(self, cid: Cid) -> bytes:
        """The verified bytes of a block.

        Raises ``MissingBlock`` when it is not indexed and ``CorruptBlock`` when
        the bytes on disk no longer match the CID.
        """
        # A compaction (fsck --repair, gc) may move the block, or gc delete it, between
        # the lookup and the read: look again, and only call it damage when it stays put.
        last: tuple[str, int, int] | None = None
        for _attempt in range(3):
            row = self._database.query_one(
                "SELECT p.name, b.offset, b.size FROM blocks b JOIN packs p ON p.id = b.pack"
                " WHERE b.cid = ?",
                (cid.to_bytes(),),
            )
            if row is None:
                raise MissingBlock(cid)
            if row == last:
                break
            last = name, offset, size = row
            try:
                data = self.packs.read(name, offset, size)
            except OSError:  # gone, or its reader closed by a compaction meanwhile
                continue
            if cid.matches(data):
                return data
        if last is not None and self.packs.path_of(last[0]).exists():
            raise CorruptBlock("corrupt-block", f"{cid} on disk does not match its CID: run fsck")
        raise CorruptBlock("corrupt-block", f"{cid}: its pack is gone: run fsck")

    def delete(self, cids: Iterable[Cid]) -> int:
        """Forget blocks; ``compact`` reclaims their space. Returns how many were indexed."""
        with self._database.transaction() as db:
            return sum(
                db.execute("DELETE FROM blocks WHERE cid = ?", (cid.to_bytes(),)).rowcount
                for cid in cids
            )

    def compact(self, names: Iterable[str]) -> int:
        """Rewrite packs keeping only their indexed, valid blocks; returns bytes reclaimed.

        A pack another process is appending to is skipped. The copy is fsynced
        and the index moved to it in one transaction before the old file is
        removed, so a crash at any point leaves every indexed block readable.
        """
        reclaimed = 0
        for name in names:
            with self._write_lock:
                if self._appender is not None and self._appender.name == name:
                    self._sync_appender()  # our own pack: seal it, a new one is picked next
                    self._appender.close()
                    self._appender = None
            if not self.packs.path_of(name).exists():
                continue  # (opening it to lock it would create it)
            old = self.packs.open_appender(name)  # the lock keeps appenders away
            if old is None:
                continue
            try:
                reclaimed += self._compact_locked(name)
            finally:
                old.close()
        return reclaimed

    def _compact_locked(self, name: str) -> int:
        row = self._database.query_one(
            "SELECT id FROM packs WHERE name = ? AND committed_size >= 0", (name,)
        )
        if row is None:
            return 0
        (old_id,) = row
        old_size = self.packs.path_of(name).stat().st_size
        live = self._database.query(
            "SELECT cid, offset, size FROM blocks WHERE pack = ? ORDER BY offset", (old_id,)
        )
        new_id, new = self._create_pack()
        try:
            moves: list[tuple[int, int, bytes]] = []
            dropped: list[bytes] = []
            for key, offset, size in live:
                cid = Cid.from_bytes(key)
                try:
                    data = self.packs.read(name, offset, size)
                except FileNotFoundError:
                    data = b""
                if not cid.matches(data):
                    dropped.append(key)
                    continue
                moves.append((new_id, new.append(cid, data), key))
            new.sync()
            with self._database.transaction() as db:
                db.execute("UPDATE packs SET committed_size = ? WHERE id = ?", (new.size, new_id))
                db.executemany("UPDATE blocks SET pack = ?, offset = ? WHERE cid = ?", moves)
                db.executemany("DELETE FROM blocks WHERE cid = ?", [(key,) for key in dropped])
                # Retired, not deleted: a crash before the unlink below must not leave a
                # file that no row names (fsck would call it stray).
                db.execute("UPDATE packs SET committed_size = ? WHERE id = ?", (RETIRED, old_id))
                if not moves:
                    db.execute(
                        "UPDATE packs SET committed_size = ? WHERE id = ?", (RETIRED, new_id)
                    )
            reclaimed = old_size - (new.size if moves else 0)
        finally:
            new.close()
        self.packs.forget(name)
        self.drop_retired()
        return reclaimed

    def drop_retired(self) -> int:
        """Delete the files of retired packs, then their rows; returns how many were dropped.

        Retired packs are what a compaction replaced; a crash may leave them behind.
        """
        rows = self._database.query("SELECT name FROM packs WHERE committed_size < 0")
        for (name,) in rows:
            self.packs.forget(name)
            self.packs.path_of(name).unlink(missing_ok=True)
        if rows:
            self._database.execute_many(
                "DELETE FROM packs WHERE name = ? AND committed_size < 0", rows
            )
        return len(rows)

    def used_bytes(self) -> int:
        """Bytes the packs hold up to their committed ends (what the storage quota counts)."""
        row = self._database.query_one(
            "SELECT coalesce(sum(committed_size), 0) FROM packs WHERE committed_size > 0"
        )
        return int(row[0])

    def pack_usage(self) -> list[tuple[str, int, int]]:
        """Per live pack: (name, committed size, bytes of its indexed entries with headers)."""
        rows = self._database.query(
            "SELECT p.name, p.committed_size,"
            " coalesce(sum(b.size + length(b.cid) + ?), 0)"
            " FROM packs p LEFT JOIN blocks b ON b.pack = p.id"
            " WHERE p.committed_size >= 0 GROUP BY p.id ORDER BY p.id",
            (ENTRY_HEADER.size,),
        )
        return [(name, committed, live) for name, committed, live in rows]

    def statistics(self) -> dict[str, int]:
        blocks, stored = self._database.query_one(
            "SELECT count(*), coalesce(sum(size), 0) FROM blocks"
        )
        packs = self._database.query_one("SELECT count(*) FROM packs WHERE committed_size >= 0")[0]
        return {"blocks": blocks, "block_bytes": stored, "packs": packs}

    def _append(self, block: Block) -> tuple[int, int]:
        """Append a block to this process's pack; returns (pack id, data offset)."""
        with self._write_lock:
            appender = self._appender
            if appender is None or appender.size >= PACK_ROLL_SIZE:
                appender = self._next_appender()
            return self._appender_id, appender.append(block.cid, block.data)

    def _next_appender(self) -> PackAppender:
        """Seal the current pack (if any) and lock a pack with room, or create one."""
        if self._appender is not None:
            self._sync_appender()
            self._appender.close()
            self._appender = None
        candidates = self._database.query(
            "SELECT id, name FROM packs WHERE committed_size >= 0 AND committed_size < ?"
            " ORDER BY committed_size DESC",
            (PACK_ROLL_SIZE,),
        )
        for pack_id, name in candidates:
            appender = self.packs.open_appender(name)
            if appender is None:
                continue  # another process appends to it
            row = self._database.query_one(
                "SELECT committed_size FROM packs WHERE id = ?", (pack_id,)
            )
            if row is None:  # compacted away meanwhile
                appender.close()
                continue
            appender.start_at(row[0])  # read under the lock: nobody else can raise it now
            self._appender, self._appender_id = appender, pack_id
            return appender
        pack_id, appender = self._create_pack()
        self._appender, self._appender_id = appender, pack_id
        return appender

    def _create_pack(self) -> tuple[int, PackAppender]:
        """A new, empty, locked pack and its id."""
        name = self.packs.new_name()
        with self._database.transaction() as db:  # the row comes first: fsck sees no stray file
            pack_id = db.execute(
                "INSERT INTO packs (name, committed_size, created_ms) VALUES (?, 0, ?)",
                (name, now_ms()),
            ).lastrowid
        appender = self.packs.open_appender(name)
        assert appender is not None  # a fresh random name
        assert pack_id is not None
        appender.start_at(0)
        return pack_id, appender

    def _sync_appender(self) -> None:
        """fsync the current pack and record everything in it as committed."""
        appender = self._appender
        if appender is None:
            return
        appender.sync()
        with self._database.transaction() as db:
            db.execute(
                "UPDATE packs SET committed_size = ? WHERE id = ?",
                (appender.size, self._appender_id),
            )

    def _commit(self, entries: list[tuple[bytes, int, int, int]]) -> None:
        """Make appended entries durable, then index them: (cid, pack id, offset, size)."""
        with self._write_lock:
            current = self._appender is not None and any(
                entry[1] == self._appender_id for entry in entries
            )
            if current:
                assert self._appender is not None
                self._appender.sync()
            # (entries of packs sealed since were fsynced when their pack was sealed)
            now = now_ms()
            with self._database.transaction() as db:
                if current:
                    assert self._appender is not None
                    db.execute(
                        "UPDATE packs SET committed_size = ? WHERE id = ?",
                        (self._appender.size, self._appender_id),
                    )
                db.executemany(
                    "INSERT OR IGNORE INTO blocks (cid, pack, offset, size, stored_ms)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(*entry, now) for entry in entries],
                )
