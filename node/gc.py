"""Garbage collection of content blocks: mark what pins and leases reach, sweep the rest.

Mark: every block reachable from a pin's root (a pin covers the whole DAG
under it), from the root of a running or just-finished fetch (its lease), and
every block stored since the start of a writer that is open or closed less
than the grace period ago (``node.leases``). Records live in the database,
not in packs, and are never collected. Sweep: the index rows of unmarked
blocks are deleted, then every pack whose live bytes fell under
``COMPACT_BELOW`` of its size is rewritten (``BlockStore.compact``) so the
space returns to the disk.

Invariants:
* it runs with the store to itself (``StoreGuard.collecting``): no writer
  in this process, no other process with the store open; readers go on and a
  block removed under one reads as missing (``MissingBlock``), never as
  other bytes;
* crash-safe at every point: rows are deleted in transactions, and
  compaction moves the index to a fsynced copy before the old pack goes, so
  a kill leaves every indexed block readable and ``fsck`` clean (bytes of
  deleted blocks may remain in a pack until the next collection);
* a pinned block is never deleted; a pinned DAG with blocks missing keeps
  what it has (``pinned_missing`` counts the rest).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from node.errors import CorruptBlock, MissingBlock
from node.store import Store
from protocol.cid import RAW, Cid
from protocol.content import Block, InvalidDag, child_links

COMPACT_BELOW = 0.75  # rewrite a pack once a quarter of it is dead
DELETE_BATCH = 5000  # index rows deleted per transaction


@dataclass(frozen=True, slots=True)
class GcReport:
    """What one collection did."""

    blocks_before: int
    blocks_deleted: int
    bytes_deleted: int  # block bytes no longer indexed
    blocks_kept: int
    pinned_roots: int
    pinned_missing: int  # blocks under pins that are not in the store
    lease_roots: int  # fetches running (or just finished) whose blocks were kept
    packs_compacted: int
    bytes_reclaimed: int  # pack bytes returned to the disk
    used_before: int
    used_after: int
    elapsed: float

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "elapsed": round(self.elapsed, 3)}


def collect_garbage(
    store: Store, *, wait: float = 30.0, on_progress: Callable[[int], None] | None = None
) -> GcReport:
    """Collect garbage in ``store``; call it through ``Store.collect_garbage``.

    ``on_progress`` gets pack bytes dealt with (checked or rewritten), out of
    ``store.blocks.used_bytes()`` at the start. Raises ``StoreBusy`` when the
    store is not free within ``wait`` seconds.
    """
    started = time.monotonic()
    with store.guard.collecting(wait) as keep:
        store.blocks.drop_retired()  # what an interrupted compaction left
        used_before = store.blocks.used_bytes()
        indexed: dict[bytes, tuple[int, int]] = {
            cid: (size, stored_ms)
            for cid, size, stored_ms in store.database.query(
                "SELECT cid, size, stored_ms FROM blocks"
            )
        }
        pins = [root for root, _ in store.pins()]
        marked: set[bytes] = set()
        missing = 0
        for root in pins:
            missing += _mark(store, root, indexed, marked)
        for root in keep.lease_roots:
            _mark(store, root, indexed, marked)
        since = keep.stored_since_ms
        garbage = [
            (cid, size)
            for cid, (size, stored_ms) in indexed.items()
            if cid not in marked and (since is None or stored_ms < since)
        ]
        del indexed, marked
        for start in range(0, len(garbage), DELETE_BATCH):
            batch = garbage[start : start + DELETE_BATCH]
            store.database.execute_many(
                "DELETE FROM blocks WHERE cid = ?", [(cid,) for cid, _ in batch]
            )
        compacted = reclaimed = 0
        for name, committed, live in store.blocks.pack_usage():
            if committed > 0 and live < committed * COMPACT_BELOW:
                reclaimed += store.blocks.compact([name])
                compacted += 1
            if on_progress is not None:
                on_progress(max(committed, 0))
        blocks_after = store.database.query_one("SELECT count(*) FROM blocks")[0]
        return GcReport(
            blocks_before=blocks_after + len(garbage),
            blocks_deleted=len(garbage),
            bytes_deleted=sum(size for _, size in garbage),
            blocks_kept=blocks_after,
            pinned_roots=len(pins),
            pinned_missing=missing,
            lease_roots=len(keep.lease_roots),
            packs_compacted=compacted,
            bytes_reclaimed=reclaimed,
            used_before=used_before,
            used_after=store.blocks.used_bytes(),
            elapsed=time.monotonic() - started,
        )


def _mark(
    store: Store, root: Cid, indexed: dict[bytes, tuple[int, int]], marked: set[bytes]
) -> int:
    """Mark every held block under ``root``; returns how many blocks under it are missing.

    Only dag-pb (and other non-raw) nodes are read, to find their children;
    raw leaves are marked from their parent's links. A node that is missing
    or corrupt is not descended into (fsck reports the corruption).
    """
    missing = 0
    stack = [root]
    while stack:
        cid = stack.pop()
        key = cid.to_bytes()
        if key in marked:
            continue
        if key not in indexed:
            missing += 1
            continue
        marked.add(key)
        if cid.codec == RAW:
            continue
        try:
            data = store.blocks.get(cid)
            stack.extend(child_links(Block(cid, data)))
        except (MissingBlock, CorruptBlock, InvalidDag):
            continue
    return missing


def missing_blocks(store: Store, root: Cid) -> int:
    """How many blocks of the DAG under ``root`` the store lacks (0: held fully)."""
    missing = 0
    seen: set[Cid] = set()
    stack = [root]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        if not store.blocks.has(cid):
            missing += 1
            continue
        if cid.codec != RAW:
            try:
                stack.extend(child_links(Block(cid, store.blocks.get(cid))))
            except (MissingBlock, CorruptBlock, InvalidDag):
                missing += 1
    return missing
