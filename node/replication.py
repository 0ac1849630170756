"""Replication: a node fetches and pins what its seeding policy covers, ancestors included.

``Replicator`` (a daemon service, after the network, gossip and ``SeedPolicies``)
keeps a queue of record ids in SQLite (``replication_queue``, migration 4), so
it survives a restart. Records enter it when they are stored (``record.added``)
and the policy covers them, when a periodic scan (and every policy change)
finds covered records whose content is not pinned or whose parents are not
held, and as the parents of every record replicated. Replicating a record
means: fetch it by id (verified) if missing, fetch its content and pin it
(which provides it on the DHT), then queue its parents, so the lineage of
everything seeded stays complete.

Invariants:
* at most ``concurrency`` records are replicated at once;
* a failed attempt is retried after an exponential backoff (``RETRY_BASE``
  doubling up to ``RETRY_CAP``, with jitter), at most ``attempts`` times; the
  record is then marked ``failed`` (shown by ``status``) and gets a new series
  of attempts ``RETRY_FAILED_AFTER`` later, or sooner when the daemon restarts
  or the policy changes;
* content larger than ``max_content_bytes`` is not replicated (the fetch is
  cancelled as soon as its size is known); a blocked author's records never are;
* every wait is bounded; everything stops when ``run`` is cancelled.
"""

from __future__ import annotations

import functools
import logging
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import trio

from node.fetch_outcome import FetchProgress
from node.network_service import BlockedRecord, NetworkService
from node.operations import now_ms
from node.rpc_api import RECORD_ADDED
from node.seed import SeedPolicies, SeedPolicy, coverage
from node.store import Store
from protocol.cid import Cid
from protocol.records import Contribution, SignedRecord

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from node.daemon import Node

logger = logging.getLogger(__name__)

RETRY_BASE: Final = 2.0  # seconds before the first retry
RETRY_CAP: Final = 600.0  # longest wait between attempts
RETRY_FAILED_AFTER: Final = 6 * 3600.0  # a record that used up its attempts: a new series then
DISPATCH_SECONDS: Final = 1.0  # the queue is looked at this often at least
SCAN_SECONDS: Final = 60.0  # covered records not yet held are looked for this often
SCAN_LIMIT: Final = 10_000  # records queued by one scan at most
ADDED_QUEUE: Final = 4096  # stored records waiting to be classified (overflow: next scan)


class TooLarge(Exception):
    """Content above ``max_content_bytes``: not replicated."""


@dataclass(frozen=True, slots=True)
class ReplicationSettings:
    concurrency: int = 4
    attempts: int = 8
    retry_base: float = RETRY_BASE
    retry_cap: float = RETRY_CAP


def retry_delay(attempts: int, settings: ReplicationSettings, jitter: float) -> float:
    """Seconds to wait after ``attempts`` failed attempts (``jitter`` in [0, 1))."""
    delay = min(settings.retry_base * 2.0 ** max(attempts - 1, 0), settings.retry_cap)
    return delay * (0.5 + jitter / 2)


# -- the queue (blocking; called in worker threads) -----------------------------------


def enqueue(store: Store, record_ids: list[Cid], reason: str) -> int:
    """Queue ``record_ids`` unless queued already; how many were added."""
    now = now_ms()
    with store.database.transaction() as db:
        added: int = db.executemany(
            "INSERT OR IGNORE INTO replication_queue"
            " (record_id, reason, state, attempts, next_attempt_ms, added_ms)"
            " VALUES (?, ?, 'queued', 0, ?, ?)",
            [(cid.to_bytes(), reason, now, now) for cid in record_ids],
        ).rowcount
    return added


def due(store: Store, limit: int, busy: set[Cid]) -> list[tuple[Cid, str, int]]:
    """Up to ``limit`` queued records due now and not in ``busy``: (id, reason, attempts)."""
    rows = store.database.query(
        "SELECT record_id, reason, attempts FROM replication_queue"
        " WHERE state = 'queued' AND next_attempt_ms <= ? ORDER BY next_attempt_ms LIMIT ?",
        (now_ms(), limit + len(busy)),
    )
    found = [(Cid.from_bytes(bytes(row[0])), str(row[1]), int(row[2])) for row in rows]
    return [item for item in found if item[0] not in busy][:limit]


def counts(store: Store) -> dict[str, int]:
    rows = store.database.query("SELECT state, COUNT(*) FROM replication_queue GROUP BY state")
    result = {"queued": 0, "failed": 0}
    result.update({str(state): int(number) for state, number in rows})
    return result


def done(store: Store, record_id: Cid) -> None:
    with store.database.transaction() as db:
        db.execute("DELETE FROM replication_queue WHERE record_id = ?", (record_id.to_bytes(),))


def failed(store: Store, record_id: Cid, error: str, delay: float, give_up: bool) -> None:
    with store.database.transaction() as db:
        db.execute(
            "UPDATE replication_queue SET attempts = attempts + 1, last_error = ?,"
            " next_attempt_ms = ?, state = ? WHERE record_id = ?",
            (
                error[:500],
                now_ms() + int(delay * 1000),
                "failed" if give_up else "queued",
                record_id.to_bytes(),
            ),
        )


