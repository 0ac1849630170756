"""The fetching side of ``/remixnet/blocks/1.0.0``: a DAG from many providers at once.

``Fetcher.fetch(root)`` walks the DAG under ``root``, skipping what the store
already has, and asks every provider it finds (hints such as a record's
author, the peers already connected, the DHT) at the same time, one stream per
provider. Work is pulled: each provider gets new requests as it answers, so a
fast provider does most of the work and a slow one little.

Invariants:
* every block is hashed against its CID before it is stored or its links are
  read; a provider that sends a block that does not match is banned (never
  asked again, by this fetch or a later one) and disconnected, and what it
  was asked is asked of others;
* memory is bounded by the window (``node.fetch_schedule``): the bytes
  requested and not yet stored stay under ``window_bytes``, and the walk holds
  the links of at most one node per level plus the nodes in the window, never
  the whole DAG; streams are read continuously and backpressure comes from the
  window, never from not reading (Yamux resets a stream left unread for 5 s);
  besides, a fetch remembers the CIDs of the dag-pb nodes it walked (about
  one per 174 blocks), so that a DAG repeating a subtree is walked once;
* a provider with requests outstanding that answers nothing for
  ``stall_timeout`` is dropped and its requests go to the others; one that
  disconnects, aborts or breaks the protocol likewise; at the end, requests
  another provider owes are also asked of an idle one (the end game of
  ``node.fetch_schedule``), which wakes when they come due;
* a block the store already has is never requested; the result counts them
  (``blocks_present``), so an interrupted fetch resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence

import trio

from node.errors import MissingBlock, first_leaf
from node.exchange import PeerBans, refuse_nothing
from node.fetch_outcome import FetchError, FetchProgress, FetchResult, ProgressCallback
from node.fetch_schedule import DEFAULT_LIMITS, FetchLimits, FetchSchedule, Item
from node.host import NETWORK_ERRORS, DialError, Host, Stream
from node.leases import QuotaExceeded
from node.store import Store
from protocol.cid import DAG_PB, RAW, Cid
from protocol.content import MAX_DEPTH, Block, InvalidDag, sized_child_links
from protocol.wire import (
    MAX_RESPONSE_FRAME_SIZE,
    PROTOCOL_ID,
    Abort,
    BlockData,
    DontHave,
    FrameDecoder,
    Want,
    WireError,
    encode,
)

logger = logging.getLogger(__name__)

READ_SIZE = 1 << 20
# After a read that brought little (often one Yamux frame, ~64 KiB), wait this
# long before reading again, so that the next read takes several frames at
# once: each read costs py-libp2p and us a fixed amount of Python, which
# decides the speed when the fetcher is CPU-bound (measured: ~10 % less CPU
# per byte). Far below anything that could stall a stream.
READ_GATHER_SECONDS = 0.001
CHECK_BATCH = 64  # CIDs checked against the store per worker-thread call
STORE_BATCH = 64  # blocks stored per worker-thread call (and per fsync), at most
STORE_BATCH_BYTES = 16 << 20
STORE_GATHER_BYTES = 4 << 20  # wait for this much ...
STORE_GATHER_SECONDS = 0.01  # ... but no longer than this
WALK_AHEAD = 128  # missing blocks found ahead of the requests (CIDs only: ~100 bytes each)
LIAR_BAN_SECONDS = 24 * 3600.0


_Links = tuple[tuple[Cid, int | None], ...]  # child CIDs with the file bytes under each, if known


class _NotAProvider(Exception):
    """The peer answered DONT_HAVE too often in a row."""


class _PeerAborted(Exception):
    """The provider sent ABORT (busy, or it found us in breach)."""


class Fetcher:
    """Fetches DAGs over the network into the store. One per node."""

    def __init__(
        self, host: Host, store: Store, bans: PeerBans, limits: FetchLimits = DEFAULT_LIMITS
    ) -> None:
        self.host = host
        self.store = store
        self.bans = bans
        self.limits = limits
        # Seed policies (node.seed) set this: peers never asked (blocked by the operator).
        self.refuses_peer: Callable[[str], bool] = refuse_nothing
        self._active = 0
        self._stats = {"fetches": 0, "fetches_failed": 0, "blocks_fetched": 0, "bytes_fetched": 0}
        self._stats.update({"blocks_present": 0, "duplicate_blocks": 0, "liars_banned": 0})

    async def fetch(
        self,
        root: Cid,
        *,
        providers_hint: Sequence[str] = (),
        on_progress: ProgressCallback | None = None,
    ) -> FetchResult:
        """Fetch every block of the DAG at ``root`` that the store lacks.

        ``providers_hint``: peer ids or ``/…/p2p/<id>`` multiaddrs to try
        first. Raises ``FetchError`` when no provider is found or a block is
        nowhere to be had for ``give_up_after`` seconds, or when the DAG is
        malformed.
        """
        self._stats["fetches"] += 1
        self._active += 1
        try:
            # The lease keeps garbage collection off what this fetch relies on (node.leases).
            with self.store.guard.fetching(root):
                result = await _Session(self, root, providers_hint, on_progress).run()
        except FetchError:
            self._stats["fetches_failed"] += 1
            raise
        finally:
            self._active -= 1
        self._stats["blocks_fetched"] += result.blocks_fetched
        self._stats["bytes_fetched"] += result.bytes_fetched
        self._stats["blocks_present"] += result.blocks_present
        self._stats["duplicate_blocks"] += result.duplicate_blocks
        self._stats["liars_banned"] += len(result.banned_peers)
        return result

    def statistics(self) -> dict[str, int]:
        return {**self._stats, "fetches_active": self._active}


class _Session:
    """One fetch: the walk, the providers' sessions, storing, watching. On the trio thread."""

    nursery: trio.Nursery

    def __init__(
        self,
        fetcher: Fetcher,
        root: Cid,
        hints: Sequence[str],
        on_progress: ProgressCallback | None,
    ) -> None:
        self.fetcher = fetcher
        self.host = fetcher.host
        self.store = fetcher.store
        self.limits = fetcher.limits
        self.root = root
        self.hints = list(hints)
        self.on_progress = on_progress
        self.schedule = FetchSchedule(fetcher.limits)
        # The walk: a stack of (links not yet looked at, depth of their parent).
        self.frontier: list[tuple[Iterator[tuple[Cid, int | None]], int]] = [
            (iter(((root, None),)), -1)
        ]
        self.seen_nodes: set[Cid] = set()  # dag-pb nodes walked (a DAG may repeat a subtree)
        self.scopes: dict[str, trio.CancelScope] = {}
        self.failures: dict[str, str] = {}  # why a provider's session was cancelled
        self.not_before: dict[str, float] = {}  # provider -> when it may be tried again
        self.work: dict[str, trio.Event] = {}  # per provider's sender: there may be work
        self.walk_more = trio.Event()  # for the walk: ``ready`` runs low, or a node arrived
        self.done = False
        # Unbounded in type, bounded by the window: only requested blocks enter.
        self.store_send, self.store_receive = trio.open_memory_channel[tuple[Item, bytes, str]](
            float("inf")
        )
        self.started = self.last_progress = trio.current_time()
        self.samples: deque[tuple[float, int]] = deque()
        self.total_bytes: int | None = None
        self.blocks_fetched = self.bytes_fetched = 0
        self.blocks_present = self.bytes_present = 0
        self.bytes_by_peer: dict[str, int] = {}
        self.banned: list[str] = []
        self.ever_had_peer = False

    async def run(self) -> FetchResult:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._walk)
                for _ in range(self.limits.store_workers):
                    nursery.start_soon(self._store_blocks)
                nursery.start_soon(self._add_known_providers)
                nursery.start_soon(self._search_dht)
                nursery.start_soon(self._watch)
        except* FetchError as group:
            raise first_leaf(group) from None
        self._report()
        return FetchResult(
            root=self.root,
            blocks_fetched=self.blocks_fetched,
            bytes_fetched=self.bytes_fetched,
            blocks_present=self.blocks_present,
            bytes_present=self.bytes_present,
            duplicate_blocks=self.schedule.duplicates,
            total_bytes=self.total_bytes,
            elapsed=trio.current_time() - self.started,
            bytes_by_peer=dict(self.bytes_by_peer),
            banned_peers=tuple(self.banned),
        )

    def _notify(self) -> None:
        """Wake every provider's sender: the shared window or ``ready`` changed."""
        for peer_id in self.work:
            self._wake_sender(peer_id)

    def _wake_sender(self, peer_id: str) -> None:
        event = self.work.get(peer_id)
        if event is not None:
            event.set()
            self.work[peer_id] = trio.Event()

    def _wake_walk(self) -> None:
        self.walk_more.set()
        self.walk_more = trio.Event()

    def _ready_runs_low(self) -> bool:
        return len(self.schedule.ready) < WALK_AHEAD // 2

    # -- walking the DAG ----------------------------------------------------------

    async def _walk(self) -> None:
        """Find missing blocks, a batch at a time; end the fetch when all are stored."""
        schedule = self.schedule
        while True:
            if not self.frontier and schedule.finished:
                self.done = True
                self.nursery.cancel_scope.cancel()
                return
            # Look ahead only so far: the walk's memory is bounded.
            if not self.frontier or len(schedule.ready) >= WALK_AHEAD:
                await self.walk_more.wait()
                continue
            batch: list[tuple[Cid, int | None, int]] = []
            while self.frontier and len(batch) < CHECK_BATCH:
                links, depth = self.frontier[-1]
                entry = next(links, None)
                if entry is None:
                    self.frontier.pop()
                    continue
                cid, size = entry
                if schedule.pending(cid) or cid in self.seen_nodes:
                    continue
                if depth + 1 >= MAX_DEPTH:
                    raise FetchError("invalid-dag", f"{self.root} is deeper than {MAX_DEPTH}")
                if cid.codec != RAW:
                    self.seen_nodes.add(cid)
                batch.append((cid, size, depth + 1))
            cids = [cid for cid, _, _ in batch]
            found = await trio.to_thread.run_sync(self._check_stored, cids)
            for (cid, size, depth), stored in zip(batch, found, strict=True):
                if stored is None:
                    schedule.add_missing(cid, depth, size)
                    continue
                self.blocks_present += 1
                if cid.codec == RAW and size is not None:
                    self.bytes_present += size
                self._descend(cid, depth, stored)
                self.last_progress = trio.current_time()
            self._notify()

    def _check_stored(self, cids: list[Cid]) -> list[_Links | None]:
        """In a worker thread: for each CID, None if missing, else its links (read from disk)."""
        result: list[_Links | None] = []
        for cid in cids:
            if not self.store.has_block(cid):
                result.append(None)
            elif cid.codec == RAW:
                result.append(())
            else:
                try:
                    result.append(_links_of(cid, self.store.get_block(cid)))
                except MissingBlock:  # removed meanwhile: fetch it
                    result.append(None)
        return result

    def _descend(self, cid: Cid, depth: int, links: _Links) -> None:
        sizes = [size for _, size in links]
        if cid == self.root and cid.codec == DAG_PB and None not in sizes:
            self.total_bytes = sum(size or 0 for size in sizes)
        if links:
            self.frontier.append((iter(links), depth))

    # -- storing ------------------------------------------------------------------

    async def _store_blocks(self) -> None:
        """Verify and store what arrives, in batches: one worker-thread call and one fsync each."""
        async for first in self.store_receive:
            batch = [first]
            batch_bytes = len(first[1])
            # Gather a few MiB (waiting a few ms at most): fewer thread calls and fsyncs.
            with trio.move_on_after(STORE_GATHER_SECONDS):
                while len(batch) < STORE_BATCH and batch_bytes < STORE_GATHER_BYTES:
                    batch.append(await self.store_receive.receive())
                    batch_bytes += len(batch[-1][1])
            while len(batch) < STORE_BATCH and batch_bytes < STORE_BATCH_BYTES:
                try:
                    batch.append(self.store_receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch_bytes += len(batch[-1][1])
            blocks = [Block(item.cid, data) for item, data, _ in batch]
            outcomes = await trio.to_thread.run_sync(self._verify_and_store, blocks)
            for (item, data, peer_id), links in zip(batch, outcomes, strict=True):
                size = len(data)
                if links is None:
                    self.schedule.on_bad_block(item, peer_id, size)
                    self._on_liar(peer_id, item.cid)
                    continue
                self.schedule.on_stored(item, size)
                self.blocks_fetched += 1
                self.bytes_fetched += size
                self.bytes_by_peer[peer_id] = self.bytes_by_peer.get(peer_id, 0) + size
                if item.cid == self.root and item.cid.codec == RAW:
                    self.total_bytes = size
                self._descend(item.cid, item.depth, links)
                self.last_progress = trio.current_time()
            del batch, blocks, first
            self._notify()
            self._wake_walk()

    def _verify_and_store(self, blocks: list[Block]) -> list[_Links | None]:
        """In a worker thread: per block, None if it does not match its CID, else its links.

        The blocks that match are stored together (one fsync).
        """
        outcomes: list[_Links | None] = []
        try:  # within the storage quota (after garbage collection), or the fetch fails
            writing = self.store.writer(reserve=sum(len(block.data) for block in blocks))
        except QuotaExceeded as error:
            raise FetchError("storage-full", str(error)) from None
        # A store writer takes blocks its caller verified: each is hashed once, here.
        with writing as writer:
            for block in blocks:
                if block.cid.matches(block.data):
                    outcomes.append(_links_of(block.cid, block.data))  # FetchError if malformed
                    writer.put(block)
                else:
                    outcomes.append(None)
        return outcomes

    def _on_liar(self, peer_id: str, cid: Cid) -> None:
        logger.warning("peer %s sent a block that does not match %s: banned", peer_id, cid)
        self.fetcher.bans.ban(peer_id, LIAR_BAN_SECONDS)
        if peer_id not in self.banned:
            self.banned.append(peer_id)
        self._cancel_peer(peer_id, "sent a block that does not match its CID")
        self.nursery.start_soon(self._disconnect, peer_id)

    async def _disconnect(self, peer_id: str) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await self.host.disconnect(peer_id)

    # -- providers ----------------------------------------------------------------

    def _maybe_add_peer(self, peer_id: str) -> None:
        now = trio.current_time()
        if (
            self.done
            or peer_id in self.scopes
            or peer_id == self.host.peer_id
            or len(self.scopes) >= self.limits.max_peers
            or self.fetcher.bans.is_banned(peer_id)
            or self.fetcher.refuses_peer(peer_id)
            or self.not_before.get(peer_id, 0.0) > now
        ):
            return
        self.ever_had_peer = True
        self.scopes[peer_id] = scope = trio.CancelScope()
        self.work[peer_id] = trio.Event()
        self.schedule.add_peer(peer_id, now)
        self.nursery.start_soon(self._run_peer, peer_id, scope)
        self._notify()

    def _cancel_peer(self, peer_id: str, why: str) -> None:
        scope = self.scopes.get(peer_id)
        if scope is not None:
            self.failures.setdefault(peer_id, why)
            scope.cancel()  # the session's end hands what it was asked to the others

    async def _add_known_providers(self) -> None:
        """Hints and connected peers join as soon as they may (checked twice a second)."""
        hinted: list[str] = []
        for hint in self.hints:
            if not hint.startswith("/"):
                hinted.append(hint)
                continue
            try:
                hinted.append(await self.host.connect(hint))
            except DialError as error:
                logger.info("provider hint %s: %s", hint, error)
        while True:
            for peer_id in hinted + self.host.connected_peer_ids():
                self._maybe_add_peer(peer_id)
            await trio.sleep(0.5)

    async def _search_dht(self) -> None:
        while True:
            if len(self.scopes) < self.limits.max_peers:
                with trio.move_on_after(self.limits.provider_search_interval * 2):
                    for peer_id, _ in await self.host.find_providers(self.root):
                        self._maybe_add_peer(peer_id)
            await trio.sleep(self.limits.provider_search_interval)

    async def _run_peer(self, peer_id: str, scope: trio.CancelScope) -> None:
        failure = ""
        stream: Stream | None = None
        try:
            with scope:
                with trio.fail_after(self.limits.connect_timeout):
                    await self.host.ensure_connected(peer_id)
                    stream = await self.host.open_stream(peer_id, PROTOCOL_ID)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._send_wants, peer_id, stream)
                    await self._read_answers(peer_id, stream)
        except* WireError as group:
            failure = f"protocol error {first_leaf(group).reason}"
            self.fetcher.bans.ban(peer_id, LIAR_BAN_SECONDS)
        except* _NotAProvider:
            failure = "not a provider"
        except* DialError as group:
            error = first_leaf(group)
            # A peer that does not speak the protocol will not learn it in 5 s.
            failure = "not a provider" if error.reason == "stream-failed" else str(error)
        except* (_PeerAborted, trio.TooSlowError) as group:
            failure = str(first_leaf(group)) or "connect timeout"
        except* NETWORK_ERRORS as group:
            failure = f"connection lost ({first_leaf(group)!r})"
        finally:
            peer = self.schedule.peers.get(peer_id)
            if stream is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await _end_stream(stream, graceful=peer is None or not peer.asked)
            self._remove_peer(peer_id, failure or self.failures.pop(peer_id, ""))

    def _remove_peer(self, peer_id: str, failure: str) -> None:
        if failure:
            logger.info("provider %s dropped from fetch of %s: %s", peer_id, self.root, failure)
        del self.scopes[peer_id]
        del self.work[peer_id]
        self.schedule.remove_peer(peer_id)
        delay = self.limits.retry_peer_after
        if failure == "not a provider":
            delay = self.limits.provider_search_interval * 6
        self.not_before[peer_id] = trio.current_time() + delay
        self._notify()

    async def _send_wants(self, peer_id: str, stream: Stream) -> None:
        while True:
            batch = self.schedule.take_work(
                peer_id, trio.current_time(), walk_done=not self.frontier
            )
            if not batch:
                # Idle at the end: wake when a request owed by another provider
                # may be asked here too, if nothing wakes this sender before.
                endgame = self.schedule.endgame_at(peer_id) if not self.frontier else None
                if endgame is None or endgame <= trio.current_time():
                    endgame = math.inf  # (due already: a window holds it back, answers wake it)
                with trio.move_on_at(endgame):
                    await self.work[peer_id].wait()
                continue
            if self._ready_runs_low():
                self._wake_walk()
            await stream.write(encode(Want(tuple(item.cid for item in batch))))

    async def _read_answers(self, peer_id: str, stream: Stream) -> None:
        decoder = FrameDecoder(max_frame_size=MAX_RESPONSE_FRAME_SIZE)
        schedule = self.schedule
        while True:
            data = await stream.read(READ_SIZE)
            if not data:
                decoder.close()
                raise _PeerAborted("the provider closed the stream")
            decoder.feed(data)
            short = len(data) < READ_SIZE // 4
            del data
            if short:
                await trio.sleep(READ_GATHER_SECONDS)
            answered = declined = False
            while (message := decoder.next_message()) is not None:
                now = trio.current_time()
                if isinstance(message, BlockData):
                    item = schedule.on_block(peer_id, message.cid, len(message.data), now)
                    if item is not None:
                        self.store_send.send_nowait((item, message.data, peer_id))
                elif isinstance(message, DontHave):
                    in_a_row = schedule.on_dont_have(peer_id, message.cid, now)
                    if in_a_row >= self.limits.max_consecutive_dont_have:
                        raise _NotAProvider(peer_id)
                    declined = True
                elif isinstance(message, Abort):
                    raise _PeerAborted(f"the provider aborted: {message.reason}")
                else:
                    raise WireError("unexpected-message", type(message).__name__)
                answered = True
            if declined:
                self._notify()  # a declined block goes back to ``ready`` for anyone
            elif answered:
                self._wake_sender(peer_id)  # once per read: room in this provider's window

    # -- watching -----------------------------------------------------------------

    async def _watch(self) -> None:
        """Drop stalled providers, report progress, give up when nothing moves."""
        while True:
            await trio.sleep(0.25)
            now = trio.current_time()
            for peer_id in self.schedule.stalled(now):
                self._cancel_peer(peer_id, "stalled")
            self._report()
            if now - self.last_progress > self.limits.give_up_after:
                if not self.ever_had_peer:
                    raise FetchError("no-providers", f"nobody found to provide {self.root}")
                missing = self.schedule.first_missing() or self.root
                raise FetchError("unavailable", f"no provider has {missing} (under {self.root})")

    def _report(self) -> None:
        now = trio.current_time()
        self.samples.append((now, self.bytes_fetched))
        while len(self.samples) > 2 and now - self.samples[0][0] > 3.0:
            self.samples.popleft()
        first_time, first_bytes = self.samples[0]
        rate = (self.bytes_fetched - first_bytes) / (now - first_time) if now > first_time else 0.0
        if self.on_progress is not None:
            self.on_progress(
                FetchProgress(
                    root=self.root,
                    blocks_fetched=self.blocks_fetched,
                    bytes_fetched=self.bytes_fetched,
                    blocks_present=self.blocks_present,
                    bytes_present=self.bytes_present,
                    total_bytes=self.total_bytes,
                    rate=rate,
                    peers=len(self.scopes),
                    elapsed=now - self.started,
                )
            )


def _links_of(cid: Cid, data: bytes) -> _Links:
    """The children of a verified block (with the file bytes under each, when known)."""
    try:
        return sized_child_links(Block(cid, data))
    except InvalidDag as error:
        raise FetchError("invalid-dag", f"{cid}: {error}") from error


async def _end_stream(stream: Stream, *, graceful: bool) -> None:
    try:
        if graceful:
            await stream.close()
        else:
            await stream.reset()
    except NETWORK_ERRORS:
        pass
