"""Who is asked for which block: the bookkeeping of one fetch, without any I/O.

``FetchSchedule`` is a synchronous state machine driven by ``node.fetch``
(time comes in as ``now``): the walk adds missing blocks, each provider's
sender takes work, each provider's reader reports answers, the storing task
reports blocks stored or found not to match. Keeping it free of I/O lets the
tests drive it through every case directly.

Invariants:
* every block is in exactly one place until it is stored: ``ready`` (to be
  asked), ``in_flight`` (asked of one provider or more), storing, or
  ``unavailable`` (every current provider declined it);
* the *window* bounds memory: the expected bytes of all outstanding requests
  plus the bytes received and not yet stored never exceed ``window_bytes``
  (a request whose size is not known in advance counts as the largest block);
  at one provider, outstanding requests never exceed its own window nor
  ``max_requests_per_peer``; the end game's second requests count too;
* a provider's window follows its link: ``first_peer_window_bytes`` until
  its rate is measured, then ``peer_window_round_trips`` times its
  bandwidth-delay product (the rate it delivers times the shortest wait for
  an answer seen, at least ``peer_window_min_wait``), up to
  ``peer_window_bytes``: enough to keep its link full, and not much more, so
  that no provider holds work that others could do sooner (with one large
  window for all, the first provider took the whole of a small file, and a
  slow one queued 16 MiB);
* the end game: once the walk is done and nothing is left to ask, an idle
  provider is also asked for what another owes, after ``endgame_after``, or
  after four of its round trips when that other is known to deliver at under
  a quarter of its rate (measured, or, before that, bounded by what it has
  delivered so far); the first answer wins;
* an answer for a CID that was not asked of that provider is a protocol
  error (``WireError``), never silently accepted;
* a provider is never asked for a block it declined or corrupted.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from protocol.cid import RAW, Cid
from protocol.content import MAX_BLOCK_SIZE
from protocol.wire import MAX_CIDS_PER_WANT, WireError

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Bounds and timings of fetching. The defaults fill a loopback link."""

    window_bytes: int = 32 * MIB  # requested or received-not-stored, all providers together
    peer_window_bytes: int = 16 * MIB  # requested from one provider and not yet answered, at most
    first_peer_window_bytes: int = 2 * MIB  # the same, before the provider's rate is measured
    peer_window_round_trips: float = 4.0  # then: this many times its bandwidth-delay product
    # ... counting a round trip as at least this long: on loopback and LANs the
    # wait is mostly our own processing, and a shallower queue ran 5-10 % slower
    # (measured on loopback; the large window comes back at this value)
    peer_window_min_wait: float = 0.02
    max_requests_per_peer: int = 64
    max_peers: int = 8  # providers used at once
    stall_timeout: float = 5.0  # seconds a provider may owe answers and send nothing
    endgame_after: float = 0.25  # seconds before a request may also go to an idle provider
    connect_timeout: float = 10.0
    retry_peer_after: float = 5.0  # seconds before a provider that failed is tried again
    provider_search_interval: float = 10.0  # seconds between DHT lookups while short of providers
    give_up_after: float = 60.0  # seconds without any progress before the fetch fails
    max_consecutive_dont_have: int = 16  # then the peer is no provider of this DAG
    store_workers: int = 1


DEFAULT_LIMITS = FetchLimits()


@dataclass(slots=True, eq=False)
class Item:
    """A block to fetch, from when the walk finds it missing until it is stored."""

    cid: Cid
    depth: int
    size: int | None  # file bytes under it (a raw leaf's length), when its parent says
    asked: dict[str, float] = field(default_factory=dict)  # provider -> when asked
    declined: set[str] = field(default_factory=set)  # providers that lack it or lied
    storing: bool = False

    @property
    def cost(self) -> int:
        """The bytes this block may take in memory, as far as is known before it arrives."""
        if self.cid.codec == RAW and self.size is not None and self.size <= MAX_BLOCK_SIZE:
            return self.size
        return MAX_BLOCK_SIZE


RATE_SAMPLE_BYTES = 1 * MIB  # a provider's rate is measured over this many bytes at a time
SLOW_PROVIDER_FACTOR = 4  # a provider this many times slower than another is not waited for


