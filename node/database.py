"""The SQLite database of a data directory: one connection, a lock, migrations.

One ``sqlite3`` connection in WAL mode (``synchronous = FULL``: a committed
transaction survives a power cut) serves every thread behind a re-entrant
lock, so trio worker threads and the offline CLI share it. Several processes
(a daemon and a CLI command) may open the same database at once: SQLite
serialises their writers (``BEGIN IMMEDIATE`` with a busy timeout).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from node.migrations import MIGRATIONS, SCHEMA_VERSION


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Database:
    """A thread-safe SQLite connection, migrated to ``SCHEMA_VERSION`` on open."""

    def __init__(self, path: Path) -> None:
        self.lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._closed = False
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self.lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _migrate(self) -> None:
        with self.lock:
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

    def transaction(self) -> Transaction:
        """``with database.transaction() as db``: BEGIN IMMEDIATE … COMMIT (ROLLBACK on error)."""
        return Transaction(self._db, self.lock)

    def query(self, sql: str, parameters: Iterable[object] = ()) -> list[Any]:
        """All rows of a read query."""
        with self.lock:
            return self._db.execute(sql, tuple(parameters)).fetchall()

    def query_one(self, sql: str, parameters: Iterable[object] = ()) -> Any:
        """The first row of a read query, or None."""
        with self.lock:
            return self._db.execute(sql, tuple(parameters)).fetchone()

    def execute_many(self, sql: str, rows: Iterable[Iterable[object]]) -> None:
        """One statement over many parameter rows, in one transaction."""
        with self.transaction() as db:
            db.executemany(sql, [tuple(row) for row in rows])


class Transaction:
    """``with database.transaction() as db``: BEGIN IMMEDIATE … COMMIT under the lock."""

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
