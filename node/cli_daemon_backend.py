"""``DaemonBackend``: the CLI's store operations as calls to the running daemon.

What the CLI uses while a daemon runs on the data directory. Each method is
one JSON-RPC method of ``node.rpc_api`` (``cat`` is a loop of bounded
``content.cat`` slices; ``lineage`` is three calls), called through the
blocking ``RpcClient`` on one connection. Paths are made absolute (the
daemon has its own working directory); long calls ask for ``progress``
notifications and hand them to the command's progress bar.

Errors: the daemon's error objects become ``DaemonError`` whose text is the
line the same failure prints offline. That works because the daemon's
message is ``str()`` of the very exception the offline command would have
raised (``rpc_error_for``): a protocol error gets back the label that
``node.cli`` puts in front of it, found from the class name in ``data``, and
a file error gets back the path as the user typed it.
"""

from __future__ import annotations

import binascii
import contextlib
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    describe,
    protocol_error_class,
)
from node.client import DaemonGone, RpcClient
from node.fsck import FsckReport
from node.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, Params, RpcError
from node.operations import WorkFields
from node.rpc_api import (
    CAR_EXPORT,
    CAR_IMPORT,
    CONTENT_ADD,
    CONTENT_CAT,
    CONTENT_GET,
    LINEAGE_ANCESTORS,
    LINEAGE_DESCENDANTS,
    NODE_STATUS,
    PINS_LIST,
    RECORDS_GET,
    RECORDS_LIST,
    STORE_FSCK,
)
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
from node.rpc_api_social import PROFILES_GET
from node.rpc_api_storage import MAX_PINS, PINS_ADD, PINS_RM, STORE_GC
from node.rpc_params import MAX_CAT_BYTES, MAX_LINEAGE_RECORDS
from node.rpc_schema import (
    DATA_DIR,
    FILE_ERROR,
    INTEGRITY,
    INVALID_INPUT,
    NETWORK_ERROR,
    NOT_FOUND,
)
from protocol.cid import Cid
from protocol.records import Credit


