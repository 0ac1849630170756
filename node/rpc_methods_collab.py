"""The collab methods: collabs, productions, credits, acks and drawings of the lineage, as JSON.

The blocking functions here compute each method's JSON result (``node.rpc_api_collab``)
from a store: the daemon serves them through ``trio.to_thread.run_sync``
(``CollabMethods``) and the CLI calls the very same functions on the store
when no daemon runs (``node.cli_store_backend``), so both print the same.

Invariants:
* every record view returned carries ``author_name`` (the author's newest
  profile name held here, or null);
* a record signed here through the daemon (collab, production, ack) is
  stored, then announced at once: ``record.added`` with origin ``local``,
  which gossip publishes (``node.gossip``);
* ``credits.get`` with ``fetch`` asks peers only for records the split
  reports missing, generation by generation, with bounded rounds, records,
  concurrency and time; a record no peer has stays unresolved.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import trio

from node.datadir import Identity
from node.events import EventBus
from node.jsonrpc import RpcError
from node.lineage_render import build_graph, to_dot, to_svg
from node.productions import (
    CreditReport,
    ack_status,
    acknowledge,
    collab_view,
    create_production,
    credit_report,
    list_collabs,
    open_collab,
    production_split,
    profile_name,
)
from node.render import view_title
from node.rpc_api import RECORD_ADDED
from node.rpc_api_collab import (
    ACKS_PUBLISH,
    COLLABS_LIST,
    COLLABS_OPEN,
    COLLABS_SHOW,
    CREDITS_GET,
    LINEAGE_GRAPH,
    PRODUCTIONS_CREATE,
    PRODUCTIONS_SHOW,
)
from node.rpc_methods import StoreMethods
from node.rpc_params_collab import (
    AckParams,
    CollabListParams,
    CollabOpenParams,
    CollabShowParams,
    CreditsParams,
    GraphParams,
    ProductionCreateParams,
    ProductionParams,
)
from node.rpc_schema import INTEGRITY, NETWORK_ERROR, NOT_FOUND
from node.rpc_server import Call, MethodRegistry
from node.store import Store
from protocol.cid import Cid
from protocol.lineage import UnresolvedReason
from protocol.records import Production, SignedRecord, to_json

log = logging.getLogger(__name__)

P = TypeVar("P")
# Bounds of `credits.get` with `fetch`: records asked for in all, at once, and
# how long one may take; rounds are generations of ancestors.
MAX_FETCHED_RECORDS: Final = 10_000
FETCH_CONCURRENCY: Final = 16
FETCH_RECORD_SECONDS: Final = 20.0
FETCH_TOTAL_SECONDS: Final = 300.0  # then the split is computed with what came
MAX_FETCH_ROUNDS: Final = 1000

Names = dict[bytes, str | None]


def author_name(store: Store, author: bytes, names: Names) -> str | None:
    """The profile name of ``author`` held here (looked up once per ``names``)."""
    if author not in names:
        names[author] = profile_name(store, author)
    return names[author]


def named_view(store: Store, record: SignedRecord, names: Names) -> dict[str, object]:
    """A record's JSON view with ``author_name``."""
    return {**to_json(record), "author_name": author_name(store, record.author, names)}


# -- results (blocking; the daemon and the offline CLI share them) -------------------


def sign_collab(store: Store, identity: Identity, params: CollabOpenParams) -> SignedRecord:
    return open_collab(
        store, identity, title=params.title, brief=params.brief, deadline_ms=params.deadline_ms
    )


def sign_production(
    store: Store, identity: Identity, params: ProductionCreateParams
) -> SignedRecord:
    return create_production(
        store,
        identity,
        title=params.title,
        credits=params.credits,
        collab=params.collab,
        description=params.description,
    )


def sign_ack(store: Store, identity: Identity, params: AckParams) -> SignedRecord:
    return acknowledge(
        store, identity, params.production, accept=params.accept, reason=params.reason
    )


def collabs_list_result(store: Store, params: CollabListParams) -> dict[str, object]:
    names: Names = {}
    return {"collabs": [named_view(store, r, names) for r in list_collabs(store, params.limit)]}


def collabs_show_result(store: Store, params: CollabShowParams) -> dict[str, object]:
    view = collab_view(store, params.id)
    names: Names = {}
    return {
        "collab": named_view(store, view.collab, names),
        "contributions": [
            {
                **named_view(store, answer.record, names),
                "remixed_by": [named_view(store, remix, names) for remix in answer.remixes],
            }
            for answer in view.contributions
        ],
        "productions": [named_view(store, record, names) for record in view.productions],
    }


