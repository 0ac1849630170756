"""Gossip and catch-up sync as a service of the daemon.

``gossip_service(node)`` (in ``node.daemon.default_services``, after
``network_service``) builds a ``Gossip`` and a ``SyncService`` on the host of the daemon's
``NetworkService`` with ``[gossip]`` from ``config.toml``; content is
auto-fetched with the network's ``fetch``.

Invariants: without a network service (a daemon built with other factories) gossip and sync are
off and ``statistics()`` says so; gossip and sync share one strike counter; a collab followed or
unfollowed through RPC (``node.social_methods``) changes gossip's subscriptions at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import trio

from node.gossip import AutoFetch, Gossip, GossipConfig
from node.network_service import NetworkService
from node.sync_service import SyncConfig, SyncService
from protocol.cid import Cid

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from node.daemon import Node

logger = logging.getLogger(__name__)


def gossip_service(node: Node) -> GossipService:
    """The ``ServiceFactory`` of gossip and sync (see ``node.daemon``)."""
    network = next(
        (service for service in node.services if isinstance(service, NetworkService)), None
    )
    return GossipService(node, network)


class GossipService:
    name = "gossip"

    def __init__(self, node: Node, network: NetworkService | None) -> None:
        self.gossip: Gossip | None = None
        self.sync: SyncService | None = None
        if network is None:
            return
        fetcher = network.network

        async def fetch(root: Cid, providers: Sequence[str]) -> object:
            return await fetcher.fetch(root, providers_hint=providers, pin=True)

        config = GossipConfig(auto_fetch=cast(AutoFetch, node.config.gossip.auto_fetch))
        self.gossip = Gossip(
            fetcher.host, node.store, node.events, node.identity.public_key, config, fetch=fetch
        )
        self.sync = SyncService(
            fetcher.host,
            node.store,
            self.gossip.accept_many,
            self.gossip.validate,
            SyncConfig(interval=float(node.config.gossip.sync_interval)),
            strike=self.gossip.strike_peer,
        )
        if node.social_methods is not None:
            node.social_methods.collab_followed = self.gossip.set_collab_followed

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run gossip and sync until cancelled (nothing without a network)."""
        async with trio.open_nursery() as nursery:
            if self.gossip is not None and self.sync is not None:
                await nursery.start(self.gossip.run)
                await nursery.start(self.sync.run)
            task_status.started()
            await trio.sleep_forever()

    def statistics(self) -> dict[str, object]:
        if self.gossip is None or self.sync is None:
            return {"running": False}
        return {**self.gossip.statistics(), "sync": self.sync.statistics()}
