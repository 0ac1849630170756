"""Handlers of the store's JSON-RPC methods: content, CAR files, records, lineage, pins, fsck.

Every handler reaches the (blocking) store through ``trio.to_thread.run_sync``
only. Long operations (``content.add``, ``content.get``, ``car.export``,
``car.import``, ``store.fsck``) run through
``run_with_progress``: the worker thread counts bytes, a trio task reports
them at most ten times a second (to the caller when it asked for progress,
and to ``progress`` subscribers), and cancelling the call (the client left,
the daemon stops) makes the worker stop at its next chunk.

When the network runs it sets ``StoreMethods.remote``: ``content.get``,
``content.cat`` and ``records.get`` then first fetch what is missing here.
"""

from __future__ import annotations

import base64
import json
import stat
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

import trio

from node.datadir import Identity
from node.events import EventBus
from node.jsonrpc import EncodedResult
from node.operations import (
    Lineage,
    WorkFields,
    ancestors,
    descendants,
    publish,
    read_content,
    record_view,
)
from node.rpc_api import (
    CAR_EXPORT,
    CAR_IMPORT,
    CONTENT_ADD,
    CONTENT_CAT,
    CONTENT_GET,
    LINEAGE_ANCESTORS,
    LINEAGE_DESCENDANTS,
    PINS_LIST,
    RECORD_ADDED,
    RECORDS_GET,
    RECORDS_LIST,
    STORE_FSCK,
)
from node.rpc_params import (
    AddParams,
    CatParams,
    ExportParams,
    FsckParams,
    GetParams,
    ImportParams,
    LineageParams,
    ListParams,
    PinsParams,
    RecordParams,
)
from node.rpc_server import Call, MethodRegistry
from node.store import RecordFilter, Store
from node.transfer import export_car, get_file, import_car, resolve_content
from protocol.cid import Cid
from protocol.identity import public_key_of
from protocol.records import Contribution, RecordType, to_json

T = TypeVar("T")
PROGRESS_INTERVAL = 0.1  # seconds between two progress reports of one operation


ReportProgress = Callable[[int, int | None], None]  # (bytes done, bytes in all when known)


class RemoteContent(Protocol):
    """Where missing records and blocks come from (the network service)."""

    async def fetch_content(
        self, cid: Cid, *, pin: bool, report: ReportProgress
    ) -> dict[str, object] | None:
        """Fetch what the store lacks of ``cid`` (content, or a record id and its content).

        Returns the fetch result as JSON, or None when everything was here already.
        """
        ...

    async def fetch_record(self, record_id: Cid) -> None:
        """Fetch, verify and store the record ``record_id`` unless it is here."""
        ...

    def provide_nowait(self, root: Cid) -> None:
        """Announce ``root`` (just stored and pinned here) to the network, in the background."""
        ...


class OperationCancelled(Exception):
    """Raised inside a worker thread whose call was cancelled (never escapes to a caller)."""


class _Counter:
    """Bytes done, bumped by the worker thread and read by the trio thread."""

    def __init__(self) -> None:
        self.done = 0
        self.cancelled = threading.Event()  # set by trio: the worker must stop

    def advance(self, count: int) -> None:
        """Called by the worker thread for every piece processed."""
        if self.cancelled.is_set():
            raise OperationCancelled
        self.done += count


async def run_with_progress(
    function: Callable[[Callable[[int], None]], T],
    *,
    call: Call,
    events: EventBus,
    operation: str,
    target: str,
    total: int | None,
    to_caller: bool,
) -> T:
    """Run ``function(advance)`` in a worker thread and report its progress.

    Reports go to the caller (``progress`` notifications) when ``to_caller``
    and to ``progress`` event subscribers. Cancelling the calling task stops
    the worker at its next ``advance``; the task then sees ``Cancelled``.
    """
    counter = _Counter()
    reported = -1

    def report() -> None:
        nonlocal reported
        if counter.done == reported:
            return
        reported = counter.done
        if to_caller:
            call.send_progress(reported, total)
        events.publish(
            "progress",
            {"operation": operation, "target": target, "done": reported, "total": total},
        )

    async def report_periodically() -> None:
        try:
            while True:
                await trio.sleep(PROGRESS_INTERVAL)
                report()
        finally:
            counter.cancelled.set()  # stops the worker if we are being cancelled

    result: T | None = None
    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(report_periodically)
        try:
            result = await trio.to_thread.run_sync(function, counter.advance)
        except OperationCancelled:
            pass  # our scope is cancelled: leaving the nursery raises Cancelled
        except Exception as exception:
            error = exception
        nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    report()
    return result  # type: ignore[return-value]


