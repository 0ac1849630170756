"""The network service of a node: host, DHT, block server and fetcher, wired together.

The daemon owns one ``Network`` and runs it in its root nursery::

    network = Network(store, identity.seed, NetworkConfig(listen_addrs=..., bootstrap=...))
    await nursery.start(network.run)           # returns once listening
    await network.fetch(root, providers_hint=[author_id], pin=True, on_progress=...)

Invariants:
* the node's libp2p identity is its Ed25519 key: ``peer_id`` is the author id;
* every inbound ``/remixnet/blocks/1.0.0`` stream is served by one
  ``BlockServer``; misbehaving peers (protocol errors, blocks that do not
  match their CID) are banned for both serving and fetching through one
  ``PeerBans``;
* every root given to ``provide`` (the daemon calls it for each pin, and
  ``fetch(pin=True)`` does for what it pins) is announced in the DHT now and
  again every ``reprovide_interval``; a root announced while no DHT peer was
  known is announced as soon as one is;
* ``fetch``, ``provide`` and ``connect`` need ``run`` to be running and raise
  ``RuntimeError`` otherwise; everything stops when ``run`` is cancelled.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from node.exchange import BlockServer, PeerBans, ServeLimits
from node.fetch import Fetcher
from node.fetch_outcome import FetchResult, ProgressCallback
from node.fetch_schedule import FetchLimits
from node.host import Host, HostConfig, check_ports_free
from node.store import Store
from protocol.cid import Cid
from protocol.wire import PROTOCOL_ID

if TYPE_CHECKING:
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)

PIN_REASON = "fetched"
REPROVIDE_CHECK = 30.0  # seconds between checks for roots due to be announced


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """What the daemon's configuration decides about the network."""

    listen_addrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: tuple[str, ...] = ()  # seed nodes: multiaddrs ending in /p2p/<peer id>
    enable_mdns: bool = False
    dht_server: bool = True
    max_connections: int = 300
    reprovide_interval: float = 12 * 3600.0  # DHT provider records live 24 h
    serve: ServeLimits = field(default_factory=ServeLimits)
    fetch: FetchLimits = field(default_factory=FetchLimits)


class Network:
    """One node's presence on the network. Run it with ``nursery.start(network.run)``."""

    def __init__(
        self,
        store: Store,
        seed: bytes,
        config: NetworkConfig = NetworkConfig(),
        *,
        block_server: BlockServer | None = None,
    ) -> None:
        """``seed``: the node's 32-byte Ed25519 seed (``DataDir.load_identity().seed``).

        ``block_server`` replaces the default server (tests pass misbehaving
        subclasses); it is made to share this network's bans.
        """
        self.config = config
        self.store = store
        self.bans = PeerBans()
        self.host = Host(
            seed,
            HostConfig(
                listen_addrs=config.listen_addrs,
                bootstrap=config.bootstrap,
                enable_mdns=config.enable_mdns,
                dht_server=config.dht_server,
                max_connections=config.max_connections,
            ),
        )
        if block_server is None:
            block_server = BlockServer(store, config.serve, self.bans)
        else:
            block_server.bans = self.bans
        self.server = block_server
        self.fetcher = Fetcher(self.host, store, self.bans, config.fetch)
        self.host.set_stream_handler(PROTOCOL_ID, self.server.handle_stream)
        self._provided: dict[Cid, float] = {}  # root -> when last accepted by a DHT peer
        self._reprovide_now = trio.Event()
        self._nursery: trio.Nursery | None = None

    # -- identity and lifecycle --------------------------------------------------

    @property
    def peer_id(self) -> str:
        """This node's peer id, which is also its author id."""
        return self.host.peer_id

    def listen_addrs(self) -> list[str]:
        """Where others can dial this node: multiaddrs ending in ``/p2p/<peer id>``."""
        return self.host.listen_addrs()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started()`` once listening.

        Raises ``ListenError`` (not wrapped in a group) when a listen address is taken.
        """
        check_ports_free(self.config.listen_addrs)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.host.run)
            nursery.start_soon(self._reprovide)
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self.server.close()

    def _require_running(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("the network is not running: start Network.run first")
        return self._nursery

    # -- peers -------------------------------------------------------------------

    async def connect(self, multiaddr: str) -> str:
        """Dial a peer (``/ip4/…/tcp/…/p2p/<id>``); return its peer id. Raises ``DialError``."""
        self._require_running()
        return await self.host.connect(multiaddr)

    def peers(self) -> list[dict[str, object]]:
        """Connected peers: ``{"peer_id", "addrs", "streams"}`` each."""
        return self.host.peers()

    # -- content -----------------------------------------------------------------

    async def fetch(
        self,
        root: Cid,
        *,
        providers_hint: Sequence[str] = (),
        pin: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> FetchResult:
        """Fetch the DAG at ``root`` into the store (see ``node.fetch``).

        With ``pin``, pin ``root`` once every block is stored and start
        providing it. Raises ``FetchError``.
        """
        self._require_running()
        result = await self.fetcher.fetch(
            root, providers_hint=providers_hint, on_progress=on_progress
        )
        if pin:
            await trio.to_thread.run_sync(self.store.pin, root, PIN_REASON)
            self._provided.setdefault(root, float("-inf"))
            self._reprovide_now.set()
            result = dataclasses.replace(result, pinned=True)
        return result

    async def provide(self, root: Cid) -> bool:
        """Announce ``root`` in the DHT now and keep announcing it.

        Returns whether a DHT peer accepted the announcement now; when none
        did (no peers yet), it is announced as soon as there are some.
        """
        self._require_running()
        self._provided.setdefault(root, float("-inf"))
        return await self._announce(root)

    def stop_providing(self, root: Cid) -> None:
        """Stop re-announcing ``root`` (after an unpin); records elsewhere expire in 24 h."""
        self._provided.pop(root, None)
        self.host.stop_providing(root)

    async def _announce(self, root: Cid) -> bool:
        accepted = await self.host.provide(root)
        if accepted and root in self._provided:
            self._provided[root] = trio.current_time()
        return accepted

    async def _reprovide(self) -> None:
        interval = self.config.reprovide_interval
        while True:
            with trio.move_on_after(min(REPROVIDE_CHECK, interval)):
                await self._reprovide_now.wait()
            self._reprovide_now = trio.Event()
            if self.host.routing_table_size() == 0:
                continue
            now = trio.current_time()
            due = [root for root, last in self._provided.items() if now - last >= interval]
            for root in due:
                await self._announce(root)

    # -- statistics --------------------------------------------------------------

    def statistics(self) -> dict[str, object]:
        """Counters for ``status`` and benchmarks: host, serving, fetching, providing."""
        return {
            "peer_id": self.peer_id,
            "running": self._nursery is not None,
            "host": self.host.statistics(),
            "serve": self.server.statistics(),
            "fetch": self.fetcher.statistics(),
            "providing": len(self._provided),
            "banned_peers": self.bans.banned(),
        }
