"""Remix announcements: records over GossipSub (``/remixnet/announce/1``).

A node announces every record it publishes (a message is the record's signed
bytes; its id is the record id) on ``ANNOUNCE_TOPIC``, and a contribution
naming a collab also on ``collab_topic(collab)``. It subscribes to the
announce topic and to the topic of every collab it follows
(``node.social.followed_collabs``; ``set_collab_followed`` changes that while
it runs). It stores every valid record it receives, emits ``record.added``
(origin ``"gossip"``), a ``notification`` for a remix of one of its own
records, and fetches content as ``GossipConfig.auto_fetch`` says.

Invariants:

* every message is validated before it is delivered or forwarded, whatever
  its topics (``validate_announcement``: a canonical, correctly signed,
  schema-valid record of at most ``MAX_RECORD_SIZE`` bytes, created at most
  ``max_clock_skew_ms`` after the node's clock) and, on a collab's topic, a
  contribution to that collab; an invalid message is neither stored, nor
  forwarded, nor delivered;
* the peer that forwarded an invalid message gets a strike; at
  ``invalid_before_ban`` strikes it is blacklisted by pubsub and disconnected;
* every record received (by gossip or by sync) is stored through ``accept``,
  the one place where an incoming record is admitted;
* a received record is stored once (``Store.put_record`` deduplicates), so a
  record that arrives by gossip and by sync emits ``record.added`` once;
* queues are bounded; what overflows is counted in ``statistics()`` and left
  to catch-up sync (``node.sync_service``).

py-libp2p 0.8.1 edges handled here are marked ``EDGE:`` (see DESIGN.md).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.tools.anyio_service import background_trio_service

from node.events import EventBus
from node.host import Host
from node.pubsub_edges import ValidatingPubsub
from node.rpc_api import NOTIFICATION_EVENT, RECORD_ADDED
from node.social import followed_collabs, is_followed, notify_remix, parents_by
from node.store import Store
from protocol.cid import Cid
from protocol.records import (
    MAX_RECORD_SIZE,
    Contribution,
    InvalidRecord,
    SignedRecord,
    decode_record,
    to_json,
)

if TYPE_CHECKING:
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)

ANNOUNCE_TOPIC: Final = "/remixnet/announce/1"
AutoFetch = Literal["none", "lineage-of-mine", "followed", "all"]
AUTO_FETCH_CHOICES: Final[tuple[str, ...]] = ("none", "lineage-of-mine", "followed", "all")
# Origins of record.added that this node announces (records it made or imported).
ANNOUNCED_ORIGINS: Final = frozenset({"local", "import"})
ANNOUNCED_MEMORY: Final = 4096  # recently announced ids remembered, not to announce twice
FetchFunction = Callable[[Cid, Sequence[str]], Awaitable[object]]

# EDGE: py-libp2p's per-peer outbound queue (``RpcQueue``) holds 32 RPCs and
# silently drops what does not fit, so a node publishing a burst faster than
# a peer's sending task drains it would lose announcements. The announce loop
# waits while any peer's queue holds ``OUTBOUND_PACE`` or more.
OUTBOUND_PACE: Final = 16
STORE_BATCH: Final = 512  # received records stored in one transaction at most
VALIDATED_MEMORY: Final = 4096  # validated records awaiting delivery, at most

COUNTERS: Final = frozenset(
    {
        "announced",
        "announce_dropped",
        "valid_messages",
        "invalid_messages",
        "peers_banned",
        "receive_dropped",
        "duplicates",
        "stored_gossip",
        "stored_sync",
        "fetched",
        "fetch_failures",
        "fetch_dropped",
    }
)


COLLAB_TOPIC_PREFIX: Final = "/remixnet/collab/"


def collab_topic(collab: Cid) -> str:
    """The topic of one collab's contributions."""
    return f"{COLLAB_TOPIC_PREFIX}{collab}/1"