@dataclass(slots=True, eq=False)
class PeerState:
    peer_id: str
    last_answer: float
    window: int  # the bytes it may owe: see the invariants
    asked: dict[Cid, Item] = field(default_factory=dict)
    asked_bytes: int = 0
    blocks: int = 0
    bytes: int = 0
    consecutive_dont_have: int = 0
    rate: float = 0.0  # bytes per second it delivered while it owed something (0: not yet known)
    min_wait: float = float("inf")  # the shortest time from asking to its answer (≈ a round trip)
    sample_since: float | None = None  # start of the current rate sample; None while owed nothing
    sample_bytes: int = 0

    def on_delivered(self, size: int, now: float, limits: FetchLimits) -> None:
        """Count ``size`` bytes answered; after each sample, set the window from the rate."""
        if self.sample_since is None:
            return
        self.sample_bytes += size
        elapsed = now - self.sample_since
        if self.sample_bytes < RATE_SAMPLE_BYTES or elapsed <= 0:
            return
        sample = self.sample_bytes / elapsed
        self.rate = sample if self.rate == 0 else (self.rate + sample) / 2
        self.sample_since, self.sample_bytes = now, 0
        wait = max(self.min_wait, limits.peer_window_min_wait)
        wanted = self.rate * wait * limits.peer_window_round_trips
        self.window = min(int(wanted), limits.peer_window_bytes)  # (one block is always allowed)

    def slow_since(self, rate: float) -> float | None:
        """From when this provider is known to deliver under ``rate / SLOW_PROVIDER_FACTOR``
        (None: it is not known to). Before its rate is measured, it is known once
        what it delivered since first asked, and one block more, is too little for
        the time: so a slow provider's first window is not waited for either."""
        if self.rate > 0:
            return -math.inf if self.rate * SLOW_PROVIDER_FACTOR < rate else None
        if self.sample_since is None or not self.asked or rate <= 0:
            return None
        next_block = self.asked_bytes / len(self.asked)
        return self.sample_since + SLOW_PROVIDER_FACTOR * (self.sample_bytes + next_block) / rate


def first_window(limits: FetchLimits) -> int:
    return min(limits.first_peer_window_bytes, limits.peer_window_bytes)


