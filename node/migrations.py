"""Numbered schema migrations, recorded in ``PRAGMA user_version``.

Migration N brings a database from version N-1 to N. Never edit a migration
that has shipped; add a new one.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: records, lineage edges, packs and the block index, pins.
    """
    CREATE TABLE records (
        id          BLOB PRIMARY KEY,      -- binary CID of `encoded`
        type        TEXT NOT NULL,
        author      BLOB NOT NULL,         -- raw Ed25519 public key
        created_ms  INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        title       TEXT,                  -- contribution/collab/production title, profile name
        media_type  TEXT,
        content     BLOB,                  -- binary root CID of the content, if any
        collab      BLOB,
        encoded     BLOB NOT NULL          -- the signed canonical bytes
    ) WITHOUT ROWID;
    CREATE INDEX records_by_author ON records (author, created_ms);
    CREATE INDEX records_by_type ON records (type, created_ms);
    CREATE INDEX records_by_media_type ON records (media_type);
    CREATE INDEX records_by_content ON records (content);
    CREATE INDEX records_by_collab ON records (collab);
    CREATE TABLE record_tags (
        tag       TEXT NOT NULL,
        record_id BLOB NOT NULL REFERENCES records (id) ON DELETE CASCADE,
        PRIMARY KEY (tag, record_id)
    ) WITHOUT ROWID;
    CREATE TABLE lineage (
        child  BLOB NOT NULL REFERENCES records (id) ON DELETE CASCADE,
        parent BLOB NOT NULL,              -- may name a record this node lacks
        weight INTEGER,
        PRIMARY KEY (child, parent)
    ) WITHOUT ROWID;
    CREATE INDEX lineage_by_parent ON lineage (parent);
    CREATE TABLE packs (
        id             INTEGER PRIMARY KEY,
        name           TEXT NOT NULL UNIQUE,  -- file name under blocks/
        committed_size INTEGER NOT NULL,      -- every entry below is fsynced
        created_ms     INTEGER NOT NULL
    );
    CREATE TABLE blocks (
        cid       BLOB PRIMARY KEY,
        pack      INTEGER NOT NULL REFERENCES packs (id),
        offset    INTEGER NOT NULL,           -- of the block's data in the pack
        size      INTEGER NOT NULL,
        stored_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX blocks_by_pack ON blocks (pack);
    CREATE TABLE pins (
        cid        BLOB PRIMARY KEY,       -- a DAG root: the pin covers every block below it
        reason     TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: notifications (remixes of this node's records) and followed authors.
    """
    CREATE TABLE notifications (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,         -- "remix": a record naming one of ours as a parent
        record_id   BLOB NOT NULL,         -- the record that caused it
        subject_id  BLOB NOT NULL,         -- our record it concerns
        created_ms  INTEGER NOT NULL,
        read        INTEGER NOT NULL DEFAULT 0,
        UNIQUE (kind, record_id, subject_id)
    );
    CREATE INDEX notifications_unread ON notifications (read, id);
    CREATE TABLE follows (
        author      BLOB PRIMARY KEY,      -- raw Ed25519 public key
        created_ms  INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: followed collabs (the daemon subscribes to each one's gossip topic).
    """
    CREATE TABLE followed_collabs (
        collab      BLOB PRIMARY KEY,      -- binary record id of the collab
        created_ms  INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 4: seeding (node.replication, node.seed): the replication queue, and the content of
    # blocked authors, refused to peers until garbage collection has removed it.
    """
    CREATE TABLE replication_queue (
        record_id       BLOB PRIMARY KEY,  -- binary record id to replicate (record + content)
        reason          TEXT NOT NULL,     -- "author", "collab", "everything", "ancestor", "own"
        state           TEXT NOT NULL,     -- "queued" or "failed" (done rows are deleted)
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error      TEXT,
        added_ms        INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX replication_due ON replication_queue (state, next_attempt_ms);
    CREATE TABLE blocked_content (
        cid    BLOB PRIMARY KEY,           -- a record id or content root of a blocked author
        author BLOB NOT NULL               -- raw Ed25519 public key
    ) WITHOUT ROWID;
    CREATE INDEX blocked_content_by_author ON blocked_content (author);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
