"""The libp2p host: identity, transports, connections, the Kademlia DHT, discovery.

This module is the only one that talks to py-libp2p's host, swarm and DHT
objects, except pubsub (``node.gossip``, through ``libp2p_host``, which also
lets ``node.sync_service`` hear of new connections) and ``node.discovery``
(mDNS and connection callbacks, which the host owns and runs); the rest of
the node sees peer ids as ``str`` (``12D3KooW…``), addresses as multiaddr
``str`` and streams as ``Stream``.

Invariants:
* transports are TCP, security Noise only, muxer Yamux only (DESIGN.md), and
  the host's key is the node's Ed25519 identity, so ``peer_id`` equals
  ``protocol.identity.author_id`` of the node's public key;
* ``run`` owns the py-libp2p host: it is started there and always closed
  there (closing is what releases its sockets), whatever ends ``run``;
* ``find_providers`` returns each peer once and never this node.

py-libp2p 0.8.1 edges handled here are marked ``EDGE:`` (see DESIGN.md).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import Ed25519PrivateKey as Libp2pEd25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.kad_dht import DHTMode, KadDHT
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from libp2p.transport.tcp.tcp import TCPListener
from libp2p.utils.multiaddr_utils import multiaddr_from_socket

import node.transport_edges  # noqa: F401  (py-libp2p data-path workarounds, applied on import)
from node.discovery import DISCOVERED_QUEUE, ConnectionNotifee, MdnsDiscovery
from node.discovery import QuietNotifee as QuietNotifee  # importers find it here
from protocol.cid import SHA2_256, Cid

if TYPE_CHECKING:
    # mypy reads trio through trio-typing's stubs (a dependency of libp2p),
    # which name TaskStatus there rather than in trio.
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)


# EDGE: py-libp2p's identify handler asks the TCP listener for its addresses
# (getsockname of each listening socket). A peer's identify that arrives
# while the host closes finds those sockets closed; getsockname raises EBADF,
# which escapes the host's nursery and fails ``run`` after a fetch that went
# well (bench_seed: about one fetcher in 250). A closed listener has no
# address, so it is left out.
def _open_listener_addrs(self: TCPListener) -> tuple[multiaddr.Multiaddr, ...]:
    return tuple(
        multiaddr_from_socket(listener.socket)
        for listener in self.listeners
        if listener.socket.fileno() != -1
    )


TCPListener.get_addrs = _open_listener_addrs  # type: ignore[method-assign]

# Errors a peer, a socket or py-libp2p may raise when a connection or stream
# fails; callers treat them as "this peer is gone", never as a bug of ours.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    BaseLibp2pError,
    OSError,
    EOFError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)
PEERSTORE_TTL = 3600  # seconds py-libp2p keeps an address we were told about


class Stream(Protocol):
    """The part of a py-libp2p stream the exchange uses."""

    async def read(self, n: int | None = None) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...
    async def reset(self) -> None: ...


StreamHandler = Callable[[Stream, str], Awaitable[None]]


class ListenError(Exception):
    """A listen address is taken (or cannot be bound): the node cannot start."""


class DialError(Exception):
    """A peer could not be dialled: a bad address, ourselves, or unreachable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True)
class HostConfig:
    """What the daemon's configuration decides about the host."""

    listen_addrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: tuple[str, ...] = ()  # full multiaddrs with /p2p/<peer id>
    enable_mdns: bool = False
    dht_server: bool = True  # answer DHT queries (seed nodes and reachable peers)
    bootstrap_interval: float = 60.0  # seconds between checks that bootstrap peers are connected
    max_connections: int = 300  # py-libp2p's default; seed nodes raise it


def check_ports_free(listen_addrs: Sequence[str]) -> None:
    """Raise ``ListenError`` if a fixed TCP port among ``listen_addrs`` is taken.

    EDGE: py-libp2p listens with SO_REUSEPORT, so a second node told to use a
    port that a first one listens on starts without error and the kernel
    splits incoming connections between the two. A plain bind, which
    SO_REUSEPORT sockets refuse, tells whether the port is free.
    """
    for text in listen_addrs:
        address = multiaddr.Multiaddr(text)
        protocols = {protocol.name for protocol in address.protocols()}
        if "tcp" not in protocols:
            continue
        port = int(address.value_for_protocol("tcp"))
        if port == 0:
            continue
        family = socket.AF_INET6 if "ip6" in protocols else socket.AF_INET
        host = address.value_for_protocol("ip6" if "ip6" in protocols else "ip4")
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            try:
                probe.bind((host, port))
            except OSError as error:
                raise ListenError(f"cannot listen on {text}: {error.strerror}") from error