class StoreMethods:
    """The store's methods, served with one shared ``Store``."""

    def __init__(self, store: Store, identity: Identity, events: EventBus) -> None:
        self.store = store
        self.identity = identity
        self.events = events
        self.remote: RemoteContent | None = None  # set by the network service

    def register(self, registry: MethodRegistry) -> None:
        registry.register(CONTENT_ADD, self.content_add)
        registry.register(CONTENT_GET, self.content_get)
        registry.register(CONTENT_CAT, self.content_cat)
        registry.register(CAR_EXPORT, self.car_export)
        registry.register(CAR_IMPORT, self.car_import)
        registry.register(RECORDS_GET, self.records_get)
        registry.register(RECORDS_LIST, self.records_list)
        registry.register(LINEAGE_ANCESTORS, self.lineage_ancestors)
        registry.register(LINEAGE_DESCENDANTS, self.lineage_descendants)
        registry.register(PINS_LIST, self.pins_list)
        registry.register(STORE_FSCK, self.store_fsck)

    async def content_add(self, params: AddParams, call: Call) -> dict[str, object]:
        work = WorkFields(
            title=params.title,
            description=params.description,
            license=params.license,
            tags=params.tags,
            media_type=params.media_type,
            collab=params.collab,
            parents=params.parents,
            upstream_bps=params.upstream_bps,
        )
        status = await trio.to_thread.run_sync(params.path.stat)
        size = status.st_size if stat.S_ISREG(status.st_mode) else None  # a FIFO has no size
        published = await run_with_progress(
            lambda advance: publish(self.store, self.identity, params.path, work, advance),
            call=call,
            events=self.events,
            operation=CONTENT_ADD.name,
            target=str(params.path),
            total=size,
            to_caller=params.progress,
        )
        self.events.publish(
            RECORD_ADDED.name, {"record": to_json(published.record), "origin": "local"}
        )
        added = published.added
        if self.remote is not None:
            self.remote.provide_nowait(published.record.id)
            self.remote.provide_nowait(added.root)
        return {"id": str(published.record.id), "content": str(added.root), "size": added.size}

    async def content_get(self, params: GetParams, call: Call) -> dict[str, object]:
        fetched: dict[str, object] | None = None
        if self.remote is not None:

            def report(done: int, total: int | None) -> None:
                if params.progress:
                    call.send_progress(done, total)
                self.events.publish(
                    "progress",
                    {
                        "operation": CONTENT_GET.name,
                        "target": str(params.cid),
                        "done": done,
                        "total": total,
                    },
                )

            fetched = await self.remote.fetch_content(params.cid, pin=params.pin, report=report)

        def locate() -> tuple[Cid, int | None]:
            root, record = resolve_content(self.store, params.cid)
            body = record.body if record is not None else None
            return root, body.size if isinstance(body, Contribution) else None

        root, total = await trio.to_thread.run_sync(locate)
        size = await run_with_progress(
            lambda advance: get_file(self.store, root, params.path, advance),
            call=call,
            events=self.events,
            operation=CONTENT_GET.name,
            target=str(params.cid),
            total=total,
            to_caller=params.progress,
        )
        return {"content": str(root), "path": str(params.path), "size": size, "fetched": fetched}

    async def content_cat(self, params: CatParams, call: Call) -> EncodedResult:
        if self.remote is not None and params.offset == 0:
            await self.remote.fetch_content(params.cid, pin=False, report=_ignore)

        def read_encoded() -> EncodedResult:
            # The JSON text is built here, in the worker thread: a megabyte of
            # base64 is never scanned by the JSON encoder (its alphabet needs
            # no escaping) nor encoded on the event loop, which serves the
            # other calls meanwhile.
            piece = read_content(self.store, params.cid, params.offset, params.max_bytes)
            head = {
                "content": str(piece.root),
                "offset": piece.offset,
                "bytes": len(piece.data),
                "eof": piece.eof,
            }
            text = json.dumps(head, separators=(",", ":")).encode()
            return EncodedResult(text[:-1] + b',"data":"' + base64.b64encode(piece.data) + b'"}')

        return await trio.to_thread.run_sync(read_encoded)

    async def car_export(self, params: ExportParams, call: Call) -> dict[str, object]:
        blocks = await run_with_progress(
            lambda advance: export_car(self.store, params.id, params.path, advance),
            call=call,
            events=self.events,
            operation=CAR_EXPORT.name,
            target=str(params.id),
            total=None,
            to_caller=params.progress,
        )
        return {"root": str(params.id), "path": str(params.path), "blocks": blocks}

    async def car_import(self, params: ImportParams, call: Call) -> dict[str, object]:
        status = await trio.to_thread.run_sync(params.path.stat)
        imported = await run_with_progress(
            lambda advance: import_car(self.store, params.path, advance),
            call=call,
            events=self.events,
            operation=CAR_IMPORT.name,
            target=str(params.path),
            total=status.st_size if stat.S_ISREG(status.st_mode) else None,
            to_caller=params.progress,
        )
        for record in imported.new_records:
            self.events.publish(RECORD_ADDED.name, {"record": to_json(record), "origin": "import"})
        return {
            "roots": [str(root) for root in imported.roots],
            "records": imported.records,
            "blocks": imported.blocks,
            "incomplete": [str(root) for root in imported.incomplete],
        }

    async def records_get(self, params: RecordParams, call: Call) -> dict[str, object]:
        if self.remote is not None:
            await self.remote.fetch_record(params.id)
        view = await trio.to_thread.run_sync(record_view, self.store, params.id)
        remixed_by = view.pop("remixed_by")
        return {"record": view, "remixed_by": remixed_by}

    async def records_list(self, params: ListParams, call: Call) -> dict[str, object]:
        author: bytes | None = None
        if params.author == "me":
            author = self.identity.public_key
        elif params.author is not None:
            author = public_key_of(params.author)
        criteria = RecordFilter(
            author=author,
            tag=params.tag,
            media_type=params.media_type,
            record_type=RecordType(params.type) if params.type else None,
            collab=params.collab,
            title_contains=params.title,
            limit=params.limit,
        )
        records = await trio.to_thread.run_sync(self.store.list_records, criteria)
        return {"records": [to_json(record) for record in records]}

    async def lineage_ancestors(self, params: LineageParams, call: Call) -> dict[str, object]:
        found = await trio.to_thread.run_sync(
            lambda: ancestors(self.store, params.id, depth=params.depth, limit=params.limit)
        )
        return {**_lineage_view(found), "missing": [str(cid) for cid in found.missing]}

    async def lineage_descendants(self, params: LineageParams, call: Call) -> dict[str, object]:
        found = await trio.to_thread.run_sync(
            lambda: descendants(self.store, params.id, depth=params.depth, limit=params.limit)
        )
        return _lineage_view(found)

    async def pins_list(self, params: PinsParams, call: Call) -> dict[str, object]:
        pins = await trio.to_thread.run_sync(self.store.pins)
        return {
            "pins": [{"cid": str(cid), "reason": reason} for cid, reason in pins[: params.limit]],
            "truncated": len(pins) > params.limit,
        }

    async def store_fsck(self, params: FsckParams, call: Call) -> dict[str, object]:
        statistics = await trio.to_thread.run_sync(self.store.statistics)
        report = await run_with_progress(
            lambda advance: self.store.fsck(repair=params.repair, on_progress=advance),
            call=call,
            events=self.events,
            operation=STORE_FSCK.name,
            target=str(self.store.data_dir.root),
            total=statistics["block_bytes"],
            to_caller=params.progress,
        )
        return {
            "clean": report.clean,
            "blocks_checked": report.blocks_checked,
            "records_checked": report.records_checked,
            "repaired": report.repaired,
            "corrupt_blocks": report.corrupt_blocks,
            "missing_blocks": report.missing_blocks,
            "stray_files": report.stray_files,
            "bad_records": report.bad_records,
            "unindexed_blocks": report.unindexed_blocks,
            "uncommitted_bytes": report.uncommitted_bytes,
        }


def _ignore(done: int, total: int | None) -> None:
    pass


def _lineage_view(found: Lineage) -> dict[str, object]:
    return {
        "root": str(found.root),
        "records": [to_json(record) for record in found.records],
        "truncated": found.truncated,
    }