def productions_show_result(store: Store, params: ProductionParams) -> dict[str, object]:
    report = credit_report(store, params.id)
    record = report.production
    body = record.body
    assert isinstance(body, Production)
    credits = []
    for credit in body.credits:
        title = None
        if store.has_record(credit.contribution):
            title = view_title(to_json(store.get_record(credit.contribution)))
        credits.append(
            {
                "contribution": str(credit.contribution),
                "role": credit.role,
                "share_bps": credit.share_bps,
                "title": title,
            }
        )
    statuses = [ack_status(report.acks.get(share.author))[0] for share in report.split.authors]
    counts = {status: statuses.count(status) for status in ("accepted", "disputed", "pending")}
    names: Names = dict(report.names)
    return {
        "production": named_view(store, record, names),
        "credits": credits,
        "acks": counts,
    }


def percent(bps: int) -> str:
    return f"{bps / 100:.2f}"


def credits_result(
    store: Store, production_id: Cid, fetched: dict[str, object] | None = None
) -> dict[str, object]:
    """``credits.get``'s result; ``fetched`` is what a fetch from peers brought (or None)."""
    report = credit_report(store, production_id)
    names: Names = dict(report.names)
    return {
        **credits_json(report),
        "director_name": author_name(store, report.production.author, names),
        "fetched": fetched,
    }


def credits_json(report: CreditReport) -> dict[str, object]:
    body = report.production.body
    assert isinstance(body, Production)
    authors = []
    for share in report.split.authors:
        status, reason = ack_status(report.acks.get(share.author))
        ack = report.acks.get(share.author)
        authors.append(
            {
                "author": share.author_id,
                "name": report.names.get(share.author),
                "bps": share.bps,
                "percent": percent(share.bps),
                "exact_bps": str(share.exact_bps),
                "ack": status,
                "ack_reason": reason,
                "ack_id": str(ack.id) if ack else None,
                "through": [
                    {
                        "contribution": str(part.contribution),
                        "title": report.titles.get(part.contribution),
                        "bps": part.bps,
                        "exact_bps": str(part.exact_bps),
                    }
                    for part in share.through
                ],
            }
        )
    return {
        "production": str(report.production.id),
        "title": body.title,
        "director": report.production.author_id,
        "total_bps": report.split.total_bps,
        "authors": authors,
        "unresolved": [
            {
                "record": str(entry.record_id),
                "reason": str(entry.reason),
                "bps": entry.bps,
                "percent": percent(entry.bps),
                "exact_bps": str(entry.exact_bps),
            }
            for entry in report.split.unresolved
        ],
    }


def graph_result(store: Store, params: GraphParams) -> dict[str, object]:
    """``lineage.graph``'s result. Raises ``NotFound``, ``InvalidProduction``, ``GraphTooLarge``."""
    drawing = build_graph(
        store,
        params.id,
        production=params.production,
        depth=params.depth,
        max_nodes=params.max_nodes,
    )
    text = to_svg(drawing) if params.format == "svg" else to_dot(drawing)
    return {
        "format": params.format,
        "text": text,
        "nodes": len(drawing.nodes),
        "edges": len(drawing.edges),
    }


def missing_ancestors(store: Store, production_id: Cid) -> list[Cid]:
    """Records the production's credit reaches that this store lacks (none if it lacks the
    production itself)."""
    if not store.has_record(production_id):
        return []
    split = production_split(store, production_id)
    return [
        entry.record_id for entry in split.unresolved if entry.reason == UnresolvedReason.MISSING
    ]


def _signed(
    sign: Callable[[Store, Identity, Any], SignedRecord], key: str
) -> Callable[[Store, Identity, Any], dict[str, object]]:
    return lambda store, identity, params: {key: to_json(sign(store, identity, params))}


OFFLINE: Final[dict[str, Callable[[Store, Identity, Any], dict[str, object]]]] = {
    COLLABS_OPEN.name: _signed(sign_collab, "collab"),
    COLLABS_LIST.name: lambda store, identity, params: collabs_list_result(store, params),
    COLLABS_SHOW.name: lambda store, identity, params: collabs_show_result(store, params),
    PRODUCTIONS_CREATE.name: _signed(sign_production, "production"),
    PRODUCTIONS_SHOW.name: lambda store, identity, params: productions_show_result(store, params),
    CREDITS_GET.name: lambda store, identity, params: credits_result(store, params.id),
    ACKS_PUBLISH.name: _signed(sign_ack, "ack"),
    LINEAGE_GRAPH.name: lambda store, identity, params: graph_result(store, params),
}
"""Every collab method as a blocking function of the store (the CLI's offline path).

``credits.get`` offline never fetches: the CLI refuses ``--fetch`` without a daemon.
"""


