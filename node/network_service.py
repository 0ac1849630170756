"""The network as a service of the daemon: ``Network`` wired to the config, the store and RPC.

``network_service(node)`` (in ``node.daemon.default_services``) builds a
``Network`` from ``[network]`` in ``config.toml``, registers ``peers.list``
and ``peers.connect``, and makes the store's methods fetch what is missing
(``StoreMethods.remote``): ``content.get``, ``content.cat`` and
``records.get`` of something not held here are answered once it is fetched.

Invariants:
* at start, every pinned root is provided; every record published here
  (``content.add``) and its content are provided as soon as they are stored;
* a record fetched by id is verified against that id before it is stored,
  and its content is then asked of its author first;
* nothing is fetched before ``run`` has started the network; a fetch with no
  peer connected (after a few seconds' grace for the bootstrap) fails at once
  instead of waiting for the fetcher to give up; every task stops when ``run``
  is cancelled;
* the peer set is compared whenever a connection opens or closes (and every
  ``PEER_CHECK_SECONDS`` besides); changes are published as
  ``peer.connected`` / ``peer.disconnected``, and a blocked peer is
  disconnected as soon as it connects.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import trio

from node.config import ConfigError
from node.errors import NotFound
from node.fetch_outcome import FetchError, FetchProgress
from node.fetch_schedule import MIB, FetchLimits
from node.host import DialError, ListenError
from node.jsonrpc import RpcError
from node.network import Network, NetworkConfig
from node.rpc_api_peers import PEER_CONNECTED, PEER_DISCONNECTED, PEERS_CONNECT, PEERS_LIST
from node.rpc_methods import ReportProgress
from node.rpc_params import ConnectParams, NoParams
from node.rpc_schema import INVALID_INPUT, NETWORK_ERROR
from node.rpc_server import Call
from node.transfer import content_is_complete
from protocol.cid import RAW, Cid
from protocol.records import Contribution, InvalidRecord, SignedRecord, verify_record_bytes

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from node.daemon import Node
    from node.seed import SeedPolicies

logger = logging.getLogger(__name__)

PEER_CHECK_SECONDS = 5.0
FIRST_PEER_SECONDS = 3.0  # how long a fetch waits for a first peer (bootstrap at start)
PROGRESS_SECONDS = 0.1  # at most ten progress reports a second per fetch
PROVIDE_QUEUE = 1024
_BAD_ADDRESS = frozenset({"bad-address", "bad-peer-id", "self-dial"})  # the caller's mistake


def network_config(node: Node) -> NetworkConfig:
    """The ``NetworkConfig`` that ``config.toml`` describes."""
    settings = node.config.network
    window = settings.fetch_window_mib * MIB
    seed = node.config.profile == "seed"
    return NetworkConfig(
        listen_addrs=settings.listen,
        bootstrap=settings.bootstrap,
        enable_mdns=settings.mdns,
        max_connections=settings.max_connections,
        reprovide_interval=node.config.seed.reprovide_hours * 3600.0 if seed else 12 * 3600.0,
        fetch=FetchLimits(
            window_bytes=window,
            peer_window_bytes=min(window, 16 * MIB),
            give_up_after=float(settings.fetch_give_up_seconds),
        ),
    )


def network_service(node: Node) -> NetworkService:
    """The ``ServiceFactory`` of the network (see ``node.daemon``)."""
    return NetworkService(node, Network(node.store, node.identity.seed, network_config(node)))


class NoPeers(NotFound):
    """Something to fetch while no peer is connected (``not found``, in RPC terms)."""

    def __init__(self, cid: Cid) -> None:
        super().__init__("block", cid)

    def __str__(self) -> str:
        return (
            f"{self.name}: not in the local store, and no peers are connected to fetch it from"
            " (set [network] bootstrap or run `remixnet connect`)"
        )


class BlockedRecord(NotFound):
    """A record by an author this node blocks (``not found``, in RPC terms)."""

    def __init__(self, record_id: Cid) -> None:
        super().__init__("record", record_id)

    def __str__(self) -> str:
        return f"record {self.name} is by an author this node blocks (remixnet seed unblock)"


class NetworkService:
    """Runs one ``Network`` for the daemon; serves the peers methods and missing content."""

    name = "network"

    def __init__(self, node: Node, network: Network) -> None:
        self.node = node
        self.network = network
        self._running = False
        self._peers_connected = trio.Event()  # set while the peer watcher sees any peer
        self._to_provide_send, self._to_provide = trio.open_memory_channel[Cid](PROVIDE_QUEUE)
        self.policies: SeedPolicies | None = None  # set by node.seed.seed_service
        node.methods.register(PEERS_LIST, self.peers_list)
        node.methods.register(PEERS_CONNECT, self.peers_connect)

    # -- lifecycle ---------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the network; ``task_status.started()`` once it listens.

        Raises ``ConfigError`` (one line for the CLI) when a listen address is taken.
        """
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(self.network.run)
            except ListenError as error:
                raise ConfigError(f"{error} (see [network] listen in config.toml)") from None
            try:
                pins = await trio.to_thread.run_sync(self.node.store.pins)
                nursery.start_soon(self._provide_pins, [root for root, _ in pins])
                nursery.start_soon(self._provide_new)
                nursery.start_soon(self._watch_peers)
                if self.node.store_methods is not None:
                    self.node.store_methods.remote = self
                self._running = True
                task_status.started()
                logger.debug("listening on %s", self.network.listen_addrs())
                await trio.sleep_forever()
            finally:
                self._running = False
                if self.node.store_methods is not None:
                    self.node.store_methods.remote = None

    def node_info(self) -> Mapping[str, object]:
        """``listen_addrs``: the addresses bound, each ending in ``/p2p/<peer id>``."""
        return {"listen_addrs": self.network.listen_addrs() if self._running else []}

    def statistics(self) -> dict[str, object]:
        return self.network.statistics()

    # -- providing -----------------------------------------------------------------

    async def _provide_pins(self, roots: list[Cid]) -> None:
        for root in roots:
            await self.network.provide(root)

    def provide_nowait(self, root: Cid) -> None:
        """Queue ``root`` (just published here) to be provided; never blocks."""
        try:
            self._to_provide_send.send_nowait(root)
        except trio.WouldBlock:
            logger.warning("too many roots waiting to be provided; %s skipped", root)

    async def _provide_new(self) -> None:
        async for root in self._to_provide:
            await self.network.provide(root)

    # -- peers ---------------------------------------------------------------------

    async def _watch_peers(self) -> None:
        """Publish peer events and disconnect blocked peers, as connections open and close.

        Each change looks at its one peer (reading every peer costs ~8 µs each,
        16 ms for a seed's 2,000); all of them are read at start and then every
        ``PEER_CHECK_SECONDS``, a safety net in case a notification is missed.
        """
        host = self.network.host
        known: set[str] = set()
        read_all = True
        while True:
            changed = host.take_peer_changes()  # before reading: see take_peer_changes
            if read_all:
                connected = set(host.connected_peer_ids())
                changed = known | connected
            else:
                connected = {peer_id for peer_id in changed if host.is_connected(peer_id)}
            refused = {peer_id for peer_id in connected if self._refuses_peer(peer_id)}
            for peer_id in sorted(refused):
                logger.info("disconnecting blocked peer %s", peer_id)
                await host.disconnect(peer_id)
            connected -= refused
            for peer_id in sorted(connected - known):
                self.node.events.publish(PEER_CONNECTED.name, {"peer_id": peer_id})
            for peer_id in sorted((changed & known) - connected):
                self.node.events.publish(PEER_DISCONNECTED.name, {"peer_id": peer_id})
            known = (known - changed) | connected
            if known:
                self._peers_connected.set()
            elif self._peers_connected.is_set():
                self._peers_connected = trio.Event()
            with trio.move_on_after(PEER_CHECK_SECONDS) as waited:
                await host.peer_changes().wait()
            read_all = waited.cancelled_caught

    def _refuses_peer(self, peer_id: str) -> bool:
        return self.policies is not None and self.policies.refuses_peer(peer_id)

    async def peers_list(self, params: NoParams, call: Call) -> dict[str, object]:
        return {"peers": self.network.peers()}

    async def peers_connect(self, params: ConnectParams, call: Call) -> dict[str, object]:
        try:
            peer_id = await self.network.connect(params.address)
        except DialError as error:
            code = INVALID_INPUT if error.reason in _BAD_ADDRESS else NETWORK_ERROR
            raise RpcError(
                code,
                f"cannot connect to {params.address}: {error}",
                {"reason": error.reason, "error": "DialError"},
            ) from None
        return {"peer_id": peer_id}

    # -- missing content (StoreMethods.remote) ---------------------------------------

    async def fetch_record(self, record_id: Cid) -> None:
        """Fetch, verify and store the record ``record_id`` unless it is here.

        With no peer to ask, returns: the caller then reports the record unknown.
        """
        with contextlib.suppress(NoPeers):
            await self.record(record_id)

    async def record(self, record_id: Cid) -> SignedRecord | None:
        """The record ``record_id``, fetched when missing; None when ``record_id`` is no record.

        Raises ``BlockedRecord`` for a record the seed policies refuse (a blocked
        author's: not stored), ``NoPeers`` or ``RpcError`` when it cannot be fetched.
        """
        store = self.node.store
        if await trio.to_thread.run_sync(store.has_record, record_id):
            return await trio.to_thread.run_sync(store.get_record, record_id)
        if record_id.codec != RAW:
            return None
        if not await trio.to_thread.run_sync(store.has_block, record_id):
            await self._fetch(record_id, pin=False, hint=(), report=None)
        data = await trio.to_thread.run_sync(store.get_block, record_id)
        try:
            record = verify_record_bytes(data, expected_id=record_id)
        except InvalidRecord:
            return None  # a raw block of plain content
        if self.policies is not None and self.policies.refuses_record(record):
            await trio.to_thread.run_sync(store.delete_blocks, [record_id])  # never served
            raise BlockedRecord(record_id)
        await trio.to_thread.run_sync(store.put_record, record)
        return record

    async def fetch_content(
        self, cid: Cid, *, pin: bool, report: ReportProgress
    ) -> dict[str, object] | None:
        """Fetch what is missing of ``cid`` (content, or a record and its content)."""
        record = await self.record(cid)
        root = cid
        hint: tuple[str, ...] = ()
        if record is not None and isinstance(record.body, Contribution):
            root, hint = record.body.content, (record.author_id,)
        elif record is not None:
            return None  # a record without content: nothing more to fetch
        if await trio.to_thread.run_sync(content_is_complete, self.node.store, root):
            return None
        return await self._fetch(root, pin=pin, hint=hint, report=report)

    async def _fetch(
        self, root: Cid, *, pin: bool, hint: tuple[str, ...], report: ReportProgress | None
    ) -> dict[str, object]:
        if not self._running:
            raise RpcError(NETWORK_ERROR, "the network is not running", {"reason": "offline"})
        if self.network.config.bootstrap and not self.network.host.connected_peer_ids():
            with trio.move_on_after(FIRST_PEER_SECONDS):
                await self._peers_connected.wait()  # bootstrap peers are being dialled at start
        if not self.network.host.connected_peer_ids():
            raise NoPeers(root)
        last_report = -math.inf

        def on_progress(progress: FetchProgress) -> None:
            nonlocal last_report
            now = trio.current_time()
            if report is not None and now - last_report >= PROGRESS_SECONDS:
                last_report = now
                report(progress.bytes_fetched + progress.bytes_present, progress.total_bytes)

        try:
            result = await self.network.fetch(
                root, providers_hint=hint, pin=pin, on_progress=on_progress
            )
        except FetchError as error:
            raise RpcError(
                error.rpc_code,  # not found (no provider has it), or integrity (a bad DAG)
                f"cannot fetch {root}: {error}",
                {"what": "block", "name": str(root), "reason": error.reason, "error": "FetchError"},
            ) from None
        if report is not None and result.total_bytes is not None:
            report(result.bytes_fetched + result.bytes_present, result.total_bytes)
        return result.to_json()
