"""The serving side of ``/remixnet/blocks/1.0.0``: answering WANTs from the store.

One ``BlockServer`` serves every inbound stream of the protocol
(``handle_stream`` is registered with the host). Per stream, three tasks:

* the *reader* reads the stream continuously (so the peer's Yamux writer
  never stalls) and queues the wanted CIDs; it enforces the protocol limits;
* the *loader* reads blocks from the store in a worker thread, up to
  ``read_ahead`` at once, and hands them to the sender through a channel
  with room for one such batch;
* the *sender* writes one BLOCK or DONT_HAVE per wanted CID, in order, packed
  into writes of ``WRITE_SIZE`` bytes (one Yamux frame, one Noise message
  each); what is left goes out as soon as no further block is ready.

Invariants and bounds (docs/protocol.md ("Block exchange"), "Limits"):
* a stream holds at most ``max_outstanding_per_stream`` CIDs (36 bytes each)
  and ``2 * read_ahead + 1`` blocks (one batch being read, one queued, one
  being sent; plus under 64 KiB of frames queued to write); a peer holds at
  most ``max_streams_per_peer`` streams and the server ``max_streams``:
  memory is bounded by ``max_streams * (2 * read_ahead + 1) * MAX_BLOCK_SIZE``
  however peers behave;
* at most ``store_threads`` store reads run at once, for all peers together;
* a peer that breaks the protocol (malformed frame, too many requests, a
  message a client must not send) gets ABORT with the reason, its stream is
  closed, and its streams are refused for ``ban_seconds``; other peers are
  unaffected;
* a peer that stops reading is dropped after ``send_timeout`` (or sooner by
  Yamux, whose writer gives up after 5 s without window); a stream with no
  request outstanding is closed after ``idle_timeout``;
* only blocks that match their CID are served (``Store.get_block`` verifies).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import trio

from node.errors import CorruptBlock, NotFound, first_leaf
from node.host import NETWORK_ERRORS, Stream
from node.store import Store
from protocol.cid import Cid
from protocol.wire import (
    MAX_OUTSTANDING_PER_STREAM,
    MAX_REQUEST_FRAME_SIZE,
    MAX_STREAMS_PER_PEER,
    Abort,
    DontHave,
    FrameDecoder,
    Want,
    WireError,
    encode,
    encode_block_header,
)

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024  # bytes asked of the stream per read: a Yamux frame
# EDGE: py-libp2p's Yamux cuts a write into frames of up to 64 KiB of payload
# plus a 12-byte header, and its Noise layer carries at most 65519 plaintext
# bytes per message, so every full frame travels as two Noise messages (one of
# 17 bytes): twice the decryptions, reads and Python per frame on both sides.
# Writing pieces of 65519 - 12 bytes makes each piece one frame and one message.
WRITE_SIZE = 65519 - 12
ABORT_GRACE = 1.0  # seconds to deliver an ABORT and see the peer close


@dataclass(frozen=True, slots=True)
class ServeLimits:
    """Bounds of the serving side. Defaults follow the protocol's limits."""

    max_streams_per_peer: int = MAX_STREAMS_PER_PEER
    max_streams: int = 32
    max_outstanding_per_stream: int = MAX_OUTSTANDING_PER_STREAM
    read_ahead: int = 4  # blocks read from the store ahead of the sender, in one thread call
    store_threads: int = 4
    send_timeout: float = 30.0  # seconds for the peer to take one block
    idle_timeout: float = 60.0  # seconds a stream may sit with nothing asked
    ban_seconds: float = 600.0


class _PeerAborted(Exception):
    """The peer sent ABORT, or the stream broke: stop serving it without blame."""


@dataclass(slots=True)
class _StreamState:
    outstanding: int = 0  # CIDs received in WANTs and not yet answered


