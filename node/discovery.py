"""How ``node.host`` hears of peers: mDNS announcements and new connections.

py-libp2p tells of peers through callbacks: zeroconf calls mDNS handlers on
its own thread, and the swarm awaits its notifees inside its connection
tasks. This module carries both into trio tasks of the host, which dials the
discovered peers and adds the connected ones to the DHT's routing table.

Invariants:
* mDNS callbacks, which zeroconf runs on its own thread, reach trio only
  through ``trio.from_thread`` and a bounded memory channel; when the host
  falls behind, discoveries are dropped and counted, never queued without bound;
* a notifee never blocks the swarm: it hands events over with ``send_nowait``.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import trio
from libp2p.abc import INotifee
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

DISCOVERED_QUEUE = 64  # mDNS discoveries waiting to be dialled; more are dropped


class MdnsDiscovery:
    """Peers found by mDNS (or any thread), queued for the host to dial."""

    def __init__(self, own_peer: ID, *, enabled: bool) -> None:
        self._own_peer = own_peer
        self._enabled = enabled
        self._discovered_send, self._discovered_recv = trio.open_memory_channel[PeerInfo](
            DISCOVERED_QUEUE
        )
        self._stats = {"mdns_discovered": 0, "mdns_dropped": 0}

    def callback(self) -> Callable[[PeerInfo], None]:
        """A function any thread may call with a discovered peer; the peer is then queued.

        Call this on the trio thread. zeroconf calls the result on its own
        thread (mDNS); it crosses into trio with ``trio.from_thread`` and a
        bounded channel, dropping discoveries when the host falls behind.
        """
        token = trio.lowlevel.current_trio_token()
        trio_thread = threading.get_ident()

        def deliver(info: PeerInfo) -> None:
            try:
                self._discovered_send.send_nowait(info)
                self._stats["mdns_discovered"] += 1
            except trio.WouldBlock:
                self._stats["mdns_dropped"] += 1  # we are behind: a later announcement retries
            except trio.ClosedResourceError:
                pass

        def on_discovered(info: PeerInfo) -> None:
            if info.peer_id == self._own_peer:
                return
            if threading.get_ident() == trio_thread:
                deliver(info)
                return
            with suppress(trio.RunFinishedError):  # the node has stopped
                trio.from_thread.run_sync(deliver, info, trio_token=token)

        return on_discovered

    @contextmanager
    def registered(self) -> Iterator[None]:
        """While inside, py-libp2p's mDNS hands the peers it finds to a ``callback()``.

        Does nothing but make the callback when mDNS is disabled.
        """
        on_discovered = self.callback()
        if self._enabled:
            peerDiscovery.register_peer_discovered_handler(on_discovered)
        try:
            yield
        finally:
            if self._enabled:
                peerDiscovery.unregister_peer_discovered_handler(on_discovered)

    async def dial_discovered(self, dial: Callable[[PeerInfo], Awaitable[None]]) -> None:
        """Call ``dial`` with each queued peer, one at a time, until cancelled."""
        async for info in self._discovered_recv:
            await dial(info)

    def statistics(self) -> dict[str, int]:
        return dict(self._stats)


class QuietNotifee(INotifee):
    """An ``INotifee`` that ignores every network event; subclasses override what they need."""

    async def connected(self, network: Any, conn: Any) -> None:
        pass

    async def disconnected(self, network: Any, conn: Any) -> None:
        pass

    async def opened_stream(self, network: Any, stream: Any) -> None:
        pass

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def listen(self, network: Any, address: Any) -> None:
        pass

    async def listen_close(self, network: Any, address: Any) -> None:
        pass


class ConnectionNotifee(QuietNotifee):
    """Tells the host of connections opening and closing (py-libp2p ``INotifee``).

    py-libp2p notifies after the connection is in (or out of) the swarm's map,
    so the peer's state read in ``opened`` or ``closed`` is up to date. Both
    are called in py-libp2p's task and must not block.
    """

    def __init__(self, opened: Callable[[ID], None], closed: Callable[[ID], None]) -> None:
        self._opened = opened
        self._closed = closed

    async def connected(self, network: Any, conn: Any) -> None:
        self._opened(conn.muxed_conn.peer_id)

    async def disconnected(self, network: Any, conn: Any) -> None:
        self._closed(conn.muxed_conn.peer_id)
