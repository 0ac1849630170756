"""What the CLI's commands ask of a node, answered by the daemon or by the store itself.

``Backend`` is the one interface the store commands (``node.cli_content``)
use. It has two implementations returning the same typed results:
``StoreBackend`` (``node.cli_store_backend``) works on the data directory in
this process, ``DaemonBackend`` (``node.cli_daemon_backend``) calls the
running daemon's JSON-RPC methods. ``node.cli`` picks one per command: the
daemon when one answers on the data directory's socket, else the store.

Invariants:
* a command parses and checks its arguments before it calls a backend, so
  both backends get the same valid input and a user's mistake reads the same
  either way;
* both backends raise the same one-line errors for the same failure: the
  store's and protocol's own exceptions offline, ``DaemonError`` carrying the
  very same line when the daemon reports them;
* records travel as their JSON views (``protocol.records.to_json``): what the
  daemon sends and what ``--json`` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from node.fsck import FsckReport
from node.operations import WorkFields
from protocol.car import InvalidCar
from protocol.cid import Cid
from protocol.content import InvalidDag
from protocol.errors import BlockMismatch, InvalidCid, ProtocolError
from protocol.identity import InvalidAuthorId
from protocol.records import Credit, InvalidRecord, RecordType

RecordView = Mapping[str, Any]
# (bytes done, bytes in all when known), both cumulative: the daemon's `progress` notification.
Progress = Callable[[int, int | None], None]


class DaemonError(Exception):
    """The daemon refused or failed a call; ``str()`` is the line the CLI prints."""


@dataclass(frozen=True, slots=True)
class Publication:
    """A work just published: its record and its content."""

    record: Cid
    content: Cid
    size: int


@dataclass(frozen=True, slots=True)
class RecordDetail:
    record: RecordView
    remixed_by: tuple[Cid, ...]  # ids of the records naming it as a parent


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """Filters of ``ls``; None means any."""

    author: str | None = None  # a PeerID (already checked) or "me"
    tag: str | None = None
    media_type: str | None = None  # exact, or "image/*"
    record_type: RecordType | None = None
    title: str | None = None  # text the title contains
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Retrieved:
    """Content written to a file: its root and its size."""

    content: Cid
    size: int
    fetched: Mapping[str, Any] | None = None  # the fetch from peers (daemon only), if any


@dataclass(frozen=True, slots=True)
class ImportSummary:
    roots: tuple[Cid, ...]
    records: int
    blocks: int
    incomplete: tuple[Cid, ...]  # content roots the CAR did not hold completely


@dataclass(frozen=True, slots=True)
class LineageGraph:
    """A record, the ancestors and descendants held here, and the remix edges between them.

    ``records`` holds the views of the root and of every record found;
    ``missing`` the ancestors named by a parent link but not held here;
    ``truncated`` is true when a walk stopped at its record limit.
    """

    root: Cid
    records: Mapping[Cid, RecordView]
    missing: tuple[Cid, ...]
    truncated: bool
    children: Mapping[Cid, tuple[Cid, ...]]

    @classmethod
    def build(
        cls, root: Cid, views: Iterable[RecordView], missing: Iterable[Cid], truncated: bool
    ) -> LineageGraph:
        records = {Cid.parse(str(view["id"])): view for view in views}
        children: dict[Cid, list[Cid]] = {}
        for record_id in records:
            for parent in _parents(records, record_id):
                children.setdefault(parent, []).append(record_id)
        return cls(
            root,
            records,
            tuple(missing),
            truncated,
            {parent: tuple(sorted(found, key=Cid.to_bytes)) for parent, found in children.items()},
        )

    def parents_of(self, record_id: Cid) -> list[Cid]:
        """The works ``record_id`` remixes, in the store's order (by CID bytes)."""
        return _parents(self.records, record_id)

    def children_of(self, record_id: Cid) -> list[Cid]:
        """The remixes of ``record_id`` held here, in the store's order (by CID bytes)."""
        return list(self.children.get(record_id, ()))

    def ancestors(self) -> list[Cid]:
        """Ancestors held here, depth first from the root (without it)."""
        return self._depth_first(self.parents_of)

    def descendants(self) -> list[Cid]:
        """Descendants held here, depth first from the root (without it)."""
        return self._depth_first(self.children_of)

    def _depth_first(self, neighbours: Callable[[Cid], list[Cid]]) -> list[Cid]:
        seen: set[Cid] = set()
        order: list[Cid] = []
        stack = [self.root]
        while stack:
            current = stack.pop()
            if current in seen or current not in self.records:
                continue
            seen.add(current)
            order.append(current)
            stack.extend(neighbours(current))
        return order[1:]

    def to_json(self, names: Mapping[str, str]) -> dict[str, object]:
        """What ``lineage --json`` prints: records carry ``author_name`` (None if unknown)."""
        return {
            "root": str(self.root),
            "ancestors": [with_author_name(self.records[cid], names) for cid in self.ancestors()],
            "descendants": [
                with_author_name(self.records[cid], names) for cid in self.descendants()
            ],
            "missing": sorted({str(cid) for cid in self.missing}),
        }


def with_author_name(view: RecordView, names: Mapping[str, str]) -> dict[str, object]:
    """A record view with ``author_name``: its author's name in ``names``, or None."""
    return {**view, "author_name": names.get(str(view["author"]))}


