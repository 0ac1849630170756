"""Catch-up sync over libp2p streams: ``/remixnet/sync/1.0.0`` (transport of ``protocol.sync``).

Gossip loses what a node missed while offline; this service reconciles the
record sets of two nodes when they connect (the side that dialled initiates)
and every ``interval`` seconds (with jitter) with a few connected peers. As
``docs/protocol.md`` ("Catch-up sync", "Transport") says, every message
travels as ``varint(len(message)) message``, the sides alternate until one
sends ``DONE`` or ``STOP``, and both close the stream. Then each side fetches
the records it ``need``s from that peer through the block exchange (a record
is a raw block, which ``Store.get_block`` serves), on one stream.

Invariants:

* a message's length is checked against ``SyncLimits.max_message_size``
  before its body is read; a longer one, a malformed varint or a
  ``SyncError`` resets the stream and is a strike against the peer
  (``strike``: gossip's counter, so gossip and sync share one ban threshold);
* a record fetched is accepted only if it is the id asked for (the block
  exchange checks the CID), valid like a gossip message (``validate``), and
  created at the ``created_ms`` the peer claimed during reconciliation;
  otherwise it is a strike;
* one session per peer at a time; every session (and its fetching) is
  bounded by ``session_timeout``; an unexpected error is logged, never
  allowed to stop the daemon;
* a needed record that ``skips_record`` names (the seed policies: a record
  already refused as a blocked author's) is not fetched: reconciliation finds
  such records missing in every session, and without this each session would
  fetch and refuse them again.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import trio

from node.exchange import refuse_nothing
from node.host import NETWORK_ERRORS, DialError, Host, QuietNotifee, Stream
from node.store import Store
from protocol.cid import Cid
from protocol.records import InvalidRecord, SignedRecord
from protocol.sync import DEFAULT_LIMITS, RecordSet, SyncError, SyncItem, SyncLimits, SyncSession
from protocol.sync_wire import PROTOCOL_ID
from protocol.wire import (
    MAX_CIDS_PER_WANT,
    MAX_OUTSTANDING_PER_STREAM,
    MAX_RESPONSE_FRAME_SIZE,
    Abort,
    BlockData,
    FrameDecoder,
    Want,
    WireError,
    encode,
)
from protocol.wire import PROTOCOL_ID as BLOCKS_PROTOCOL

if TYPE_CHECKING:
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)

FETCH_BATCH: Final = 512  # records fetched, then validated and stored in one transaction
# WANTs of records sent ahead of the answers: as many as a server accepts on one stream.
WANTS_IN_FLIGHT: Final = MAX_OUTSTANDING_PER_STREAM // MAX_CIDS_PER_WANT

UNREACHABLE: Final[tuple[type[BaseException], ...]] = (DialError, *NETWORK_ERRORS)
# Stores records from a peer (``Gossip.accept_many``); returns how many were new.
Accept = Callable[[Sequence[SignedRecord], str], Awaitable[int]]
Validate = Callable[[bytes], SignedRecord]


class FrameError(Exception):
    """The peer sent a malformed or oversized length, or closed the stream mid-message."""


@dataclass(frozen=True, slots=True)
class SyncConfig:
    interval: float = 300.0  # seconds between periodic rounds (plus up to 20 % jitter)
    session_timeout: float = 120.0  # one session and the fetching of what it found
    peers_per_round: int = 3  # connected peers synced with each periodic round
    limits: SyncLimits = DEFAULT_LIMITS


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


async def read_exactly(stream: Stream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.read(size - len(data))
        if not chunk:
            raise FrameError("stream closed mid-message")
        data += chunk
    return bytes(data)


async def read_message(stream: Stream, max_size: int) -> bytes | None:
    """One ``varint(len) message``; None when the stream ends cleanly before it.

    Raises ``FrameError`` for a non-minimal varint, a length of 0 or above
    ``max_size`` (checked before the body is read), or a truncated message.
    """
    length = shift = 0
    for position in range(4):
        byte = await stream.read(1)
        if not byte:
            if position == 0:
                return None
            raise FrameError("stream closed inside a length")
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            if byte[0] == 0 and position > 0:
                raise FrameError("non-minimal length")
            break
    else:
        raise FrameError("length too long")
    if not 1 <= length <= max_size:
        raise FrameError(f"message of {length} bytes")
    return await read_exactly(stream, length)


def record_set(store: Store) -> RecordSet:
    """Worker thread: the store's records as sync items."""
    rows = store.database.query("SELECT created_ms, id FROM records")
    return RecordSet(SyncItem.for_record(ts, Cid.from_bytes(bytes(rid))) for ts, rid in rows)