# -- the daemon's handlers ------------------------------------------------------------


class CollabMethods:
    """The daemon's handlers of the collab methods.

    ``store_methods.remote`` (set while the network runs) is where
    ``credits.get`` fetches missing records from.
    """

    def __init__(
        self, store: Store, identity: Identity, events: EventBus, store_methods: StoreMethods
    ) -> None:
        self.store = store
        self.identity = identity
        self.events = events
        self.store_methods = store_methods

    def register(self, methods: MethodRegistry) -> None:
        methods.register(COLLABS_OPEN, self._publishing(sign_collab, "collab"))
        methods.register(PRODUCTIONS_CREATE, self._publishing(sign_production, "production"))
        methods.register(ACKS_PUBLISH, self._publishing(sign_ack, "ack"))
        methods.register(COLLABS_LIST, self._threaded(collabs_list_result))
        methods.register(COLLABS_SHOW, self._threaded(collabs_show_result))
        methods.register(PRODUCTIONS_SHOW, self._threaded(productions_show_result))
        methods.register(LINEAGE_GRAPH, self._threaded(graph_result))
        methods.register(CREDITS_GET, self.credits_get)

    def _threaded(
        self, function: Callable[[Store, P], dict[str, object]]
    ) -> Callable[[P, Call], Awaitable[dict[str, object]]]:
        async def handler(params: P, call: Call) -> dict[str, object]:
            return await trio.to_thread.run_sync(function, self.store, params)

        return handler

    def _publishing(
        self, sign: Callable[[Store, Identity, P], SignedRecord], key: str
    ) -> Callable[[P, Call], Awaitable[dict[str, object]]]:
        async def handler(params: P, call: Call) -> dict[str, object]:
            record = await trio.to_thread.run_sync(sign, self.store, self.identity, params)
            view = to_json(record)
            # Gossip listens for this event and announces the record at once.
            self.events.publish(RECORD_ADDED.name, {"record": view, "origin": "local"})
            return {key: view}

        return handler

    async def credits_get(self, params: CreditsParams, call: Call) -> dict[str, object]:
        fetched = await self.fetch_missing(params.id) if params.fetch else None
        return await trio.to_thread.run_sync(credits_result, self.store, params.id, fetched)

    async def fetch_missing(self, production_id: Cid) -> dict[str, object]:
        """Fetch the production, then the ancestors its credit reaches, that are not here.

        Returns ``{"records": fetched, "failed": [ids no peer had]}``. Raises
        ``RpcError`` (network error) when the network is not running.
        """
        remote = self.store_methods.remote
        if remote is None:
            raise RpcError(
                NETWORK_ERROR,
                "cannot fetch records from peers: the network is not running",
                {"reason": "offline"},
            )
        store = self.store
        tried: set[Cid] = set()
        failed: list[Cid] = []
        fetched = 0
        limiter = trio.CapacityLimiter(FETCH_CONCURRENCY)

        async def fetch_one(record_id: Cid) -> None:
            nonlocal fetched
            async with limiter:
                with trio.move_on_after(FETCH_RECORD_SECONDS):
                    try:
                        await remote.fetch_record(record_id)
                    except RpcError as error:
                        if error.code not in (NOT_FOUND, INTEGRITY):
                            raise
                        log.info("credits: cannot fetch %s: %s", record_id, error.message)
            if await trio.to_thread.run_sync(store.has_record, record_id):
                fetched += 1
            else:
                failed.append(record_id)

        wanted = (
            []
            if await trio.to_thread.run_sync(store.has_record, production_id)
            else [production_id]
        )
        with trio.move_on_after(FETCH_TOTAL_SECONDS):
            for _ in range(MAX_FETCH_ROUNDS):
                if not wanted:
                    missing = await trio.to_thread.run_sync(missing_ancestors, store, production_id)
                    wanted = [cid for cid in missing if cid not in tried]
                wanted = wanted[: MAX_FETCHED_RECORDS - len(tried)]
                if not wanted:
                    break
                tried.update(wanted)
                async with trio.open_nursery() as nursery:
                    for record_id in wanted:
                        nursery.start_soon(fetch_one, record_id)
                wanted = []
        return {"records": fetched, "failed": sorted(str(cid) for cid in failed)}