def key_pair_from_seed(seed: bytes) -> KeyPair:
    """The libp2p key pair of the node's 32-byte Ed25519 seed (``identity.key``)."""
    private_key = Libp2pEd25519PrivateKey.from_bytes(seed)
    return KeyPair(private_key, private_key.get_public_key())


def dht_key(cid: Cid) -> bytes:
    """The DHT key of a CID: its sha2-256 multihash, as go-libp2p and IPFS use it."""
    return bytes((SHA2_256, len(cid.digest))) + cid.digest


def parse_peer_id(text: str) -> ID:
    """A peer id parsed from its base58 text. Raises ``DialError("bad-peer-id")``."""
    try:
        return ID.from_base58(text)
    except Exception as error:  # base58 and multihash raise several types
        raise DialError("bad-peer-id", repr(text)[:80]) from error


def parse_peer_address(text: str) -> tuple[ID, list[multiaddr.Multiaddr]]:
    """``/ip4/…/tcp/…/p2p/<id>`` (or just ``/p2p/<id>``) as a peer id and its addresses."""
    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(text))
    except Exception as error:  # multiaddr raises several unrelated types
        raise DialError("bad-address", repr(text)[:120]) from error
    addrs = [addr for addr in info.addrs if str(addr)]
    return info.peer_id, addrs