class FetchSchedule:
    """The blocks of one fetch and the providers working on them."""

    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        self.items: dict[Cid, Item] = {}
        self.ready: deque[Item] = deque()
        self.in_flight: set[Item] = set()
        self.unavailable: list[Item] = []
        self.peers: dict[str, PeerState] = {}
        self.asked_bytes = 0  # expected bytes of every outstanding request
        self.storing_bytes = 0  # bytes received and being stored
        self.duplicates = 0

    # -- the walk -------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """No block found missing is still waiting (the caller also checks its walk)."""
        return not self.items

    def pending(self, cid: Cid) -> bool:
        return cid in self.items

    def add_missing(self, cid: Cid, depth: int, size: int | None) -> None:
        item = Item(cid, depth, size)
        self.items[cid] = item
        self.ready.append(item)

    def first_missing(self) -> Cid | None:
        return next(iter(self.items), None)

    # -- providers ------------------------------------------------------------

    def add_peer(self, peer_id: str, now: float) -> None:
        self.peers[peer_id] = PeerState(peer_id, last_answer=now, window=first_window(self.limits))
        # A block every provider declined may be had from the newcomer.
        self.ready.extendleft(reversed(self.unavailable))
        self.unavailable.clear()

    def remove_peer(self, peer_id: str) -> None:
        """Forget a provider; what it was asked goes back to the others."""
        peer = self.peers.pop(peer_id, None)
        if peer is None:
            return
        for item in reversed(peer.asked.values()):  # requeued to the front, in asking order
            item.asked.pop(peer_id, None)
            self.asked_bytes -= item.cost
            if not item.asked and not item.storing:
                self._requeue(item)
        peer.asked.clear()
        stranded = [item for item in self.ready if self._declined_by_all(item)]
        for item in stranded:
            self.ready.remove(item)
            self.unavailable.append(item)

    def stalled(self, now: float) -> list[str]:
        """Providers that owe answers and have sent none for ``stall_timeout``."""
        timeout = self.limits.stall_timeout
        return [
            peer.peer_id
            for peer in self.peers.values()
            if peer.asked and now - peer.last_answer > timeout
        ]

    # -- asking ---------------------------------------------------------------

    def take_work(self, peer_id: str, now: float, *, walk_done: bool) -> list[Item]:
        """Blocks to ask ``peer_id`` for now (at most one WANT's worth), within the windows.

        ``walk_done``: the walk has found every block; then, with nothing new
        to ask, requests another provider owes are asked of this one too once
        due (the end game: see ``_endgame_due``).
        """
        peer = self.peers[peer_id]
        batch: list[Item] = []
        if peer.asked_bytes > peer.window // 2:
            # Top up a provider's queue only once it is half empty: one WANT of
            # many CIDs instead of one WANT (and one wake-up) per answer.
            return batch
        skipped: list[Item] = []
        while self.ready and len(batch) < MAX_CIDS_PER_WANT:
            item = self.ready[0]
            if peer_id in item.declined:
                skipped.append(self.ready.popleft())
                continue
            if not self._fits(peer, item):
                break
            self.ready.popleft()
            self.in_flight.add(item)
            self._ask(peer, item, now)
            batch.append(item)
        self.ready.extendleft(reversed(skipped))
        if walk_done and not self.ready:
            for item in list(self.in_flight):
                if len(batch) == MAX_CIDS_PER_WANT:
                    break
                due = self._endgame_due(peer, item)
                if due is not None and due <= now and self._fits(peer, item):
                    self._ask(peer, item, now)
                    batch.append(item)
        return batch

    def endgame_at(self, peer_id: str) -> float | None:
        """When the first request another provider owes may also be asked of ``peer_id``."""
        peer = self.peers[peer_id]
        times = [
            due for item in self.in_flight if (due := self._endgame_due(peer, item)) is not None
        ]
        return min(times, default=None)

    def _endgame_due(self, peer: PeerState, item: Item) -> float | None:
        """When ``item`` may also be asked of ``peer`` in the end game (None: not at all).

        After ``endgame_after``; sooner, after four of ``peer``'s round trips,
        if the provider that owes it is known to deliver at under a quarter of
        ``peer``'s measured rate (``PeerState.slow_since``): a slow provider's
        last blocks are not waited for. (Not at once: on a busy machine one
        rate sample can be far off, and each false alarm fetches blocks twice.)
        """
        if len(item.asked) != 1 or item.storing or peer.peer_id in item.declined:
            return None
        ((holder_id, asked_at),) = item.asked.items()
        if holder_id == peer.peer_id:
            return None
        limits = self.limits
        due = asked_at + limits.endgame_after
        holder = self.peers.get(holder_id)
        slow_since = holder.slow_since(peer.rate) if holder is not None else None
        if slow_since is None:
            return due
        round_trip = max(peer.min_wait, limits.peer_window_min_wait)
        sooner = asked_at + limits.peer_window_round_trips * round_trip
        return min(due, max(sooner, slow_since))

    def _fits(self, peer: PeerState, item: Item) -> bool:
        limits = self.limits
        cost = item.cost
        used = self.asked_bytes + self.storing_bytes
        return (
            (used == 0 or used + cost <= limits.window_bytes)
            and (not peer.asked or peer.asked_bytes + cost <= peer.window)
            and len(peer.asked) < limits.max_requests_per_peer
        )

    def _ask(self, peer: PeerState, item: Item, now: float) -> None:
        if not peer.asked:
            peer.last_answer = now  # the stall clock starts when the peer owes something
            peer.sample_since, peer.sample_bytes = now, 0  # and so does its rate's
        item.asked[peer.peer_id] = now
        peer.asked[item.cid] = item
        peer.asked_bytes += item.cost
        self.asked_bytes += item.cost

    # -- answers --------------------------------------------------------------

    def _answered(
        self, peer_id: str, cid: Cid, now: float, what: str, delivered: int = 0
    ) -> tuple[PeerState, Item]:
        peer = self.peers.get(peer_id)
        item = peer.asked.pop(cid, None) if peer is not None else None
        if peer is None or item is None:
            raise WireError(f"unsolicited-{what}", str(cid))
        asked_at = item.asked.pop(peer_id, now)
        peer.min_wait = min(peer.min_wait, now - asked_at)
        peer.asked_bytes -= item.cost
        self.asked_bytes -= item.cost
        peer.last_answer = now
        peer.on_delivered(delivered, now, self.limits)
        if not peer.asked:
            peer.sample_since = None  # owing nothing, it is not slow: stop timing it
        return peer, item

    def on_block(self, peer_id: str, cid: Cid, size: int, now: float) -> Item | None:
        """A provider sent ``cid``'s block: the item to verify and store, or None if a duplicate."""
        peer, item = self._answered(peer_id, cid, now, "block", size)
        peer.consecutive_dont_have = 0
        peer.blocks += 1
        peer.bytes += size
        if item.storing or self.items.get(cid) is not item:
            self.duplicates += 1  # another provider's copy arrived first
            return None
        item.storing = True
        self.in_flight.discard(item)
        self.storing_bytes += size
        return item

    def on_dont_have(self, peer_id: str, cid: Cid, now: float) -> int:
        """A provider lacks ``cid``; returns how many DONT_HAVEs it sent in a row."""
        peer, item = self._answered(peer_id, cid, now, "dont-have")
        item.declined.add(peer_id)
        if not item.asked and not item.storing:
            self._requeue(item)
        peer.consecutive_dont_have += 1
        return peer.consecutive_dont_have

    def on_stored(self, item: Item, size: int) -> None:
        self.storing_bytes -= size
        item.storing = False
        del self.items[item.cid]

    def on_bad_block(self, item: Item, peer_id: str, size: int) -> None:
        """The block ``peer_id`` sent does not match ``item.cid``: ask someone else."""
        self.storing_bytes -= size
        item.storing = False
        item.declined.add(peer_id)
        if item.asked:
            self.in_flight.add(item)  # another provider was asked too (end game)
        else:
            self._requeue(item)

    # -- helpers --------------------------------------------------------------

    def _declined_by_all(self, item: Item) -> bool:
        return all(peer in item.declined for peer in self.peers)

    def _requeue(self, item: Item) -> None:
        """A block no provider is working on goes back to ``ready`` (or ``unavailable``)."""
        self.in_flight.discard(item)
        if self.items.get(item.cid) is not item:
            return  # stored meanwhile, from another provider's copy
        if self.peers and not self._declined_by_all(item):
            self.ready.appendleft(item)
        else:
            self.unavailable.append(item)