def check_topics(record: SignedRecord, topics: Sequence[str]) -> None:
    """Raise ``InvalidRecord`` (``wrong-topic``) unless ``record`` belongs on every collab topic.

    A message on a collab's topic must be a contribution to that collab, so
    that following a collab brings its contributions and nothing else.
    """
    for topic in topics:
        if not topic.startswith(COLLAB_TOPIC_PREFIX):
            continue
        body = record.body
        if not isinstance(body, Contribution) or body.collab is None:
            raise InvalidRecord("wrong-topic", f"not a contribution to a collab, on {topic}")
        if collab_topic(body.collab) != topic:
            raise InvalidRecord("wrong-topic", f"a contribution to {body.collab} on {topic}")


def message_id(message: rpc_pb2.Message) -> bytes:
    """The id of a message: the record id of its data (whatever the data is).

    On a collab's topic the topic's name follows the record id: a record is
    announced in one message per topic (see ``Gossip.announce``), and with one
    id for both, every node would drop the second message as already seen.
    """
    record_id = Cid.for_raw(message.data).to_bytes()
    if len(message.topicIDs) == 1 and message.topicIDs[0] != ANNOUNCE_TOPIC:
        return record_id + message.topicIDs[0].encode()
    return record_id


def validate_announcement(data: bytes, *, now_ms: int, max_clock_skew_ms: int) -> SignedRecord:
    """The record announced by ``data``. Raises ``InvalidRecord``.

    Besides everything ``decode_record`` checks, a record created more than
    ``max_clock_skew_ms`` after ``now_ms`` is ``from-the-future``.
    """
    record = decode_record(data, max_size=MAX_RECORD_SIZE)
    if record.created_ms > now_ms + max_clock_skew_ms:
        raise InvalidRecord(
            "from-the-future", f"created_ms {record.created_ms} > now {now_ms} + skew"
        )
    return record


def _refuse_nothing(record: SignedRecord, peer_id: str | None) -> bool:
    return False


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """What the daemon's ``[gossip]`` configuration decides."""

    auto_fetch: AutoFetch = "lineage-of-mine"
    max_clock_skew_ms: int = 10 * 60 * 1000
    invalid_before_ban: int = 5  # invalid messages from one peer before it is banned
    # Honest bursts (an import of 200 records) must pass GossipSub's spam
    # protection, which counts messages per peer per topic per second.
    max_messages_per_second: float = 2000.0
    receive_queue: int = 4096  # validated messages waiting to be stored
    announce_queue: int = 4096  # local records waiting to be announced
    fetch_queue: int = 256  # contents waiting to be fetched
    heartbeat_interval: int = 1  # seconds between GossipSub heartbeats (mesh upkeep)
    # Records this node's author stored without a record.added event (the CLI
    # writes collabs, productions and acks to the store directly) are found by
    # polling the store this often, and announced.
    own_records_poll: float = 5.0