class PeerBans:
    """Peers this node neither serves nor fetches from, each until some time (trio clock)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def ban(self, peer_id: str, seconds: float) -> None:
        now = trio.current_time()
        for peer, until in list(self._until.items()):
            if until <= now:
                del self._until[peer]
        self._until[peer_id] = max(self._until.get(peer_id, 0.0), now + seconds)

    def is_banned(self, peer_id: str) -> bool:
        until = self._until.get(peer_id)
        return until is not None and until > trio.current_time()

    def banned(self) -> list[str]:
        return sorted(peer for peer in self._until if self.is_banned(peer))


def refuse_nothing(item: object) -> bool:
    """The default of the seed-policy hooks (refuses_peer, refuses_block, skips_record): none."""
    return False


class BlockServer:
    """Answers block requests from the store. Subclasses may override ``load_blocks``."""

    def __init__(
        self, store: Store, limits: ServeLimits = ServeLimits(), bans: PeerBans | None = None
    ) -> None:
        self.store = store
        self.limits = limits
        self.bans = bans if bans is not None else PeerBans()
        self._store_limiter = trio.CapacityLimiter(limits.store_threads)
        self._streams_by_peer: Counter[str] = Counter()
        self._scopes: set[trio.CancelScope] = set()
        self._closed = False
        # Seed policies (node.seed) set these: peers refused, and blocks never served
        # (a blocked author's records and content).
        self.refuses_peer: Callable[[str], bool] = refuse_nothing
        self.refuses_block: Callable[[Cid], bool] = refuse_nothing
        self._stats = {
            "streams_accepted": 0,
            "streams_refused": 0,
            "requests": 0,
            "blocks_served": 0,
            "bytes_served": 0,
            "dont_haves": 0,
            "protocol_errors": 0,
            "slow_peers_dropped": 0,
        }

    # -- policy ---------------------------------------------------------------

    async def load_blocks(self, cids: list[Cid]) -> list[bytes | None]:
        """The blocks to serve for ``cids`` (None: answer DONT_HAVE), read in one worker thread."""
        return await trio.to_thread.run_sync(self._read_blocks, cids, limiter=self._store_limiter)

    def _read_blocks(self, cids: list[Cid]) -> list[bytes | None]:
        blocks: list[bytes | None] = []
        for cid in cids:
            if self.refuses_block(cid):
                blocks.append(None)
                continue
            try:
                blocks.append(self.store.get_block(cid))  # verified against the CID
            except CorruptBlock:
                logger.warning("not serving %s: the stored copy is corrupt (run fsck)", cid)
                blocks.append(None)
            except NotFound:
                blocks.append(None)
        return blocks

    def close(self) -> None:
        """Stop serving: end every stream being served and refuse new ones."""
        self._closed = True
        for scope in list(self._scopes):
            scope.cancel()

    # -- serving --------------------------------------------------------------

    async def handle_stream(self, stream: Stream, peer_id: str) -> None:
        """Serve one inbound stream until the peer is done. Never raises."""
        limits = self.limits
        if self._closed:
            await _reset(stream)
            return
        if self.bans.is_banned(peer_id) or self.refuses_peer(peer_id):
            self._stats["streams_refused"] += 1
            await _abort(stream, "banned")
            return
        if (
            self._streams_by_peer[peer_id] >= limits.max_streams_per_peer
            or sum(self._streams_by_peer.values()) >= limits.max_streams
        ):
            self._stats["streams_refused"] += 1
            await _abort(stream, "too-many-streams")
            return
        self._stats["streams_accepted"] += 1
        self._streams_by_peer[peer_id] += 1
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                await self._serve(stream, peer_id)
        except Exception:  # a bug of ours must not take the connection down with it
            logger.exception("serving %s failed", peer_id)
            await _reset(stream)
        finally:
            self._scopes.discard(scope)
            self._streams_by_peer[peer_id] -= 1
            if self._streams_by_peer[peer_id] <= 0:
                del self._streams_by_peer[peer_id]

    async def _serve(self, stream: Stream, peer_id: str) -> None:
        state = _StreamState()
        # Capacity = the outstanding limit, which the reader enforces first:
        # the reader never waits on this channel, so it never stops reading.
        requests_send, requests_receive = trio.open_memory_channel[Cid](
            self.limits.max_outstanding_per_stream
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._answer, stream, requests_receive, state)
                await self._read_requests(stream, requests_send, state)
        except* WireError as group:
            error = first_leaf(group)
            self._stats["protocol_errors"] += 1
            logger.info("peer %s broke the block protocol: %s", peer_id, error)
            self.bans.ban(peer_id, self.limits.ban_seconds)
            await _abort(stream, error.reason)
        except* trio.TooSlowError:
            self._stats["slow_peers_dropped"] += 1
            await _reset(stream)
        except* _PeerAborted:
            await _reset(stream)
        except* NETWORK_ERRORS:
            await _reset(stream)

    async def _read_requests(
        self, stream: Stream, requests: trio.MemorySendChannel[Cid], state: _StreamState
    ) -> None:
        decoder = FrameDecoder(max_frame_size=MAX_REQUEST_FRAME_SIZE)
        limit = self.limits.max_outstanding_per_stream
        async with requests:
            while True:
                with trio.move_on_after(self.limits.idle_timeout) as idle:
                    data = await _read(stream)
                if idle.cancelled_caught:
                    if state.outstanding == 0:
                        return  # an idle client: close, as at end of stream
                    continue  # the client is waiting for our answers
                if data is None:
                    raise _PeerAborted("stream broken")
                if not data:
                    decoder.close()  # a close inside a frame is a protocol error
                    return
                decoder.feed(data)
                while (message := decoder.next_message()) is not None:
                    if isinstance(message, Want):
                        self._stats["requests"] += len(message.cids)
                        for cid in message.cids:
                            if state.outstanding >= limit:
                                raise WireError("too-many-requests", f"more than {limit}")
                            state.outstanding += 1
                            requests.send_nowait(cid)
                    elif isinstance(message, Abort):
                        raise _PeerAborted(message.reason)
                    else:
                        raise WireError("unexpected-message", type(message).__name__)

    async def _answer(
        self, stream: Stream, requests: trio.MemoryReceiveChannel[Cid], state: _StreamState
    ) -> None:
        # Room for one batch: the loader reads the next batch while the sender
        # writes this one (unbuffered, the sender waited for every thread call:
        # measured, one-provider fetches ran ~5 % slower).
        loaded_send, loaded_receive = trio.open_memory_channel[tuple[Cid, bytes | None]](
            self.limits.read_ahead
        )
        # Frames queued for the stream, written in pieces of WRITE_SIZE; the tail
        # goes out as soon as no block is ready, so nothing waits on a later block.
        pending = bytearray()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._load, requests, loaded_send)
            async with loaded_receive:
                async for first in loaded_receive:
                    loaded: tuple[Cid, bytes | None] | None = first
                    while loaded is not None:
                        self._queue_answer(pending, *loaded)
                        state.outstanding -= 1
                        del loaded
                        await self._write_pieces(stream, pending, flush=False)
                        try:
                            loaded = loaded_receive.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            loaded = None
                    await self._write_pieces(stream, pending, flush=True)
        # Every request is answered and the client has closed its side.
        await stream.close()

    def _queue_answer(self, pending: bytearray, cid: Cid, data: bytes | None) -> None:
        if data is None:
            pending += encode(DontHave(cid))
            self._stats["dont_haves"] += 1
            return
        pending += encode_block_header(cid, len(data))
        pending += data
        self._stats["blocks_served"] += 1
        self._stats["bytes_served"] += len(data)

    async def _write_pieces(self, stream: Stream, pending: bytearray, *, flush: bool) -> None:
        """Write ``pending`` in pieces of ``WRITE_SIZE``; with ``flush``, the tail too."""
        if len(pending) < WRITE_SIZE and not (flush and pending):
            return
        # One deadline for the lot (at most a block and a piece): cheaper than one per piece.
        with trio.fail_after(self.limits.send_timeout):
            while len(pending) >= WRITE_SIZE or (flush and pending):
                with memoryview(pending) as view:
                    piece = bytes(view[:WRITE_SIZE])  # the one copy out of the buffer
                del pending[:WRITE_SIZE]  # cheap: a bytearray drops its front in place
                await stream.write(piece)

    async def _load(
        self,
        requests: trio.MemoryReceiveChannel[Cid],
        loaded: trio.MemorySendChannel[tuple[Cid, bytes | None]],
    ) -> None:
        async with requests, loaded:
            async for first in requests:
                cids = [first]  # what is queued already, up to read_ahead: one thread call
                while len(cids) < self.limits.read_ahead:
                    try:
                        cids.append(requests.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                blocks = await self.load_blocks(cids)
                for cid, data in zip(cids, blocks, strict=True):
                    await loaded.send((cid, data))
                del blocks

    # -- statistics -----------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        return {
            **self._stats,
            "streams_active": sum(self._streams_by_peer.values()),
            "peers_active": len(self._streams_by_peer),
            "peers_banned": len(self.bans.banned()),
        }


async def _read(stream: Stream) -> bytes | None:
    """The next bytes of ``stream``: ``b""`` when the peer closed it, None when it broke."""
    try:
        return await stream.read(READ_SIZE)
    except EOFError:  # py-libp2p's StreamEOF: a clean close (FIN)
        return b""
    except NETWORK_ERRORS:  # reset, connection lost: not the peer's protocol error
        return None


async def _reset(stream: Stream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(ABORT_GRACE), suppress(*NETWORK_ERRORS):
        await stream.reset()


async def _abort(stream: Stream, reason: str) -> None:
    """Tell the peer why, close our side, drain what it still sends, then reset.

    A Yamux RST can discard data the peer has not read yet, so the ABORT goes
    out with a FIN and the reset comes only after the peer closed or a grace
    period passed.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(ABORT_GRACE):
        try:
            await stream.write(encode(Abort(reason)))
            await stream.close()
            while await stream.read(READ_SIZE):
                pass
        except NETWORK_ERRORS:
            pass
    await _reset(stream)