def _parents(records: Mapping[Cid, RecordView], record_id: Cid) -> list[Cid]:
    view = records.get(record_id)
    if view is None or view["type"] != str(RecordType.CONTRIBUTION):
        return []
    return sorted((Cid.parse(parent["id"]) for parent in view["parents"]), key=Cid.to_bytes)


class Backend(Protocol):
    """The store operations of the CLI. Every method raises the one-line errors described above."""

    def author(self) -> str:
        """This node's author id (its PeerID)."""
        ...

    def publish(self, path: Path, work: WorkFields, progress: Progress) -> Publication:
        """Import the file at ``path`` and publish it as a signed contribution."""
        ...

    def record(self, record_id: Cid) -> RecordDetail:
        """One record and the ids of its remixes."""
        ...

    def records(self, query: RecordQuery) -> list[RecordView]:
        """Records matching every filter of ``query``, newest first."""
        ...

    def lineage(self, root: Cid, depth: int) -> LineageGraph:
        """Ancestors and descendants of ``root`` up to ``depth`` generations each way."""
        ...

    def write_content(self, cid: Cid, out: BinaryIO) -> None:
        """Write the content of ``cid`` (or of the record ``cid``) to ``out``, verified."""
        ...

    def get(self, cid: Cid, destination: Path, progress: Progress, *, pin: bool) -> Retrieved:
        """Write the content of ``cid`` to ``destination``, verified and atomically.

        The daemon first fetches what is missing from peers (and pins it with ``pin``).
        """
        ...

    def export(self, record_id: Cid, destination: Path, progress: Progress) -> int:
        """Write the record, its ancestors and their content as a CARv1; the block count."""
        ...

    def import_car(self, source: Path, progress: Progress) -> ImportSummary:
        """Import a CARv1 file, verifying every block and record."""
        ...

    def fsck(self, repair: bool, progress: Progress) -> FsckReport:
        """Verify every block and record (and with ``repair`` remove what is damaged)."""
        ...

    def author_names(self, authors: Iterable[str]) -> dict[str, str]:
        """Profile names held here of ``authors`` (PeerIDs); authors without one are left out."""
        ...

    # Collabs, productions, credits, acks and drawings: each returns the JSON
    # result of its method in ``node.rpc_api_collab`` (computed offline by the
    # same function of ``node.rpc_methods_collab`` the daemon runs).

    def open_collab(self, title: str, brief: str, deadline_ms: int | None) -> RecordView:
        """Sign and publish a collab directed by this node; its record view."""
        ...

    def collabs(self, limit: int) -> list[RecordView]:
        """Collabs held here, newest first (views with ``author_name``)."""
        ...

    def collab(self, collab_id: Cid) -> Mapping[str, Any]:
        """``collabs.show``: the collab, what answered it (with remixes), its productions."""
        ...

    def create_production(
        self, title: str, credits: Sequence[Credit], collab: Cid | None, description: str
    ) -> RecordView:
        """Sign and publish a production; its record view."""
        ...

    def production(self, production_id: Cid) -> Mapping[str, Any]:
        """``productions.show``: the production, its credits and the acks so far."""
        ...

    def credits(self, production_id: Cid, *, fetch: bool) -> Mapping[str, Any]:
        """``credits.get``: the split. ``fetch`` (daemon only) first fetches missing records."""
        ...

    def acknowledge(self, production_id: Cid, accept: bool, reason: str) -> RecordView:
        """Sign and publish this node's ack of a production; its record view."""
        ...

    def graph(self, request: GraphRequest) -> Mapping[str, Any]:
        """``lineage.graph``: the drawing's text, format and size."""
        ...

    # Pins and garbage collection (node.cli_pins): each returns the JSON result of
    # its method in ``node.rpc_api_storage`` (or ``pins.list``), computed offline by
    # the same store functions the daemon runs.

    def pin_add(self, cid: Cid, reason: str) -> Mapping[str, Any]:
        """``pins.add``: pin content held fully here (a record id means its content)."""
        ...

    def pin_rm(self, cid: Cid) -> Mapping[str, Any]:
        """``pins.rm``: unpin content (a record id means its content)."""
        ...

    def pins(self) -> list[Mapping[str, Any]]:
        """``pins.list``: every pin, oldest first."""
        ...

    def gc(self, progress: Progress) -> Mapping[str, Any]:
        """``store.gc``: collect garbage; raises ``DaemonError`` when the store stays busy."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class GraphRequest:
    """What to draw (``lineage --format dot|svg``)."""

    record: Cid
    output_format: str = "svg"  # "svg" or "dot"
    production: Cid | None = None
    depth: int = 50
    max_nodes: int = 400


ERROR_LABELS: dict[type[ProtocolError], str] = {
    InvalidCid: "not a valid id",
    InvalidAuthorId: "not a valid author id",
    InvalidRecord: "invalid record",
    InvalidCar: "not a valid CAR file",
    InvalidDag: "invalid content",
    BlockMismatch: "integrity error",
}


def describe(kind: type[ProtocolError]) -> str:
    """A few words on what kind of input was wrong, for the one-line error."""
    for ancestor in kind.__mro__:
        if ancestor in ERROR_LABELS:
            return ERROR_LABELS[ancestor]
    return "invalid input"


def protocol_error_class(name: str) -> type[ProtocolError] | None:
    """The ``ProtocolError`` subclass called ``name`` (as the daemon reports it), if known."""
    stack: list[type[ProtocolError]] = [ProtocolError]
    while stack:
        kind = stack.pop()
        if kind.__name__ == name:
            return kind
        stack.extend(kind.__subclasses__())
    return None