class SyncService:
    """Runs catch-up sync with connected peers. Build before the host runs."""

    name = "sync"

    def __init__(
        self,
        host: Host,
        store: Store,
        accept: Accept,
        validate: Validate,
        config: SyncConfig = SyncConfig(),
        *,
        strike: Callable[[str], None] | None = None,
    ) -> None:
        """``accept(records, origin)`` stores records (``Gossip.accept_many``); ``validate``
        checks a record's bytes like gossip does; ``strike(peer_id)`` penalises a
        peer. The peer must serve the block exchange (``node.exchange``)."""
        self.host = host
        self.store = store
        self.accept = accept
        self.validate = validate
        self.config = config
        self.strike = strike
        self.skips_record: Callable[[Cid], bool] = refuse_nothing  # set by the seed policies
        self._stats: Counter[str] = Counter()
        self._active: set[str] = set()  # peers with a session running
        self._connected_send, self._connected_recv = trio.open_memory_channel[str](256)
        host.libp2p_host().get_network().register_notifee(_Connected(self._connected_send))
        host.set_stream_handler(PROTOCOL_ID, self._handle_stream)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sync on every connection we dial and periodically, until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._on_connect, nursery)
            nursery.start_soon(self._periodically, nursery)
            task_status.started()

    async def _on_connect(self, nursery: trio.Nursery) -> None:
        async for peer_id in self._connected_recv:
            nursery.start_soon(self._sync_quietly, peer_id)

    async def _periodically(self, nursery: trio.Nursery) -> None:
        while True:
            await trio.sleep(self.config.interval * (1 + 0.2 * random.random()))
            peers = self.host.connected_peer_ids()
            random.shuffle(peers)
            for peer_id in peers[: self.config.peers_per_round]:
                nursery.start_soon(self._sync_quietly, peer_id)

    async def _sync_quietly(self, peer_id: str) -> None:
        try:
            await self.sync_with(peer_id)
        except UNREACHABLE:
            self._stats["unreachable"] += 1
        except Exception:  # a bug of ours must not stop the daemon: log it, sync later
            logger.exception("sync with %s failed", peer_id)

    def busy(self, peer_id: str) -> bool:
        """A session with ``peer_id`` (either role, with its fetching) is running."""
        return peer_id in self._active

    # -- sessions --------------------------------------------------------------------

    async def sync_with(self, peer_id: str) -> int:
        """Reconcile with ``peer_id`` and fetch what we lack; return how many records were new.

        Returns 0 at once when a session with that peer is already running.
        Raises ``DialError`` when the peer cannot be reached.
        """
        if peer_id in self._active:
            return 0
        self._active.add(peer_id)
        try:
            with trio.move_on_after(self.config.session_timeout) as scope:
                stream = await self.host.open_stream(peer_id, PROTOCOL_ID)
                self._stats["sessions_initiated"] += 1
                items = await trio.to_thread.run_sync(record_set, self.store)
                session, first = SyncSession.initiate(items, limits=self.config.limits)
                if not await self._converse(peer_id, stream, session, first):
                    return 0
                return await self._fetch_needed(peer_id, session)
            if scope.cancelled_caught:
                self._stats["timeouts"] += 1
            return 0
        finally:
            self._active.discard(peer_id)

    async def _handle_stream(self, stream: Stream, peer_id: str) -> None:
        if peer_id in self._active:  # one session per peer at a time
            with suppress(*NETWORK_ERRORS):
                await stream.reset()
            return
        self._active.add(peer_id)
        try:
            with trio.move_on_after(self.config.session_timeout):
                self._stats["sessions_answered"] += 1
                items = await trio.to_thread.run_sync(record_set, self.store)
                session = SyncSession.respond(items, limits=self.config.limits)
                if await self._converse(peer_id, stream, session, None):
                    await self._fetch_needed(peer_id, session)
        except NETWORK_ERRORS:
            pass
        except Exception:  # must not escape into py-libp2p (see Host.set_stream_handler)
            logger.exception("sync with %s failed", peer_id)
        finally:
            self._active.discard(peer_id)

    async def _converse(
        self, peer_id: str, stream: Stream, session: SyncSession, first: bytes | None
    ) -> bool:
        """Exchange messages until the session is done; False (stream reset) on the peer's error."""
        limit = self.config.limits.max_message_size
        try:
            if first is not None:
                await self._send(stream, first)
            while not session.done:
                message = await read_message(stream, limit)
                if message is None:
                    raise FrameError("stream closed before the session ended")
                self._stats["bytes_received"] += len(message) + len(encode_varint(len(message)))
                reply = session.receive(message)
                if reply is not None:
                    await self._send(stream, reply)
        except (SyncError, FrameError) as error:
            self._penalise(peer_id, error)
            with suppress(*NETWORK_ERRORS):
                await stream.reset()
            return False
        with suppress(*NETWORK_ERRORS):
            await stream.close()
        self._stats["sessions_completed"] += 1
        return True

    async def _send(self, stream: Stream, message: bytes) -> None:
        frame = encode_varint(len(message)) + message
        await stream.write(frame)
        self._stats["bytes_sent"] += len(frame)

    # -- fetching what a session found missing -----------------------------------------

    async def _fetch_needed(self, peer_id: str, session: SyncSession) -> int:
        wanted = list(session.need_items)
        self._stats["records_needed"] += len(wanted)
        present = await trio.to_thread.run_sync(
            lambda: {item for item in wanted if self.store.has_record(item.cid)}
        )
        wanted = [item for item in wanted if item not in present]  # gossip brought them
        kept = [item for item in wanted if not self.skips_record(item.cid)]
        self._stats["records_skipped"] += len(wanted) - len(kept)
        wanted = kept
        if not wanted:
            return 0
        claimed = {item.cid: item.created_ms for item in wanted}
        new = received = 0

        def check(found: dict[Cid, bytes]) -> tuple[list[SignedRecord], list[InvalidRecord]]:
            """Worker thread: the valid records, and what is wrong with the others."""
            records, errors = [], []
            for cid, data in found.items():
                try:
                    record = self.validate(data)
                    if record.id != cid or record.created_ms != claimed[cid]:
                        raise InvalidRecord("wrong-id", "not the record, or not when the peer said")
                except InvalidRecord as error:
                    errors.append(error)
                    continue
                records.append(record)
            return records, errors

        async def store_batches(batches: trio.MemoryReceiveChannel[dict[Cid, bytes]]) -> None:
            nonlocal new
            async with batches:
                async for found in batches:
                    records, errors = await trio.to_thread.run_sync(check, found)
                    for error in errors:
                        self._penalise(peer_id, error)
                    stored = await self.accept(records, "sync")
                    new += stored
                    self._stats["records_received"] += stored

        async def deliver(found: dict[Cid, bytes]) -> None:
            nonlocal received
            received += len(found)
            await send_batch.send(found)

        # Batches are checked and stored while the next ones are fetched; at most one
        # waits, so memory stays bounded (a slow store slows the fetching down).
        send_batch, receive_batch = trio.open_memory_channel[dict[Cid, bytes]](1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store_batches, receive_batch)
            async with send_batch:
                try:
                    await self.fetch_records(peer_id, list(claimed), deliver)
                except (FrameError, WireError) as error:
                    self._penalise(peer_id, error)
        self._stats["records_missing"] += len(wanted) - received
        return new

    async def fetch_records(
        self,
        peer_id: str,
        record_ids: list[Cid],
        deliver: Callable[[dict[Cid, bytes]], Awaitable[None]],
    ) -> None:
        """Fetch the records ``record_ids`` from ``peer_id`` by block exchange.

        Hands what the peer serves to ``deliver`` in batches of at most
        ``FETCH_BATCH`` records (so memory stays bounded and each batch is
        stored in one transaction). One ``/remixnet/blocks/1.0.0`` stream,
        ``WANT``s of ``MAX_CIDS_PER_WANT``, ``WANTS_IN_FLIGHT`` ahead; every
        block is checked against its CID. Raises ``FrameError``/``WireError``
        when the peer breaks the protocol.

        Why one stream rather than a ``Fetcher.fetch`` per record: each of those
        opens a stream, and a server counts a peer's streams (at most 4) until
        it notices a close, so fast sequential fetches were refused and retried
        5 s later (measured: 8 s for 55 records, against well under a second).
        """
        stream = await self.host.open_stream(peer_id, BLOCKS_PROTOCOL)
        decoder = FrameDecoder(max_frame_size=MAX_RESPONSE_FRAME_SIZE)
        found: dict[Cid, bytes] = {}
        batches = [
            record_ids[start : start + MAX_CIDS_PER_WANT]
            for start in range(0, len(record_ids), MAX_CIDS_PER_WANT)
        ]
        unanswered: dict[Cid, int] = {}  # record id -> its WANT's number
        owed: dict[int, int] = {}  # WANT number -> answers still owed for it
        sent = 0

        async def send_wants() -> None:  # keep WANTS_IN_FLIGHT requests ahead of the answers
            nonlocal sent
            while sent < len(batches) and len(owed) < WANTS_IN_FLIGHT:
                await stream.write(encode(Want(tuple(batches[sent]))))
                unanswered.update(dict.fromkeys(batches[sent], sent))
                owed[sent] = len(batches[sent])
                sent += 1

        try:
            await send_wants()
            while unanswered:
                data = await stream.read(65536)
                if not data:
                    raise FrameError("the peer closed the stream with answers owed")
                decoder.feed(data)
                while (message := decoder.next_message()) is not None:
                    if isinstance(message, Abort):
                        raise FrameError(f"the peer aborted: {message.reason}")
                    cid = getattr(message, "cid", None)
                    if cid not in unanswered:
                        raise FrameError("an answer to nothing asked")
                    number = unanswered.pop(cid)
                    owed[number] -= 1
                    if not owed[number]:
                        del owed[number]
                    if isinstance(message, BlockData):
                        if not cid.matches(message.data):
                            raise FrameError(f"block {cid} does not match its CID")
                        found[cid] = message.data
                await send_wants()
                if len(found) >= FETCH_BATCH:
                    await deliver(found)
                    found = {}
        finally:
            with suppress(*NETWORK_ERRORS):
                await stream.close()
        if found:
            await deliver(found)

    # -- bookkeeping -----------------------------------------------------------------------

    def _penalise(self, peer_id: str, error: Exception) -> None:
        logger.info("sync with %s: %s", peer_id, error)
        self._stats["peer_errors"] += 1
        if self.strike is not None:
            self.strike(peer_id)

    def statistics(self) -> dict[str, int]:
        keys = (
            "sessions_initiated",
            "sessions_answered",
            "sessions_completed",
            "bytes_sent",
            "bytes_received",
            "records_needed",
            "records_received",
            "records_skipped",
            "peer_errors",
        )
        return {key: self._stats[key] for key in sorted({*keys, *self._stats})}


class _Connected(QuietNotifee):
    """Tells the service of connections this node dialled (``INotifee``), without blocking."""

    def __init__(self, connected: trio.MemorySendChannel[str]) -> None:
        self._connected = connected

    async def connected(self, network: Any, conn: Any) -> None:
        if not getattr(conn.muxed_conn, "is_initiator", True):
            return  # the side that dialled initiates: one session per connection
        with suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._connected.send_nowait(str(conn.muxed_conn.peer_id.to_base58()))