class Host:
    """A running libp2p host for one node. Use ``run`` in a nursery."""

    def __init__(self, seed: bytes, config: HostConfig = HostConfig()) -> None:
        self.config = config
        key_pair = key_pair_from_seed(seed)
        self._listen = [multiaddr.Multiaddr(addr) for addr in config.listen_addrs]
        # EDGE: new_host offers TLS, secio and plaintext unless sec_opt and
        # muxer_opt are given; and connect() waits ~250 ms per dial unless a
        # peer may have only one connection.
        # Typed Any: py-libp2p's interfaces (IHost) lack what BasicHost and Swarm offer.
        self._libp2p: Any = cast(Any, new_host)(
            key_pair=key_pair,
            sec_opt={
                TProtocol(NOISE_PROTOCOL_ID): NoiseTransport(
                    key_pair, noise_privkey=create_x25519_key_pair().private_key
                )
            },
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            connection_config=ConnectionConfig(
                max_connections_per_peer=1,
                max_connections=config.max_connections,
                high_watermark=config.max_connections,
                low_watermark=min(100, config.max_connections),
                min_connections=min(50, config.max_connections),
            ),
            listen_addrs=self._listen,
            enable_mDNS=config.enable_mdns,
        )
        self._peer_id: ID = self._libp2p.get_id()
        # EDGE: the swarm's AutoConnector dials up to ~150 peers from the
        # peerstore (every provider it ever heard of, peers we disconnected
        # on purpose after a 60 s back-off) to stay between its watermarks.
        # A node here dials whom it decides to: bootstrap peers, providers.
        self._libp2p.get_network().auto_connector.maybe_connect = _no_auto_connect
        self._dht = KadDHT(self._libp2p, DHTMode.SERVER if config.dht_server else DHTMode.CLIENT)
        self._running = False
        self._closed = False
        self._connected_send, self._connected_recv = trio.open_memory_channel[ID](DISCOVERED_QUEUE)
        self._mdns = MdnsDiscovery(self._peer_id, enabled=config.enable_mdns)
        self._peers_changed = trio.Event()
        self._changed_peers: set[str] = set()  # at most one entry per peer, until taken
        notifee = ConnectionNotifee(self._on_connection_opened, self._on_peer_change)
        self._libp2p.get_network().register_notifee(notifee)
        self._stats = {
            "dials": 0,
            "dial_failures": 0,
            "provides": 0,
            "provide_failures": 0,
            "provider_lookups": 0,
        }

    # -- identity and state ---------------------------------------------------

    @property
    def peer_id(self) -> str:
        """This node's peer id (``12D3KooW…``), the author id of its key."""
        return str(self._peer_id.to_base58())

    @property
    def running(self) -> bool:
        return self._running

    def listen_addrs(self) -> list[str]:
        """Addresses others can dial, each ending in ``/p2p/<peer id>``."""
        suffix = f"/p2p/{self.peer_id}"
        addrs = []
        for addr in self._libp2p.get_addrs():
            text = str(addr)
            addrs.append(text if text.endswith(suffix) else text + suffix)
        return addrs

    def libp2p_host(self) -> Any:
        """The py-libp2p host itself, for services built on it (pubsub: ``node.gossip``).

        Build such services before ``run`` starts (they register notifees and
        stream handlers) and run them only once ``run`` has started.
        """
        return self._libp2p

    # -- lifecycle ------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, run the DHT, bootstrap and (optionally) mDNS until cancelled.

        Calls ``task_status.started()`` once listening. The host is closed when
        this returns, whatever the reason; a ``Host`` runs once.
        """
        if self._running or self._closed:
            raise RuntimeError("a Host runs once")
        check_ports_free(self.config.listen_addrs)
        # EDGE: py-libp2p's tasks leak their sockets when they are cancelled
        # (leaving host.run() does not close them); only host.close(), called
        # while those tasks still run, does. So they live in a scope that our
        # caller's cancellation cannot reach, and a cancellation of ``run``
        # closes the host first and only then ends that scope.
        lifetime = trio.CancelScope(shield=True)
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(self._run_libp2p, lifetime)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._running = False
                with trio.CancelScope(shield=True):
                    await self._close()
                lifetime.cancel()

    async def _run_libp2p(
        self, lifetime: trio.CancelScope, *, task_status: TaskStatus[None]
    ) -> None:
        with self._mdns.registered():
            try:
                with lifetime:
                    async with (
                        self._libp2p.run(self._listen),
                        background_trio_service(self._dht),
                        trio.open_nursery() as nursery,
                    ):
                        nursery.start_soon(self._add_connected_to_routing_table)
                        nursery.start_soon(self._mdns.dial_discovered, self._dial_discovered)
                        if self.config.bootstrap:
                            nursery.start_soon(self._keep_bootstrap_connected)
                        self._running = True
                        task_status.started()
                        await trio.sleep_forever()
            finally:
                self._running = False

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with trio.move_on_after(5):
                await self._libp2p.close()
        except Exception:  # closing a half-broken swarm may raise anything; we are leaving
            logger.exception("error while closing the libp2p host")

    # -- connections ----------------------------------------------------------

    async def connect(self, address: str) -> str:
        """Dial ``address`` (a multiaddr ending in ``/p2p/<id>``); return the peer id.

        Returns at once when already connected. Raises ``DialError``.
        """
        peer, addrs = parse_peer_address(address)
        if peer == self._peer_id:
            raise DialError("self-dial", address)
        await self._dial(peer, addrs)
        return str(peer.to_base58())

    async def ensure_connected(self, peer_id: str) -> None:
        """Dial ``peer_id`` at the addresses the peerstore knows, unless connected."""
        peer = parse_peer_id(peer_id)
        if peer == self._peer_id:
            raise DialError("self-dial", peer_id)
        if self.is_connected(peer_id):
            return
        addrs: list[multiaddr.Multiaddr] = []
        if not self._known_addresses(peer):
            # An author id from a record, say: ask the DHT where that peer is.
            try:
                found = await self._dht.find_peer(peer)
            except NETWORK_ERRORS:
                found = None
            if found is None or not found.addrs:
                raise DialError("no-addresses", peer_id)
            addrs = list(found.addrs)
        await self._dial(peer, addrs)

    async def _dial(self, peer: ID, addrs: list[multiaddr.Multiaddr]) -> None:
        self._require_running()
        self._stats["dials"] += 1
        try:
            await self._libp2p.connect(PeerInfo(peer, addrs))
        except NETWORK_ERRORS as error:
            self._stats["dial_failures"] += 1
            raise DialError("unreachable", f"{peer.to_base58()}: {error}") from error
        await self._add_to_routing_table(peer)

    async def disconnect(self, peer_id: str) -> None:
        """Close every connection to ``peer_id`` (no error if there is none)."""
        try:
            await self._libp2p.disconnect(parse_peer_id(peer_id))
        except NETWORK_ERRORS:
            logger.debug("disconnecting %s failed", peer_id, exc_info=True)

    def add_addresses(self, peer_id: str, addrs: Sequence[str]) -> None:
        """Remember where ``peer_id`` can be dialled (from a provider record or a hint)."""
        parsed = []
        for addr in addrs:
            try:
                parsed.append(multiaddr.Multiaddr(addr))
            except Exception:  # an unparsable address from a peer: skip it
                continue
        if parsed:
            self._libp2p.get_peerstore().add_addrs(parse_peer_id(peer_id), parsed, PEERSTORE_TTL)

    def is_connected(self, peer_id: str) -> bool:
        connections = self._libp2p.get_network().get_connections(parse_peer_id(peer_id))
        return bool(connections)

    def peer_changes(self) -> trio.Event:
        """An event set once a connection has opened or closed since ``take_peer_changes``."""
        return self._peers_changed

    def take_peer_changes(self) -> set[str]:
        """The peers whose connections opened or closed since the last call; resets the event.

        Read their state after taking them: a change after that is in the next set.
        """
        changed, self._changed_peers = self._changed_peers, set()
        self._peers_changed = trio.Event()
        return changed

    def _on_peer_change(self, peer: ID) -> None:
        self._changed_peers.add(str(peer.to_base58()))
        self._peers_changed.set()

    def _on_connection_opened(self, peer: ID) -> None:
        self._on_peer_change(peer)
        # When full, the routing table misses a peer it will learn from its queries.
        with suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._connected_send.send_nowait(peer)

    def connected_peer_ids(self) -> list[str]:
        return [str(peer.to_base58()) for peer in self._libp2p.get_connected_peers()]

    def peers(self) -> list[dict[str, object]]:
        """One entry per connected peer: ``peer_id``, ``addrs`` (remote ends), ``streams``."""
        result: list[dict[str, object]] = []
        connections = self._libp2p.get_network().get_connections_map()
        for peer, conns in sorted(connections.items(), key=lambda item: str(item[0])):
            if not conns:
                continue
            addrs: list[str] = []
            streams = 0
            for conn in conns:
                remote = conn.muxed_conn.get_remote_address()
                if remote is not None:
                    host, port = remote
                    family = "ip6" if ":" in str(host) else "ip4"
                    addrs.append(f"/{family}/{host}/tcp/{port}")
                streams += len(conn.get_streams())
            result.append({"peer_id": str(peer.to_base58()), "addrs": addrs, "streams": streams})
        return result

    # -- streams --------------------------------------------------------------

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve ``protocol``: ``handler(stream, remote peer id)`` runs per inbound stream.

        The handler must not raise: an exception escaping it would tear down
        the connection's task group inside py-libp2p.
        """

        async def on_stream(stream: Any) -> None:
            await handler(cast(Stream, stream), str(stream.muxed_conn.peer_id.to_base58()))

        self._libp2p.set_stream_handler(TProtocol(protocol), on_stream)

    async def open_stream(self, peer_id: str, protocol: str) -> Stream:
        """A new stream to ``peer_id`` speaking ``protocol``, dialling if needed.

        Raises ``DialError`` when the peer cannot be reached or refuses the protocol.
        """
        self._require_running()
        peer = parse_peer_id(peer_id)
        try:
            stream = await self._libp2p.new_stream(peer, [TProtocol(protocol)])
        except NETWORK_ERRORS as error:
            raise DialError("stream-failed", f"{peer_id}: {error}") from error
        return cast(Stream, stream)

    # -- DHT ------------------------------------------------------------------

    async def provide(self, cid: Cid) -> bool:
        """Announce in the DHT that this node provides ``cid``.

        Returns True when at least one DHT peer accepted the record (False
        when the routing table is empty: the record is then only local).
        """
        self._require_running()
        store = self._dht.provider_store
        key = dht_key(cid)
        try:
            accepted = bool(await store.provide(key))
        except NETWORK_ERRORS:
            logger.debug("provide %s failed", cid, exc_info=True)
            accepted = False
        # EDGE: the DHT also re-announces every key ever provided, 10 minutes
        # after the first time and then every 22 h, on its own; the node
        # (``Network``) decides when to re-announce, so mark it done now.
        store._last_republish[key] = time.time()
        self._stats["provides" if accepted else "provide_failures"] += 1
        return accepted

    def stop_providing(self, cid: Cid) -> None:
        """Stop the DHT's own re-announcing of ``cid`` (records elsewhere expire in 24 h)."""
        store = self._dht.provider_store
        key = dht_key(cid)
        store.providing_keys.discard(key)
        store._last_republish.pop(key, None)
        ours = store.providers.get(key, {})
        ours.pop(str(self._peer_id), None)

    async def find_providers(self, cid: Cid, count: int = 20) -> list[tuple[str, list[str]]]:
        """Peers that announced ``cid``: ``(peer id, addresses)``, each peer once, never us.

        The addresses are added to the peerstore so that the peers can be dialled.
        """
        self._require_running()
        self._stats["provider_lookups"] += 1
        store = self._dht.provider_store
        key = dht_key(cid)
        # EDGE: ProviderStore.find_providers answers from the local records
        # alone, without asking the network, as soon as it holds any for the
        # key (records other peers stored here, or ones it cached from an
        # earlier lookup): new providers would never be found. So the local
        # records are set aside during the lookup and merged back after it.
        local = store.get_providers(key)
        set_aside = store.providers.pop(key, None)
        try:
            infos = local + await store.find_providers(key, count)
        except NETWORK_ERRORS:
            logger.debug("find_providers %s failed", cid, exc_info=True)
            infos = local
        finally:
            if set_aside:
                records = store.providers.setdefault(key, {})
                for peer_key, record in set_aside.items():
                    records.setdefault(peer_key, record)
        # EDGE: find_providers returns the same peer several times (once per
        # peer that answered with it), with different address lists.
        merged: dict[ID, list[multiaddr.Multiaddr]] = {}
        for info in infos:
            if info.peer_id == self._peer_id:
                continue
            addrs = merged.setdefault(info.peer_id, [])
            addrs.extend(addr for addr in info.addrs if addr not in addrs)
        peerstore = self._libp2p.get_peerstore()
        result = []
        for peer, addrs in merged.items():
            if addrs:
                peerstore.add_addrs(peer, addrs, PEERSTORE_TTL)
            result.append((str(peer.to_base58()), [str(addr) for addr in addrs]))
        return result

    def routing_table_size(self) -> int:
        return int(self._dht.get_routing_table_size())

    async def _add_to_routing_table(self, peer: ID) -> None:
        # EDGE: py-libp2p's KadDHT learns peers only from DHT streams they
        # open to us; peers we dial must be added by hand.
        try:
            await self._dht.add_peer(peer)
        except NETWORK_ERRORS:
            logger.debug("adding %s to the routing table failed", peer, exc_info=True)

    async def _add_connected_to_routing_table(self) -> None:
        async for peer in self._connected_recv:
            if self._dht.routing_table.peer_in_table(peer):
                continue
            # An inbound peer's listen addresses arrive with identify, shortly
            # after the connection; the table needs them.
            for _ in range(3):
                if self._known_addresses(peer):
                    await self._add_to_routing_table(peer)
                    break
                await trio.sleep(1.0)

    def _known_addresses(self, peer: ID) -> list[multiaddr.Multiaddr]:
        try:
            return list(self._libp2p.get_peerstore().addrs(peer))
        except KeyError:  # EDGE: PeerStore.addrs raises PeerStoreError(KeyError) for a new peer
            return []

    # -- discovery ------------------------------------------------------------

    async def _keep_bootstrap_connected(self) -> None:
        while True:
            for address in self.config.bootstrap:
                try:
                    peer, _ = parse_peer_address(address)
                    if not self.is_connected(str(peer.to_base58())):
                        with trio.move_on_after(10):
                            await self.connect(address)
                except DialError as error:
                    logger.info("bootstrap peer %s: %s", address, error)
            await trio.sleep(self.config.bootstrap_interval)

    def discovery_callback(self) -> Callable[[PeerInfo], None]:
        """A function any thread may call with a discovered peer; the host then dials it.

        Call this on the trio thread (see ``MdnsDiscovery.callback``).
        """
        return self._mdns.callback()

    async def _dial_discovered(self, info: PeerInfo) -> None:
        peer_id = str(info.peer_id.to_base58())
        if info.peer_id == self._peer_id or self.is_connected(peer_id):
            return
        try:
            with trio.move_on_after(10):
                await self._dial(info.peer_id, list(info.addrs))
        except DialError as error:
            logger.info("discovered peer %s: %s", peer_id, error)

    # -- statistics -----------------------------------------------------------

    def statistics(self) -> dict[str, object]:
        return {
            "peer_id": self.peer_id,
            "listen_addrs": self.listen_addrs() if self._running else [],
            "connected_peers": len(self._libp2p.get_connected_peers()),
            "routing_table_size": self.routing_table_size(),
            **self._stats,
            **self._mdns.statistics(),
        }

    def _require_running(self) -> None:
        if not self._running:
            raise RuntimeError("the host is not running: start Host.run first")


async def _no_auto_connect() -> None:
    return None
