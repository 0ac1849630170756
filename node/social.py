"""Follows, notifications, the feed and profiles: the social tables of the store.

This module owns the ``follows`` and ``notifications`` tables (migration 2)
and ``followed_collabs`` (migration 3).
Every function is blocking (SQLite): the daemon calls them through
``trio.to_thread.run_sync``; the CLI calls them directly when no daemon runs.

Invariants:

* a notification is created at most once per (kind, record, subject): a
  record arriving twice (gossip, then sync) notifies once;
* a "remix" notification exists only for a contribution whose parents name
  a record of ``me`` that this store holds, and never for one of ``me``'s
  own records (remixing yourself is not news);
* the newest profile by ``created_ms`` is an author's profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.database import now_ms
from node.store import RecordFilter, Store
from protocol.cid import Cid
from protocol.identity import author_id
from protocol.records import (
    Contribution,
    Profile,
    RecordType,
    SignedRecord,
    load_stored_record,
)

REMIX = "remix"


@dataclass(frozen=True, slots=True)
class Notification:
    """Something that happened to this node's records."""

    id: int
    kind: str  # "remix"
    record_id: Cid  # the record that caused it (the remix)
    subject_id: Cid  # our record it concerns (the parent)
    created_ms: int  # when this node learned of it
    read: bool

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "record": str(self.record_id),
            "subject": str(self.subject_id),
            "created_ms": self.created_ms,
            "read": self.read,
        }


# -- follows -----------------------------------------------------------------


def follow(store: Store, author: bytes) -> bool:
    """Follow ``author`` (raw public key); False when already followed."""
    with store.database.transaction() as db:
        inserted = db.execute(
            "INSERT OR IGNORE INTO follows (author, created_ms) VALUES (?, ?)", (author, now_ms())
        ).rowcount
    return bool(inserted)


def unfollow(store: Store, author: bytes) -> bool:
    """Stop following ``author``; False when it was not followed."""
    with store.database.transaction() as db:
        deleted = db.execute("DELETE FROM follows WHERE author = ?", (author,)).rowcount
    return bool(deleted)


def following(store: Store) -> list[bytes]:
    """Followed authors (raw public keys), in the order they were followed."""
    rows = store.database.query("SELECT author FROM follows ORDER BY created_ms, author")
    return [bytes(row[0]) for row in rows]


def is_followed(store: Store, author: bytes) -> bool:
    return store.database.query_one("SELECT 1 FROM follows WHERE author = ?", (author,)) is not None


def follow_collab(store: Store, collab: Cid) -> bool:
    """Follow the collab ``collab`` (its record id); False when already followed."""
    with store.database.transaction() as db:
        inserted = db.execute(
            "INSERT OR IGNORE INTO followed_collabs (collab, created_ms) VALUES (?, ?)",
            (collab.to_bytes(), now_ms()),
        ).rowcount
    return bool(inserted)


def unfollow_collab(store: Store, collab: Cid) -> bool:
    """Stop following the collab ``collab``; False when it was not followed."""
    with store.database.transaction() as db:
        deleted = db.execute(
            "DELETE FROM followed_collabs WHERE collab = ?", (collab.to_bytes(),)
        ).rowcount
    return bool(deleted)


def followed_collabs(store: Store) -> list[Cid]:
    """Followed collabs (record ids), in the order they were followed."""
    rows = store.database.query("SELECT collab FROM followed_collabs ORDER BY created_ms, collab")
    return [Cid.from_bytes(bytes(row[0])) for row in rows]


# -- notifications -------------------------------------------------------------


def parents_by(store: Store, record: SignedRecord, author: bytes) -> list[Cid]:
    """The parents of ``record`` (a contribution) that ``author`` wrote, held in the store."""
    if not isinstance(record.body, Contribution) or not record.body.parents:
        return []
    ids = [parent.record_id.to_bytes() for parent in record.body.parents]
    marks = ",".join("?" * len(ids))
    rows = store.database.query(
        f"SELECT id FROM records WHERE author = ? AND id IN ({marks})", (author, *ids)
    )
    return [Cid.from_bytes(bytes(row[0])) for row in rows]


def notify_remix(store: Store, record: SignedRecord, me: bytes) -> list[Notification]:
    """Record a notification per parent of ``record`` written by ``me``; return the new ones."""
    if record.author == me:
        return []
    created: list[Notification] = []
    for subject in parents_by(store, record, me):
        moment = now_ms()
        with store.database.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO notifications (kind, record_id, subject_id, created_ms)"
                " VALUES (?, ?, ?, ?)",
                (REMIX, record.id.to_bytes(), subject.to_bytes(), moment),
            )
            if cursor.rowcount and cursor.lastrowid is not None:
                created.append(
                    Notification(cursor.lastrowid, REMIX, record.id, subject, moment, False)
                )
    return created


def list_notifications(store: Store, *, unread_only: bool, limit: int) -> list[Notification]:
    """Notifications, newest first."""
    where = "WHERE read = 0" if unread_only else ""
    rows = store.database.query(
        "SELECT id, kind, record_id, subject_id, created_ms, read FROM notifications"
        f" {where} ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [
        Notification(
            row[0],
            row[1],
            Cid.from_bytes(bytes(row[2])),
            Cid.from_bytes(bytes(row[3])),
            row[4],
            bool(row[5]),
        )
        for row in rows
    ]


def mark_read(store: Store, ids: list[int] | None) -> int:
    """Mark notifications read (all of them when ``ids`` is None); return how many changed."""
    with store.database.transaction() as db:
        if ids is None:
            return int(db.execute("UPDATE notifications SET read = 1 WHERE read = 0").rowcount)
        changed = 0
        for number in ids:
            changed += db.execute(
                "UPDATE notifications SET read = 1 WHERE id = ? AND read = 0", (number,)
            ).rowcount
        return changed


# -- the feed and profiles -------------------------------------------------------


def feed(store: Store, me: bytes, *, limit: int) -> list[SignedRecord]:
    """Recent records by followed authors and remixes of ``me``'s records, newest first."""
    rows = store.database.query(
        "SELECT id, encoded FROM records WHERE author IN (SELECT author FROM follows)"
        " OR (author != ? AND id IN (SELECT lineage.child FROM lineage JOIN records AS mine"
        " ON mine.id = lineage.parent WHERE mine.author = ?))"
        " ORDER BY created_ms DESC, id LIMIT ?",
        (me, me, limit),
    )
    return [load_stored_record(bytes(row[1]), row[0]) for row in rows]


def latest_profile(store: Store, author: bytes) -> SignedRecord | None:
    """The newest profile record this store holds for ``author``."""
    records = store.list_records(
        RecordFilter(author=author, record_type=RecordType.PROFILE, limit=1)
    )
    return records[0] if records else None


def profile_json(record: SignedRecord) -> dict[str, object]:
    """The JSON view of a profile record (``profiles.get``)."""
    body = record.body
    assert isinstance(body, Profile)
    return {
        "author": author_id(record.author),
        "name": body.name,
        "bio": body.bio,
        "avatar": str(body.avatar) if body.avatar else None,
        "id": str(record.id),
        "created_ms": record.created_ms,
    }
