"""``StoreBackend``: the CLI's store operations run in this process, on the data directory.

What the CLI uses when no daemon runs (or with ``--offline``). Each method is
the blocking operation of ``node.operations`` / ``node.transfer`` that the
daemon's handler for the same request runs, so both backends do the same
work; errors are the store's and protocol's own exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

from node.cli_backend import (
    DaemonError,
    GraphRequest,
    ImportSummary,
    LineageGraph,
    Progress,
    Publication,
    RecordDetail,
    RecordQuery,
    RecordView,
    Retrieved,
)
from node.datadir import DataDir
from node.errors import MissingBlock, NotFound
from node.fsck import FsckReport
from node.leases import StoreBusy
from node.operations import WorkFields, ancestors, descendants, publish
from node.productions import profile_name
from node.rpc_methods_collab import (
    collabs_list_result,
    collabs_show_result,
    credits_result,
    graph_result,
    productions_show_result,
    sign_ack,
    sign_collab,
    sign_production,
)
from node.rpc_params import MAX_LINEAGE_RECORDS
from node.rpc_params_collab import (
    AckParams,
    CollabListParams,
    CollabOpenParams,
    CollabShowParams,
    GraphParams,
    ProductionCreateParams,
    ProductionParams,
)
from node.store import RecordFilter, Store
from node.transfer import export_car, get_file, import_car, resolve_content, write_stream
from protocol.cid import Cid
from protocol.identity import public_key_of
from protocol.records import Contribution, Credit, to_json


class NotLocal(NotFound):
    """Content this store lacks, asked for while no daemon runs to fetch it."""

    def __init__(self, cid: Cid) -> None:
        super().__init__("content", cid)
        self.args = (f"{cid}: not in the local store; start the daemon to fetch from peers",)

    def __str__(self) -> str:
        return str(self.args[0])


class _Counter:
    """Turns ``advance(n)`` calls of an operation into cumulative ``progress(done, total)``."""

    def __init__(self, progress: Progress, total: int | None) -> None:
        self.progress = progress
        self.total = total
        self.done = 0
        progress(0, total)

    def advance(self, count: int) -> None:
        self.done += count
        self.progress(self.done, self.total)


def _ignore(count: int) -> None:
    pass


class StoreBackend:
    """The store of ``data_dir``, opened on first use. Raises ``DataDirError`` if uninitialised."""

    def __init__(self, data_dir: DataDir) -> None:
        data_dir.require_initialised()
        self.data_dir = data_dir
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.data_dir)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def author(self) -> str:
        return self.data_dir.load_identity().author_id

    def publish(self, path: Path, work: WorkFields, progress: Progress) -> Publication:
        identity = self.data_dir.load_identity()
        counter = _Counter(progress, path.stat().st_size)
        published = publish(self.store, identity, path, work, counter.advance)
        added = published.added
        return Publication(published.record.id, added.root, added.size)

    def record(self, record_id: Cid) -> RecordDetail:
        record = self.store.get_record(record_id)
        return RecordDetail(to_json(record), tuple(self.store.children_of(record.id)))

    def records(self, query: RecordQuery) -> list[RecordView]:
        author: bytes | None = None
        if query.author == "me":
            author = self.data_dir.load_identity().public_key
        elif query.author is not None:
            author = public_key_of(query.author)
        criteria = RecordFilter(
            author=author,
            tag=query.tag,
            media_type=query.media_type,
            record_type=query.record_type,
            title_contains=query.title,
            limit=query.limit,
        )
        return [to_json(record) for record in self.store.list_records(criteria)]

    def lineage(self, root: Cid, depth: int) -> LineageGraph:
        up = ancestors(self.store, root, depth=depth, limit=MAX_LINEAGE_RECORDS)
        down = descendants(self.store, root, depth=depth, limit=MAX_LINEAGE_RECORDS)
        views = [to_json(self.store.get_record(root))]
        views += [to_json(record) for record in (*up.records, *down.records)]
        return LineageGraph.build(root, views, up.missing, up.truncated or down.truncated)

    def write_content(self, cid: Cid, out: BinaryIO) -> None:
        root, _ = resolve_content(self.store, cid)
        try:
            write_stream(self.store, root, out, _ignore)
        except MissingBlock:
            raise NotLocal(cid) from None

    def get(self, cid: Cid, destination: Path, progress: Progress, *, pin: bool) -> Retrieved:
        root, record = resolve_content(self.store, cid)
        body = record.body if record is not None else None
        counter = _Counter(progress, body.size if isinstance(body, Contribution) else None)
        try:
            size = get_file(self.store, root, destination, counter.advance)
        except MissingBlock:
            raise NotLocal(cid) from None
        return Retrieved(root, size)

    def export(self, record_id: Cid, destination: Path, progress: Progress) -> int:
        return export_car(self.store, record_id, destination, _Counter(progress, None).advance)

    def import_car(self, source: Path, progress: Progress) -> ImportSummary:
        counter = _Counter(progress, source.stat().st_size)
        imported = import_car(self.store, source, counter.advance)
        return ImportSummary(imported.roots, imported.records, imported.blocks, imported.incomplete)

    def fsck(self, repair: bool, progress: Progress) -> FsckReport:
        counter = _Counter(progress, self.store.statistics()["block_bytes"])
        return self.store.fsck(repair=repair, on_progress=counter.advance)

    # -- pins and garbage collection (node.cli_pins) --

    def pin_add(self, cid: Cid, reason: str) -> Mapping[str, Any]:
        return self.store.pin_held(cid, reason).to_json()

    def pin_rm(self, cid: Cid) -> Mapping[str, Any]:
        return self.store.unpin_content(cid).to_json()

    def pins(self) -> list[Mapping[str, Any]]:
        return [{"cid": str(cid), "reason": reason} for cid, reason in self.store.pins()]

    def gc(self, progress: Progress) -> Mapping[str, Any]:
        counter = _Counter(progress, self.store.blocks.used_bytes())
        try:
            return self.store.collect_garbage(wait=5.0, on_progress=counter.advance).to_json()
        except StoreBusy as error:
            raise DaemonError(str(error)) from None

    def author_names(self, authors: Iterable[str]) -> dict[str, str]:
        names = {}
        for author in sorted(set(authors)):
            name = profile_name(self.store, public_key_of(author))
            if name is not None:
                names[author] = name
        return names

    # The collab methods: the functions the daemon's handlers run, on this store.

    def open_collab(self, title: str, brief: str, deadline_ms: int | None) -> RecordView:
        params = CollabOpenParams(title, brief, deadline_ms)
        return to_json(sign_collab(self.store, self.data_dir.load_identity(), params))

    def collabs(self, limit: int) -> list[RecordView]:
        result = collabs_list_result(self.store, CollabListParams(limit))
        return cast(list[RecordView], result["collabs"])

    def collab(self, collab_id: Cid) -> Mapping[str, Any]:
        return collabs_show_result(self.store, CollabShowParams(collab_id))

    def create_production(
        self, title: str, credits: Sequence[Credit], collab: Cid | None, description: str
    ) -> RecordView:
        params = ProductionCreateParams(title, tuple(credits), collab, description)
        return to_json(sign_production(self.store, self.data_dir.load_identity(), params))

    def production(self, production_id: Cid) -> Mapping[str, Any]:
        return productions_show_result(self.store, ProductionParams(production_id))

    def credits(self, production_id: Cid, *, fetch: bool) -> Mapping[str, Any]:
        if fetch:
            raise DaemonError(
                f"fetching records from peers needs the daemon, and none is running on"
                f" {self.data_dir.root} (start one with `remixnet daemon`)"
            )
        return credits_result(self.store, production_id)

    def acknowledge(self, production_id: Cid, accept: bool, reason: str) -> RecordView:
        params = AckParams(production_id, accept, reason)
        return to_json(sign_ack(self.store, self.data_dir.load_identity(), params))

    def graph(self, request: GraphRequest) -> Mapping[str, Any]:
        params = GraphParams(
            request.record,
            request.output_format,
            request.production,
            request.depth,
            request.max_nodes,
        )
        return graph_result(self.store, params)