def requeue_failed(store: Store, *, due_only: bool = False) -> int:
    """Give failed records a new series of attempts; returns how many.

    All of them at start and after a policy change; with ``due_only``, those
    whose wait after giving up (``RETRY_FAILED_AFTER``) is over.
    """
    now = now_ms()
    due_clause = " AND next_attempt_ms <= ?" if due_only else ""
    with store.database.transaction() as db:
        cursor = db.execute(
            "UPDATE replication_queue SET state = 'queued', attempts = 0, next_attempt_ms = ?"
            " WHERE state = 'failed'" + due_clause,
            (now, now) if due_only else (now,),
        )
        return int(cursor.rowcount)


def _not_held(alias: str) -> str:
    """SQL: the record ``alias`` lacks pinned content, or one of its parents is not held."""
    return (
        f"(({alias}.content IS NOT NULL AND {alias}.content NOT IN (SELECT cid FROM pins))"
        f" OR EXISTS (SELECT 1 FROM lineage l LEFT JOIN records p ON p.id = l.parent"
        f" WHERE l.child = {alias}.id AND (p.id IS NULL OR (p.content IS NOT NULL"
        " AND p.content NOT IN (SELECT cid FROM pins)))))"
    )


def scan(store: Store, policy: SeedPolicy) -> int:
    """Queue the covered records not fully held (content pinned, parents held); how many."""
    if policy.mode == "off":
        return 0
    covered = []
    if policy.mode == "everything":
        covered.append(("everything", "1"))
    if policy.covers_authors():
        covered.append(("author", "r.author IN (SELECT author FROM follows)"))
    if policy.covers_collabs():
        covered.append(("collab", "r.collab IN (SELECT collab FROM followed_collabs)"))
    added = 0
    for reason, condition in covered:
        rows = store.database.query(
            "SELECT r.id FROM records r WHERE r.type = 'contribution' AND " + condition + " AND"
            " r.id NOT IN (SELECT record_id FROM replication_queue) AND "
            + _not_held("r")
            + " LIMIT ?",
            (SCAN_LIMIT,),
        )
        added += enqueue(store, [Cid.from_bytes(bytes(row[0])) for row in rows], reason)
    return added


def missing_parents(store: Store, record_id: Cid) -> list[Cid]:
    """Parents of ``record_id`` not held (no record, or content not pinned)."""
    rows = store.database.query(
        "SELECT l.parent FROM lineage l LEFT JOIN records p ON p.id = l.parent"
        " WHERE l.child = ? AND (p.id IS NULL OR (p.content IS NOT NULL"
        " AND p.content NOT IN (SELECT cid FROM pins)))",
        (record_id.to_bytes(),),
    )
    return [Cid.from_bytes(bytes(row[0])) for row in rows]


# -- the service -------------------------------------------------------------------------


def replication_service(node: Node) -> Replicator:
    """The ``ServiceFactory`` of replication (after the network, gossip and seed services)."""
    network = next(s for s in node.services if isinstance(s, NetworkService))
    policies = next(s for s in node.services if isinstance(s, SeedPolicies))
    settings = ReplicationSettings(
        concurrency=node.config.seed.replication_concurrency,
        attempts=node.config.seed.replication_attempts,
    )
    return Replicator(node, network, policies, settings)


