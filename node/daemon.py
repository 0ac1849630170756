"""The daemon: wiring and lifecycle of one node, in one root nursery.

``Daemon.run`` opens the store, builds the ``Node`` (what services share),
lets every service factory build its service (and register its RPC methods),
then starts, in order, each service with ``await nursery.start(service.run)``
and the RPC server, writes ``node.json`` and reports itself started. It runs
until ``request_shutdown`` (``node.shutdown``, SIGINT or SIGTERM), then cancels
the root nursery: every service and connection closes, the RPC socket and
``node.json`` are removed and the store is closed.

Plugging in a service (the network, say)::

    def network(node: Node) -> Network:
        settings = NetworkConfig(
            listen_addrs=node.config.network.listen, bootstrap=node.config.network.bootstrap
        )
        service = Network(node.store, node.identity.seed, settings)
        node.methods.register(PEERS_LIST, peers_handler(service))  # spec in node.rpc_api
        return service

    Daemon(data_dir, config, services=[network])    # or in default_services()

A service has ``async run(*, task_status)`` (calls ``task_status.started()``
once ready) and ``statistics()``; if it also has ``node_info()``
(``NodeInfoProvider``), its keys are merged into ``node.json`` and
``node.status`` once it has started (``{"listen_addrs": [...]}``).

Invariants: the daemon only wires things together (no I/O of its own besides
its two files); blocking work runs in worker threads; when ``run`` returns,
nothing it started is left running or open.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import trio

from node.config import Config, ensure_token
from node.daemon_process import (
    notify_systemd,
    remove_node_info,
    rpc_socket_path,
    write_node_info,
)
from node.datadir import DataDir, Identity
from node.events import EventBus
from node.gossip_service import gossip_service
from node.metrics import metrics_service
from node.network_service import network_service
from node.replication import replication_service
from node.rpc_api import NODE_SHUTDOWN, NODE_STATUS
from node.rpc_methods import StoreMethods
from node.rpc_methods_collab import CollabMethods
from node.rpc_params import NoParams
from node.rpc_server import Call, MethodRegistry, RpcServer, ServerLimits
from node.seed import seed_service
from node.social_methods import SocialMethods
from node.storage_service import storage_service
from node.store import Store

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


def version() -> str:
    try:
        return importlib.metadata.version("remixnet")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Service(Protocol):
    """A long-running part of the node, started in the daemon's root nursery.

    Its name in logs and in ``node.status``'s ``services`` is its ``name``
    attribute if it has one, else its class name in lower case.
    """

    async def run(self, *, task_status: TaskStatus[None] = ...) -> None: ...

    def statistics(self) -> Mapping[str, object]: ...


@runtime_checkable
class NodeInfoProvider(Protocol):
    """A service that adds to ``node.json`` and ``node.status`` (e.g. ``listen_addrs``)."""

    def node_info(self) -> Mapping[str, object]: ...


@dataclass(slots=True)
class Node:
    """What the daemon shares with services and RPC handlers; built once the store is open."""

    data_dir: DataDir
    config: Config
    identity: Identity
    store: Store  # blocking and thread-safe: call it through trio.to_thread.run_sync
    events: EventBus
    methods: MethodRegistry
    request_shutdown: Callable[[], None]
    started_monotonic: float = field(default_factory=time.monotonic)
    store_methods: StoreMethods | None = None  # the store's RPC handlers (services extend them)
    social_methods: SocialMethods | None = None  # the social handlers (gossip hooks into them)
    # The services built so far, in order: a factory may look up an earlier one
    # (gossip finds the network's host).
    services: list[Service] = field(default_factory=list)
    # What ``node.status`` returns (the metrics endpoint serves it); set by the daemon.
    status: Callable[[], Awaitable[dict[str, object]]] | None = None


ServiceFactory = Callable[[Node], Service]


def service_name(service: Service) -> str:
    name = getattr(service, "name", None)
    return name if isinstance(name, str) else type(service).__name__.lower()


def default_services() -> list[ServiceFactory]:
    """The services ``remixnet daemon`` runs besides the store and the RPC server.

    The network service (libp2p host, exchange, gossip) is added here; the
    seed policies after the services they hook into, replication after them.
    """
    return [
        network_service,
        storage_service,  # pins, GC and the quota (node.storage_service)
        gossip_service,
        seed_service,
        replication_service,
        metrics_service,
    ]


STATUS_CACHE_SECONDS = 0.25  # how old node.status's figures may be (but uptime and rpc)


def traffic(services: Mapping[str, Mapping[str, object]]) -> dict[str, int]:
    """Bytes received from and sent to peers: blocks (exchange) and records (sync)."""

    def number(service: str, *path: str) -> int:
        value: object = services.get(service, {})
        for key in path:
            value = value.get(key, 0) if isinstance(value, Mapping) else 0
        return value if isinstance(value, int) else 0

    return {
        "bytes_in": number("network", "fetch", "bytes_fetched")
        + number("gossip", "sync", "bytes_received"),
        "bytes_out": number("network", "serve", "bytes_served")
        + number("gossip", "sync", "bytes_sent"),
    }


class Daemon:
    """One node: the store, the services and the RPC server, under one root nursery."""

    def __init__(
        self,
        data_dir: DataDir,
        config: Config,
        *,
        services: Sequence[ServiceFactory] = (),
        handle_signals: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        self._factories = tuple(services)
        self._handle_signals = handle_signals  # only in the main thread (the CLI)
        self._shutdown = trio.Event()
        self.node: Node | None = None
        self.services: list[Service] = []
        self.rpc: RpcServer | None = None
        # node.status's costly parts and when they were taken (see ``_status_snapshot``).
        self._status_cache: (
            tuple[float, dict[str, object], dict[str, int], dict[str, dict[str, object]]] | None
        ) = None

    def request_shutdown(self) -> None:
        """Stop the daemon cleanly (idempotent, callable from the trio thread)."""
        if not self._shutdown.is_set():
            log.info("shutting down")
            self._shutdown.set()

    async def run(self, *, task_status: TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the node until ``request_shutdown``; ``task_status.started(node)`` when ready."""
        identity = await trio.to_thread.run_sync(self.data_dir.load_identity)
        token_path = self.config.token_path(self.data_dir)
        tcp = self.config.tcp_address()
        token = await trio.to_thread.run_sync(ensure_token, token_path) if tcp else None
        store = await trio.to_thread.run_sync(Store, self.data_dir)
        try:
            node = Node(
                self.data_dir,
                self.config,
                identity,
                store,
                EventBus(),
                MethodRegistry(),
                self.request_shutdown,
            )
            self.node = node
            node.store_methods = StoreMethods(store, identity, node.events)
            node.store_methods.register(node.methods)
            node.social_methods = SocialMethods(store, identity, node.events)
            node.social_methods.register(node.methods)
            CollabMethods(store, identity, node.events, node.store_methods).register(node.methods)
            node.methods.register(NODE_STATUS, self._status)
            node.status = self.status
            node.methods.register(NODE_SHUTDOWN, self._shutdown_call)
            self.services = node.services
            for factory in self._factories:
                self.services.append(factory(node))
            limits = self.config.limits
            self.rpc = RpcServer(
                node.methods,
                node.events,
                unix_path=rpc_socket_path(self.data_dir),
                limits=ServerLimits(
                    max_clients=limits.rpc_clients,
                    max_message_bytes=limits.rpc_message_bytes,
                    requests_per_client=limits.rpc_requests_per_client,
                    queue_size=limits.rpc_queue,
                ),
                tcp=tcp,
                token=token,
            )
            async with trio.open_nursery() as root:
                if self._handle_signals:
                    await root.start(self._watch_signals)
                for service in self.services:
                    await root.start(service.run)
                    log.debug("started %s", service_name(service))
                await root.start(self.rpc.run)
                await trio.to_thread.run_sync(write_node_info, self.data_dir, self.info())
                await trio.to_thread.run_sync(notify_systemd, f"READY=1\nMAINPID={os.getpid()}")
                log.info("ready: rpc on %s", self.rpc.unix_path)
                task_status.started(node)
                await self._shutdown.wait()
                root.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(remove_node_info, self.data_dir)
                await trio.to_thread.run_sync(store.close)
        log.info("stopped")

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        """First SIGINT/SIGTERM: clean shutdown. A second one gets the default action."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for number in signals:
                log.info("received %s", signal.Signals(number).name)
                notify_systemd("STOPPING=1")
                self.request_shutdown()
                return

    def info(self) -> dict[str, object]:
        """What ``node.json`` holds: ids, addresses and where to reach the node."""
        assert self.node is not None
        assert self.rpc is not None
        author = self.node.identity.author_id
        tcp = self.rpc.tcp_address
        info: dict[str, object] = {
            "version": version(),
            "pid": os.getpid(),
            "author": author,
            "peer_id": author,  # the artist's key is the libp2p identity (DESIGN.md)
            "data_dir": str(self.data_dir.root),
            "rpc_socket": str(self.rpc.unix_path),
            "rpc_tcp": f"{tcp[0]}:{tcp[1]}" if tcp else None,
            "configured_listen": list(self.config.network.listen),
            "listen_addrs": [],  # the network service provides the bound ones
        }
        for service in self.services:
            if isinstance(service, NodeInfoProvider):
                info.update(service.node_info())
        return info

    def statistics(self) -> dict[str, object]:
        return {
            "rpc": self.rpc.statistics() if self.rpc else {},
            "services": {
                service_name(service): dict(service.statistics()) for service in self.services
            },
        }

    async def _status(self, params: NoParams, call: Call) -> dict[str, object]:
        return await self.status()

    async def status(self) -> dict[str, object]:
        """What ``node.status`` returns: ids, addresses, uptime, store, traffic, services."""
        assert self.node is not None
        info, store, services = await self._status_snapshot()
        statistics = {"rpc": self.rpc.statistics() if self.rpc else {}, "services": services}
        return {
            "version": info["version"],
            "author": info["author"],
            "peer_id": info["peer_id"],
            "pid": info["pid"],
            "data_dir": info["data_dir"],
            "rpc_socket": info["rpc_socket"],
            "rpc_tcp": info["rpc_tcp"],
            "listen_addrs": info["listen_addrs"],
            "uptime_s": round(time.monotonic() - self.node.started_monotonic, 3),
            "profile": self.config.profile,
            "store": store,
            "traffic": traffic(services),
            **statistics,
        }

    async def _status_snapshot(
        self,
    ) -> tuple[dict[str, object], dict[str, int], dict[str, dict[str, object]]]:
        """``info()``, the store's and the services' figures, ``STATUS_CACHE_SECONDS`` old.

        They cost far more than serving a call (package metadata, multiaddr and
        base58 text, five SQLite queries in a worker thread): a tool polling
        ``node.status`` must not make the daemon redo them thousands of times a
        second. Uptime and the RPC server's own counters stay live.
        """
        assert self.node is not None
        now = time.monotonic()
        cached = self._status_cache
        if cached is not None and now - cached[0] < STATUS_CACHE_SECONDS:
            return cached[1], cached[2], cached[3]
        info = self.info()
        store = await trio.to_thread.run_sync(self.node.store.statistics)
        services = {service_name(service): dict(service.statistics()) for service in self.services}
        self._status_cache = (time.monotonic(), info, store, services)
        return info, store, services

    async def _shutdown_call(self, params: NoParams, call: Call) -> dict[str, object]:
        call.after_response(self.request_shutdown)
        return {"stopping": True}
