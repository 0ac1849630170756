"""Pins, garbage collection and the storage quota as a service of the daemon.

``storage_service(node)`` (in ``node.daemon.default_services``) applies
``[storage]`` of ``config.toml`` to the store (quota, grace period), serves
``pins.add``, ``pins.rm`` and ``store.gc``, and collects garbage by itself:

* every ``CHECK_INTERVAL`` seconds, when the packs hold more than
  ``gc_high_water`` of the quota and something was stored since the last
  automatic collection;
* at once, in the storing thread, when a fetch is about to store more than
  the quota allows (``Store.on_full``); if that does not make room the fetch
  fails with "storage quota of N reached".

Invariants: one collection at a time (``Store.collect_garbage`` serialises);
a collection that cannot have the store to itself within its wait gives up
(``StoreBusy``) and is retried at the next check, never blocking forever.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from node.gc import GcReport
from node.jsonrpc import RpcError
from node.leases import StoreBusy
from node.network_service import NetworkService
from node.rpc_api_storage import (
    PINS_ADD,
    PINS_RM,
    STORE_BUSY,
    STORE_GC,
    GcParams,
    PinAddParams,
    PinRmParams,
)
from node.rpc_methods import run_with_progress
from node.rpc_server import Call

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from node.daemon import Node

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 5.0  # seconds between two looks at the quota
AUTO_WAIT = 10.0  # seconds an automatic collection waits for the store
CALL_WAIT = 30.0  # seconds `store.gc` waits for the store


def storage_service(node: Node) -> StorageService:
    """The ``ServiceFactory`` of pins, GC and the quota (see ``node.daemon``)."""
    network = next(
        (service for service in node.services if isinstance(service, NetworkService)), None
    )
    return StorageService(node, network)


class StorageService:
    name = "storage"

    def __init__(self, node: Node, network: NetworkService | None) -> None:
        self.node = node
        self.store = node.store
        self.network = network
        settings = node.config.storage
        self.store.quota = settings.quota
        self.store.guard.grace = float(settings.gc_grace)
        self.store.on_full = self._collect_when_full
        self.high_water = settings.gc_high_water
        self._used_after_auto = -1  # pack bytes after the last automatic collection
        self._stats = {"gc_runs": 0, "gc_auto_runs": 0, "gc_busy": 0}
        self._stats.update({"gc_blocks_deleted": 0, "gc_bytes_reclaimed": 0})
        node.methods.register(PINS_ADD, self.pins_add)
        node.methods.register(PINS_RM, self.pins_rm)
        node.methods.register(STORE_GC, self.store_gc)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch the quota until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(CHECK_INTERVAL)
            if not self.store.quota:
                continue
            used = await trio.to_thread.run_sync(self.store.blocks.used_bytes)
            if used >= self.high_water * self.store.quota and used > self._used_after_auto:
                await trio.to_thread.run_sync(self._collect_automatically, "high water")

    def statistics(self) -> dict[str, object]:
        return dict(self._stats)

    # -- collecting ------------------------------------------------------------------

    def _collect_automatically(self, why: str) -> GcReport | None:
        """In a worker thread: collect, log, and remember how much was left."""
        try:
            report = self.store.collect_garbage(wait=AUTO_WAIT)
        except StoreBusy as error:
            self._stats["gc_busy"] += 1
            logger.info("automatic garbage collection (%s) postponed: %s", why, error)
            return None
        self._stats["gc_auto_runs"] += 1
        self._count(report)
        self._used_after_auto = report.used_after
        logger.info(
            "garbage collection (%s): %d blocks deleted, %d bytes reclaimed, %d of %d bytes used",
            why,
            report.blocks_deleted,
            report.bytes_reclaimed,
            report.used_after,
            self.store.quota,
        )
        return report

    def _collect_when_full(self) -> None:
        self._collect_automatically("quota reached")

    def _count(self, report: GcReport) -> None:
        self._stats["gc_runs"] += 1
        self._stats["gc_blocks_deleted"] += report.blocks_deleted
        self._stats["gc_bytes_reclaimed"] += report.bytes_reclaimed

    # -- methods ---------------------------------------------------------------------

    async def pins_add(self, params: PinAddParams, call: Call) -> dict[str, object]:
        result = await trio.to_thread.run_sync(self.store.pin_held, params.cid, params.reason)
        remote = self.node.store_methods.remote if self.node.store_methods else None
        if result.changed and remote is not None:
            remote.provide_nowait(result.root)
        return result.to_json()

    async def pins_rm(self, params: PinRmParams, call: Call) -> dict[str, object]:
        result = await trio.to_thread.run_sync(self.store.unpin_content, params.cid)
        if self.network is not None:
            self.network.network.stop_providing(result.root)
        return result.to_json()

    async def store_gc(self, params: GcParams, call: Call) -> dict[str, object]:
        used = await trio.to_thread.run_sync(self.store.blocks.used_bytes)
        try:
            report = await run_with_progress(
                lambda advance: self.store.collect_garbage(wait=CALL_WAIT, on_progress=advance),
                call=call,
                events=self.node.events,
                operation=STORE_GC.name,
                target=str(self.store.data_dir.root),
                total=used,
                to_caller=params.progress,
            )
        except StoreBusy as error:
            self._stats["gc_busy"] += 1
            raise RpcError(STORE_BUSY, str(error)) from None
        self._count(report)
        return report.to_json()