class Replicator:
    name = "replication"

    def __init__(
        self,
        node: Node,
        network: NetworkService,
        policies: SeedPolicies,
        settings: ReplicationSettings = ReplicationSettings(),
    ) -> None:
        self.node = node
        self.network = network
        self.policies = policies
        self.settings = settings
        self._busy: set[Cid] = set()
        self._wake = trio.Event()
        self._scan_now = trio.Event()
        self._added_send, self._added_recv = trio.open_memory_channel[Cid](ADDED_QUEUE)
        self._counts = {"queued": 0, "failed": 0}
        self._stats: Counter[str] = Counter()
        self._running = False
        policies.on_change(self._policy_changed)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        subscription = self.node.events.subscribe(
            frozenset({RECORD_ADDED.name}), self._on_record_added, internal=True
        )
        try:
            await trio.to_thread.run_sync(requeue_failed, self.node.store)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._classify)
                nursery.start_soon(self._scan_periodically)
                nursery.start_soon(self._dispatch, nursery)
                self._running = True
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._running = False
            subscription.close()

    # -- what enters the queue -------------------------------------------------------

    def _on_record_added(self, event: str, data: Mapping[str, object]) -> None:
        record = data.get("record")
        if self.policies.policy.mode == "off" or not isinstance(record, Mapping):
            return
        try:
            self._added_send.send_nowait(Cid.parse(str(record.get("id"))))
        except trio.WouldBlock:
            self._stats["classify_dropped"] += 1
            self._scan_now.set()  # the scan finds what was dropped
        except ValueError:
            return

    async def _classify(self) -> None:
        store = self.node.store
        async for record_id in self._added_recv:
            try:
                record = await trio.to_thread.run_sync(store.get_record, record_id)
                reason = await trio.to_thread.run_sync(
                    coverage, store, self.policies.policy, record
                )
                if reason is not None:
                    await trio.to_thread.run_sync(enqueue, store, [record_id], reason)
                    self._wake.set()
            except Exception:  # deleted meanwhile (blocked), or a store error: the scan retries
                logger.debug("classifying %s failed", record_id, exc_info=True)

    def _policy_changed(self, old: SeedPolicy, new: SeedPolicy) -> None:
        self._scan_now.set()

    async def _scan_periodically(self) -> None:
        store = self.node.store
        while True:
            policy = self.policies.policy
            try:
                added = await trio.to_thread.run_sync(scan, store, policy)
            except Exception:
                logger.exception("replication scan failed")
                added = 0
            retried = await trio.to_thread.run_sync(
                functools.partial(requeue_failed, store, due_only=True)
            )
            if added or retried:
                self._stats["scanned_in"] += added
                self._wake.set()
            with trio.move_on_after(SCAN_SECONDS):
                await self._scan_now.wait()
            if self._scan_now.is_set():
                self._scan_now = trio.Event()
                await trio.to_thread.run_sync(requeue_failed, store)

    # -- working through it ------------------------------------------------------------

    async def _dispatch(self, nursery: trio.Nursery) -> None:
        store = self.node.store
        while True:
            self._wake = trio.Event()
            free = self.settings.concurrency - len(self._busy)
            if free > 0:
                items = await trio.to_thread.run_sync(due, store, free, set(self._busy))
                for record_id, reason, attempts in items:
                    self._busy.add(record_id)
                    nursery.start_soon(self._replicate, record_id, reason, attempts)
            self._counts = await trio.to_thread.run_sync(counts, store)
            with trio.move_on_after(DISPATCH_SECONDS):
                await self._wake.wait()

    async def _replicate(self, record_id: Cid, reason: str, attempts: int) -> None:
        store = self.node.store
        try:
            try:
                await self._replicate_once(record_id)
            except TooLarge:
                self._stats["too_large"] += 1
                await trio.to_thread.run_sync(done, store, record_id)
            except BlockedRecord:
                self._stats["not_replicable"] += 1
                await trio.to_thread.run_sync(done, store, record_id)
            except Exception as error:  # FetchError, no peers, RpcError…: retry later
                self._stats["attempts_failed"] += 1
                give_up = attempts + 1 >= self.settings.attempts
                delay = retry_delay(attempts + 1, self.settings, random.random())
                if give_up:
                    delay = RETRY_FAILED_AFTER
                logger.info(
                    "replicating %s failed (attempt %d of %d): %s",
                    record_id,
                    attempts + 1,
                    self.settings.attempts,
                    error,
                )
                await trio.to_thread.run_sync(
                    failed, store, record_id, f"{type(error).__name__}: {error}", delay, give_up
                )
                if give_up:
                    self._stats["given_up"] += 1
            else:
                self._stats["replicated"] += 1
                await trio.to_thread.run_sync(done, store, record_id)
        finally:
            self._busy.discard(record_id)
            self._wake.set()

    async def _replicate_once(self, record_id: Cid) -> None:
        store = self.node.store
        record = await self.network.record(record_id)
        if record is None or self.policies.refuses_record(record):
            self._stats["not_replicable"] += 1
            return
        if isinstance(record.body, Contribution):
            await self._fetch_content(record, record.body)
        parents = await trio.to_thread.run_sync(missing_parents, store, record_id)
        if parents:
            await trio.to_thread.run_sync(enqueue, store, parents, "ancestor")

    async def _fetch_content(self, record: SignedRecord, body: Contribution) -> None:
        limit = self.policies.policy.max_content_bytes
        too_large = False
        with trio.CancelScope() as scope:

            def on_progress(progress: FetchProgress) -> None:
                nonlocal too_large
                if limit and progress.total_bytes is not None and progress.total_bytes > limit:
                    too_large = True
                    scope.cancel()

            await self.network.network.fetch(
                body.content, providers_hint=(record.author_id,), pin=True, on_progress=on_progress
            )
        if too_large:
            raise TooLarge(f"{body.content}: more than {limit} bytes")
        if scope.cancelled_caught:
            raise RuntimeError("fetch cancelled")

    def statistics(self) -> dict[str, object]:
        return {
            "running": self._running,
            "mode": self.policies.policy.mode,
            # (a record being replicated keeps its row until done: it is counted as in progress)
            "queued": max(0, self._counts.get("queued", 0) - len(self._busy)),
            "in_progress": len(self._busy),
            "failed": self._counts.get("failed", 0),
            **{
                key: self._stats[key]
                for key in ("replicated", "attempts_failed", "given_up", "too_large")
            },
        }