class DaemonBackend:
    """Calls on one connection to the daemon; ``close`` closes it."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client

    def close(self) -> None:
        self.client.close()

    def _call(
        self,
        method: str,
        params: Params | Mapping[str, Any],
        *,
        progress: Progress | None = None,
        paths: Mapping[Path, Path] | None = None,
    ) -> Any:
        """The result of ``method``; ``paths`` maps absolute paths sent to those the user gave."""
        with _daemon_errors(method, paths):
            return self.client.call(method, params, on_progress=progress)

    def author(self) -> str:
        return str(self._call(NODE_STATUS.name, None)["author"])

    def publish(self, path: Path, work: WorkFields, progress: Progress) -> Publication:
        absolute = path.absolute()
        params = {
            "path": str(absolute),
            "title": work.title,
            "description": work.description,
            "license": work.license,
            "tags": list(work.tags),
            "media_type": work.media_type,
            "collab": str(work.collab) if work.collab is not None else None,
            "parents": [
                {"id": str(parent.record_id), "weight": parent.weight} for parent in work.parents
            ],
            "upstream_bps": work.upstream_bps,
        }
        result = self._call(CONTENT_ADD.name, params, progress=progress, paths={absolute: path})
        return Publication(Cid.parse(result["id"]), Cid.parse(result["content"]), result["size"])

    def record(self, record_id: Cid) -> RecordDetail:
        result = self._call(RECORDS_GET.name, {"id": str(record_id)})
        return RecordDetail(result["record"], tuple(map(Cid.parse, result["remixed_by"])))

    def records(self, query: RecordQuery) -> list[RecordView]:
        params: dict[str, object] = {
            "author": query.author,
            "tag": query.tag,
            "media_type": query.media_type,
            "type": str(query.record_type) if query.record_type is not None else None,
            "title": query.title,
            "limit": query.limit,
        }
        given = {name: value for name, value in params.items() if value is not None}
        return list(self._call(RECORDS_LIST.name, given)["records"])

    def lineage(self, root: Cid, depth: int) -> LineageGraph:
        walk = {"id": str(root), "depth": depth, "limit": MAX_LINEAGE_RECORDS}
        own = self._call(RECORDS_GET.name, {"id": str(root)})["record"]
        up = self._call(LINEAGE_ANCESTORS.name, walk)
        down = self._call(LINEAGE_DESCENDANTS.name, walk)
        return LineageGraph.build(
            root,
            [own, *up["records"], *down["records"]],
            map(Cid.parse, up["missing"]),
            up["truncated"] or down["truncated"],
        )

    def write_content(self, cid: Cid, out: BinaryIO) -> None:
        # Slices of at most MAX_CAT_BYTES: the daemon seeks to each one by the
        # DAG's sizes, so reading a large file this way stays linear. The first
        # call resolves a record id (and fetches what is missing from peers);
        # the next ones are pipelined, CAT_WINDOW in flight, so that the daemon
        # reads and encodes slices while this process decodes and writes one.
        first = self._call(
            CONTENT_CAT.name, {"cid": str(cid), "offset": 0, "max_bytes": MAX_CAT_BYTES}
        )
        offset = _write_slice(first, 0, out)
        if first["eof"]:
            return
        root = first["content"]  # a record id was resolved once: read its content
        following = (
            {"cid": root, "offset": start, "max_bytes": MAX_CAT_BYTES}
            for start in itertools.count(offset, MAX_CAT_BYTES)
        )
        try:
            for piece in self.client.pipeline(CONTENT_CAT.name, following, window=CAT_WINDOW):
                offset = _write_slice(piece, offset, out)
                if piece["eof"]:
                    return
        except RpcError as error:
            raise DaemonError(error_line(CONTENT_CAT.name, error, {})) from None
        except DaemonGone as error:
            raise DaemonError(f"{error} (during {CONTENT_CAT.name})") from None
        except ConnectionError as error:
            raise DaemonError(f"lost the connection to the daemon: {error.strerror}") from None

    def get(self, cid: Cid, destination: Path, progress: Progress, *, pin: bool) -> Retrieved:
        absolute = destination.absolute()
        result = self._call(
            CONTENT_GET.name,
            {"cid": str(cid), "path": str(absolute), "pin": pin},
            progress=progress,
            paths={absolute: destination},
        )
        return Retrieved(Cid.parse(result["content"]), result["size"], result.get("fetched"))

    def export(self, record_id: Cid, destination: Path, progress: Progress) -> int:
        absolute = destination.absolute()
        result = self._call(
            CAR_EXPORT.name,
            {"id": str(record_id), "path": str(absolute)},
            progress=progress,
            paths={absolute: destination},
        )
        return int(result["blocks"])

    def import_car(self, source: Path, progress: Progress) -> ImportSummary:
        absolute = source.absolute()
        result = self._call(
            CAR_IMPORT.name, {"path": str(absolute)}, progress=progress, paths={absolute: source}
        )
        return ImportSummary(
            tuple(map(Cid.parse, result["roots"])),
            result["records"],
            result["blocks"],
            tuple(map(Cid.parse, result["incomplete"])),
        )

    def fsck(self, repair: bool, progress: Progress) -> FsckReport:
        result = self._call(STORE_FSCK.name, {"repair": repair}, progress=progress)
        return FsckReport(
            blocks_checked=result["blocks_checked"],
            records_checked=result["records_checked"],
            corrupt_blocks=result["corrupt_blocks"],
            missing_blocks=result["missing_blocks"],
            stray_files=result["stray_files"],
            bad_records=result["bad_records"],
            unindexed_blocks=result["unindexed_blocks"],
            uncommitted_bytes=result["uncommitted_bytes"],
            repaired=result["repaired"],
        )

    def author_names(self, authors: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(authors))
        params = ({"author": author} for author in wanted)
        with _daemon_errors(PROFILES_GET.name):  # pipelined: not one round trip per author
            results = list(self.client.pipeline(PROFILES_GET.name, params, window=NAMES_WINDOW))
        return {
            author: str(result["profile"]["name"])
            for author, result in zip(wanted, results, strict=True)
            if result["profile"] is not None
        }

    # The collab methods (node.rpc_api_collab): their results are what the store gives offline.

    def open_collab(self, title: str, brief: str, deadline_ms: int | None) -> RecordView:
        params = {"title": title, "brief": brief, "deadline_ms": deadline_ms}
        return cast(RecordView, self._call(COLLABS_OPEN.name, params)["collab"])

    def collabs(self, limit: int) -> list[RecordView]:
        return list(self._call(COLLABS_LIST.name, {"limit": limit})["collabs"])

    def collab(self, collab_id: Cid) -> Mapping[str, Any]:
        return cast(Mapping[str, Any], self._call(COLLABS_SHOW.name, {"id": str(collab_id)}))

    def create_production(
        self, title: str, credits: Sequence[Credit], collab: Cid | None, description: str
    ) -> RecordView:
        params = {
            "title": title,
            "credits": [
                {
                    "contribution": str(credit.contribution),
                    "role": credit.role,
                    "share_bps": credit.share_bps,
                }
                for credit in credits
            ],
            "collab": str(collab) if collab is not None else None,
            "description": description,
        }
        return cast(RecordView, self._call(PRODUCTIONS_CREATE.name, params)["production"])

    def production(self, production_id: Cid) -> Mapping[str, Any]:
        return cast(
            Mapping[str, Any], self._call(PRODUCTIONS_SHOW.name, {"id": str(production_id)})
        )

    def credits(self, production_id: Cid, *, fetch: bool) -> Mapping[str, Any]:
        params = {"id": str(production_id), "fetch": fetch}
        return cast(Mapping[str, Any], self._call(CREDITS_GET.name, params))

    def acknowledge(self, production_id: Cid, accept: bool, reason: str) -> RecordView:
        params = {"production": str(production_id), "accept": accept, "reason": reason}
        return cast(RecordView, self._call(ACKS_PUBLISH.name, params)["ack"])

    def graph(self, request: GraphRequest) -> Mapping[str, Any]:
        params = {
            "id": str(request.record),
            "format": request.output_format,
            "production": str(request.production) if request.production is not None else None,
            "depth": request.depth,
            "max_nodes": request.max_nodes,
        }
        return cast(Mapping[str, Any], self._call(LINEAGE_GRAPH.name, params))

    # -- pins and garbage collection (node.cli_pins) --

    def pin_add(self, cid: Cid, reason: str) -> Mapping[str, Any]:
        return dict(self._call(PINS_ADD.name, {"cid": str(cid), "reason": reason}))

    def pin_rm(self, cid: Cid) -> Mapping[str, Any]:
        return dict(self._call(PINS_RM.name, {"cid": str(cid)}))

    def pins(self) -> list[Mapping[str, Any]]:
        return list(self._call(PINS_LIST.name, {"limit": MAX_PINS})["pins"])

    def gc(self, progress: Progress) -> Mapping[str, Any]:
        return dict(self._call(STORE_GC.name, {}, progress=progress))


def error_line(method: str, error: RpcError, paths: Mapping[Path, Path]) -> str:
    """The one line the CLI prints for ``error``: the same as offline for the same failure."""
    data = error.data if isinstance(error.data, dict) else {}
    if error.code in (INVALID_INPUT, INTEGRITY):
        kind = protocol_error_class(str(data.get("error")))
        label = describe(kind) if kind is not None else "invalid input"
        if kind is None and error.code == INTEGRITY:
            label = "integrity error"
        return f"{label}: {error.message}"
    if error.code == FILE_ERROR:
        path = data.get("path")
        if isinstance(path, str) and error.message.startswith(path):
            return as_given(Path(path), paths) + error.message[len(path) :]
        return error.message
    if error.code in (NOT_FOUND, DATA_DIR, INVALID_PARAMS, NETWORK_ERROR):
        return error.message
    if error.code == METHOD_NOT_FOUND:
        return (
            f"the running daemon does not serve {method}: it is older than this command"
            " (restart it with `remixnet stop` and `remixnet daemon`)"
        )
    if error.code == INTERNAL_ERROR:
        return f"{method} failed inside the daemon ({error.data}); its log has the details"
    return f"{method}: {error.message} (code {error.code})"


def as_given(path: Path, paths: Mapping[Path, Path]) -> str:
    """``path`` (absolute, as the daemon names it) written as the user wrote it.

    A path sent, or a file beside it (the temporary file of an atomic
    write), is shown relative to what the user typed; any other as it is.
    """
    for absolute, given in paths.items():
        if path == absolute:
            return str(given)
        if path.parent == absolute.parent:
            return str(given.parent / path.name)
    return str(path)


CAT_WINDOW = 4  # content.cat slices in flight (each ~1.4 MB of JSON on the wire)
NAMES_WINDOW = 16  # profiles.get calls in flight


@contextlib.contextmanager
def _daemon_errors(method: str, paths: Mapping[Path, Path] | None = None) -> Iterator[None]:
    """A failed call to the daemon as ``DaemonError``: one line for the user."""
    try:
        yield
    except RpcError as error:
        raise DaemonError(error_line(method, error, paths or {})) from None
    except DaemonGone as error:
        raise DaemonError(f"{error} (during {method})") from None
    except ConnectionError as error:  # the socket broke: the daemon died or was killed
        raise DaemonError(f"lost the connection to the daemon: {error.strerror}") from None


def _write_slice(piece: Mapping[str, Any], offset: int, out: BinaryIO) -> int:
    """Write one ``content.cat`` slice that must start at ``offset``; the offset after it.

    Every slice but the last holds exactly ``MAX_CAT_BYTES`` (the next
    requests were sent for the offsets that follows from that).
    """
    try:  # strict: only the base64 alphabet, correctly padded (checked in C, unlike validate=)
        data = binascii.a2b_base64(piece["data"], strict_mode=True)
    except binascii.Error as error:
        raise DaemonError(f"{CONTENT_CAT.name} returned bad base64 ({error})") from None
    if piece["offset"] != offset:
        raise DaemonError(f"{CONTENT_CAT.name} returned offset {piece['offset']}, not {offset}")
    if not piece["eof"] and len(data) != MAX_CAT_BYTES:
        raise DaemonError(f"{CONTENT_CAT.name} returned {len(data)} bytes before the end")
    out.write(data)
    return offset + len(data)