class Gossip:
    """Announces and receives records. Build before the host runs; run after it started.

    ``fetch(root, providers_hint)`` (the ``Network``'s, when the daemon has
    one) fetches content for ``auto_fetch``; without it nothing is fetched.
    """

    name = "gossip"

    def __init__(
        self,
        host: Host,
        store: Store,
        events: EventBus,
        me: bytes,
        config: GossipConfig = GossipConfig(),
        *,
        fetch: FetchFunction | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.host = host
        self.store = store
        self.events = events
        self.me = me  # this node's raw public key (author)
        self.config = config
        self.fetch = fetch
        self.clock_ms = clock_ms
        self.router = GossipSub(
            protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=config.heartbeat_interval,
            # EDGE: GossipSub's spam protection neither sends nor forwards
            # more than 10 messages per second per peer and topic, the node's
            # own included: an import of 200 records would mostly be lost.
            max_messages_per_topic_per_second=config.max_messages_per_second,
        )
        self.pubsub = ValidatingPubsub(
            host.libp2p_host(), self.router, msg_id_constructor=message_id, cache_size=4096
        )
        self.pubsub.validator = self._validate
        self.pubsub.deliver = self._deliver
        self._received_send, self._received_recv = trio.open_memory_channel[SignedRecord](
            config.receive_queue
        )
        # Records that passed validation, by message data, until delivered: so that a
        # record's signature is verified once, not again when it is stored.
        self._validated: dict[bytes, SignedRecord] = {}
        self._announce_send, self._announce_recv = trio.open_memory_channel[Cid](
            config.announce_queue
        )
        self._fetch_send, self._fetch_recv = trio.open_memory_channel[tuple[Cid, str]](
            config.fetch_queue
        )
        self._ban_send, self._ban_recv = trio.open_memory_channel[ID](64)
        self.strikes: Counter[str] = Counter()
        self.banned: set[str] = set()
        self._invalid_reasons: Counter[str] = Counter()
        self._stats: Counter[str] = Counter()
        self._running = False
        self._announced: dict[Cid, None] = {}  # recently announced ids, oldest first
        # Seed policies (node.seed) set this: a record (from a peer, None for sync) that
        # must be neither stored nor forwarded (a blocked author or peer).
        self.refuse_record: Callable[[SignedRecord, str | None], bool] = _refuse_nothing

    # -- lifecycle ---------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run pubsub, subscribe, announce and receive until cancelled. Needs the host running."""
        subscription = self.events.subscribe(
            frozenset({RECORD_ADDED.name}), self._on_record_added, internal=True
        )
        try:
            async with (
                background_trio_service(self.pubsub),
                background_trio_service(self.router),
                trio.open_nursery() as nursery,
            ):
                await self.pubsub.wait_until_ready()
                await self.pubsub.subscribe(ANNOUNCE_TOPIC)
                collabs = await trio.to_thread.run_sync(followed_collabs, self.store)
                for collab in collabs:
                    await self.pubsub.subscribe(collab_topic(collab))
                nursery.start_soon(self._store_received)
                nursery.start_soon(self._announce_loop)
                nursery.start_soon(self._poll_own_records)
                nursery.start_soon(self._fetch_loop)
                nursery.start_soon(self._ban_loop)
                self._running = True
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._running = False
            subscription.close()

    async def set_collab_followed(self, collab: Cid, followed: bool) -> None:
        """Subscribe to (``followed``) or leave ``collab``'s topic; at start, ``run`` subscribes
        to every collab followed in the store, so this only matters while running."""
        if not self._running:
            return
        topic = collab_topic(collab)
        if followed:
            await self.pubsub.subscribe(topic)
        else:
            await self.pubsub.unsubscribe(topic)

    # -- announcing --------------------------------------------------------------

    def _on_record_added(self, event: str, data: Mapping[str, object]) -> None:
        if data.get("origin") not in ANNOUNCED_ORIGINS:
            return
        record = data.get("record")
        if not isinstance(record, Mapping) or not isinstance(record.get("id"), str):
            return
        try:
            self._announce_send.send_nowait(Cid.parse(str(record["id"])))
        except trio.WouldBlock:
            self._stats["announce_dropped"] += 1  # sync will carry it

    async def announce(self, record: SignedRecord) -> None:
        """Publish ``record`` on the announce topic (and its collab's topic)."""
        topics = [ANNOUNCE_TOPIC]
        body = record.body
        if isinstance(body, Contribution) and body.collab is not None:
            topics.append(collab_topic(body.collab))
        # EDGE: py-libp2p puts every topic in one message (repeated topicIDs)
        # and signs that; js-libp2p's message has a single topic and checks
        # the signature over a re-encoding with only the last one, so a
        # message on two topics fails its check and counts against us. One
        # message per topic (tests/test_js_interop.py).
        for topic in topics:
            await self.pubsub.publish(topic, record.encoded)
        self._stats["announced"] += 1

    async def _poll_own_records(self) -> None:
        watermark = self.clock_ms()
        while True:
            await trio.sleep(self.config.own_records_poll)
            rows = await trio.to_thread.run_sync(
                self.store.database.query,
                "SELECT id, received_ms FROM records WHERE author = ? AND received_ms > ?"
                " ORDER BY received_ms",
                (self.me, watermark),
            )
            for record_id, received_ms in rows:
                watermark = max(watermark, received_ms)
                cid = Cid.from_bytes(bytes(record_id))
                if cid not in self._announced:
                    with suppress(trio.WouldBlock):  # else sync carries it
                        self._announce_send.send_nowait(cid)

    async def _announce_loop(self) -> None:
        async for record_id in self._announce_recv:
            try:
                record = await trio.to_thread.run_sync(self.store.get_record, record_id)
            except Exception:  # deleted meanwhile (or a store error): nothing to announce
                logger.debug("cannot announce %s", record_id, exc_info=True)
                continue
            # Pace a burst: leave room in every peer's outbound queue.
            while self._outbound_backlog() >= OUTBOUND_PACE:  # noqa: ASYNC110
                await trio.sleep(0.01)
            try:
                await self.announce(record)
            except Exception:  # pubsub failing on us: peers get it by sync
                logger.exception("announcing %s failed", record_id)
                continue
            self._announced[record_id] = None
            while len(self._announced) > ANNOUNCED_MEMORY:
                del self._announced[next(iter(self._announced))]

    def _outbound_backlog(self) -> int:
        return max((len(queue) for queue in self.pubsub.peer_queues.values()), default=0)

    # -- validation (called by pubsub, before delivering or forwarding) -----------

    def _validate(self, forwarder: ID, message: rpc_pb2.Message) -> bool:
        try:
            record = self.validate(message.data)
            check_topics(record, message.topicIDs)
        except InvalidRecord as error:
            self._invalid_reasons[error.reason] += 1
            self._stats["invalid_messages"] += 1
            if forwarder != self.pubsub.my_id:
                self._strike(forwarder)
            return False
        if self.refuse_record(record, str(forwarder.to_base58())):
            self._stats["refused"] += 1  # seed policy: not the forwarder's fault, no strike
            return False
        self._stats["valid_messages"] += 1
        self._validated[message.data] = record
        while len(self._validated) > VALIDATED_MEMORY:  # validated, never delivered (not ours)
            del self._validated[next(iter(self._validated))]
        return True

    def validate(self, data: bytes) -> SignedRecord:
        """``validate_announcement`` with this node's clock (sync checks records with it)."""
        return validate_announcement(
            data, now_ms=self.clock_ms(), max_clock_skew_ms=self.config.max_clock_skew_ms
        )

    def strike_peer(self, peer_id: str) -> None:
        """Count one offence of ``peer_id`` (an invalid record, a sync protocol error)."""
        with suppress(ValueError):
            self._strike(ID.from_base58(peer_id))

    def _strike(self, peer: ID) -> None:
        peer_id = str(peer.to_base58())
        self.strikes[peer_id] += 1
        if self.strikes[peer_id] >= self.config.invalid_before_ban and peer_id not in self.banned:
            self.banned.add(peer_id)
            with suppress(trio.WouldBlock):  # else banned at its next invalid message
                self._ban_send.send_nowait(peer)

    async def _ban_loop(self) -> None:
        async for peer in self._ban_recv:
            logger.info("banning %s: too many invalid announcements", peer)
            self.pubsub.add_to_blacklist(peer)
            await self.host.disconnect(str(peer.to_base58()))
            self._stats["peers_banned"] += 1

    # -- receiving -----------------------------------------------------------------

    def _deliver(self, message: rpc_pb2.Message) -> None:
        record = self._validated.pop(message.data, None)
        if ID(message.from_id) == self.pubsub.my_id:
            return  # our own announcement
        if record is None:  # validated so long ago that it was forgotten: check it again
            try:
                record = decode_record(message.data, max_size=MAX_RECORD_SIZE)
            except InvalidRecord:
                return
        try:
            self._received_send.send_nowait(record)
        except trio.WouldBlock:
            self._stats["receive_dropped"] += 1  # sync will carry it

    async def _store_received(self) -> None:
        """Store what arrives in batches: one transaction for whatever is queued, up to
        ``STORE_BATCH`` records (a commit costs an fsync)."""
        async for record in self._received_recv:
            batch = [record]
            while len(batch) < STORE_BATCH:
                try:
                    batch.append(self._received_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await self.accept_many(batch, "gossip")
            except Exception:  # a store error: sync brings the records again later
                logger.exception("storing %d announced records failed", len(batch))

    async def accept(self, record: SignedRecord, origin: str) -> bool:
        """``accept_many`` of one record: True when it was new."""
        return await self.accept_many([record], origin) == 1

    async def accept_many(self, records: Sequence[SignedRecord], origin: str) -> int:
        """Store validated records received from peers; emit their events; maybe fetch content.

        The one place where a record from a peer (by gossip or by sync) is
        admitted into the store: what ``refuse_record`` refuses is dropped, the
        rest is stored in one transaction, and ``record.added`` (and
        notifications) are emitted for the new ones only. Returns how many
        were new.
        """
        admitted = [record for record in records if not self.refuse_record(record, None)]
        self._stats["refused"] += len(records) - len(admitted)
        if not admitted:
            return 0
        outcomes = await trio.to_thread.run_sync(self._store_records, admitted)
        new = 0
        for record, (stored, notifications, fetch) in zip(admitted, outcomes, strict=True):
            if not stored:
                self._stats["duplicates"] += 1
                continue
            new += 1
            self._stats[f"stored_{origin}"] += 1
            self.events.publish(RECORD_ADDED.name, {"record": to_json(record), "origin": origin})
            for notification in notifications:
                self.events.publish(NOTIFICATION_EVENT.name, notification.to_json())
            if fetch and self.fetch is not None:
                body = record.body
                assert isinstance(body, Contribution)
                try:
                    self._fetch_send.send_nowait((body.content, record.author_id))
                except trio.WouldBlock:
                    self._stats["fetch_dropped"] += 1
        return new

    def _store_records(self, records: Sequence[SignedRecord]) -> list[tuple[bool, list[Any], bool]]:
        """Worker thread: store, notify, and decide for each new record whether to fetch content."""
        outcomes: list[tuple[bool, list[Any], bool]] = []
        for record, stored in zip(records, self.store.put_records(records), strict=True):
            if not stored:
                outcomes.append((False, [], False))
                continue
            notifications = notify_remix(self.store, record, self.me)
            outcomes.append((True, notifications, self._wants_content(record)))
        return outcomes

    def _wants_content(self, record: SignedRecord) -> bool:
        policy = self.config.auto_fetch
        if policy == "none" or not isinstance(record.body, Contribution):
            return False
        if policy == "all":
            return True
        if parents_by(self.store, record, self.me):
            return True
        return policy == "followed" and is_followed(self.store, record.author)

    async def _fetch_loop(self) -> None:
        async for content, author in self._fetch_recv:
            if self.fetch is None:
                continue
            try:
                await self.fetch(content, [author])
                self._stats["fetched"] += 1
            except Exception:  # FetchError, no providers…: the user can fetch by hand
                self._stats["fetch_failures"] += 1
                logger.info("auto-fetch of %s failed", content, exc_info=True)

    # -- statistics ------------------------------------------------------------------

    def statistics(self) -> dict[str, object]:
        return {
            "running": self._running,
            "topics": sorted(self.pubsub.topic_ids),
            "mesh_peers": len(self.router.mesh.get(ANNOUNCE_TOPIC, ())),
            "receive_queued": self._received_send.statistics().current_buffer_used,
            **{key: self._stats[key] for key in sorted(COUNTERS | self._stats.keys())},
            "invalid_reasons": dict(self._invalid_reasons),
            "strikes": dict(self.strikes),
            "banned_peers": sorted(self.banned),
        }
