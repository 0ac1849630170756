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

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from node.cli_backend import (
    DaemonError,
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
    RECORDS_GET,
    RECORDS_LIST,
    STORE_FSCK,
)
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
        try:
            return self.client.call(method, params, on_progress=progress)
        except RpcError as error:
            raise DaemonError(error_line(method, error, paths or {})) from None
        except DaemonGone as error:
            raise DaemonError(f"{error} (during {method})") from None
        except ConnectionError as error:  # the socket broke: the daemon died or was killed
            raise DaemonError(f"lost the connection to the daemon: {error.strerror}") from None

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
        # DAG's sizes, so reading a large file this way stays linear.
        target, offset = str(cid), 0
        while True:
            piece = self._call(
                CONTENT_CAT.name, {"cid": target, "offset": offset, "max_bytes": MAX_CAT_BYTES}
            )
            data = base64.b64decode(piece["data"], validate=True)
            out.write(data)
            offset += len(data)
            target = piece["content"]  # a record id was resolved once: read its content
            if piece["eof"]:
                return
            if not data:
                raise DaemonError(f"{CONTENT_CAT.name} returned no bytes before the end")

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
