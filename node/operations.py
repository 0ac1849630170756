"""Operations on a store shared by the offline CLI and the daemon's RPC methods.

Each is a blocking function over a ``Store`` (run it in a worker thread under
trio), returns plain values and raises the store's and protocol's typed errors
(``NotFound``, ``ProtocolError``, ``OSError``): callers render them as a CLI
line or a JSON-RPC error. Nothing here prints or knows about JSON-RPC.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from node.datadir import Identity
from node.store import NotFound, Store
from node.transfer import Added, add_file, resolve_content
from protocol.cid import RAW, Cid
from protocol.content import MAX_BLOCK_SIZE, MAX_DEPTH, InvalidDag, decode_file_node
from protocol.records import Contribution, Parent, SignedRecord, sign_record, to_json

DEFAULT_LICENSE = "CC-BY-SA-4.0"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class WorkFields:
    """What an artist says about a work being published (all but its content)."""

    title: str | None = None  # None: the file name
    description: str = ""
    license: str = DEFAULT_LICENSE
    tags: tuple[str, ...] = ()
    media_type: str | None = None  # None: guessed from the file name
    collab: Cid | None = None
    parents: tuple[Parent, ...] = ()
    upstream_bps: int | None = None


@dataclass(frozen=True, slots=True)
class Published:
    record: SignedRecord
    added: Added


# Stands in for the content while the fields are checked before a file is read.
_NO_CONTENT = Cid.for_raw(b"")


def contribution_for(work: WorkFields, file_name: str, content: Cid, size: int) -> Contribution:
    """The contribution body for ``work`` about a file. Raises ``InvalidRecord``."""
    guessed = mimetypes.guess_type(file_name)[0]
    return Contribution(
        title=work.title if work.title is not None else file_name,
        description=work.description,
        content=content,
        size=size,
        media_type=work.media_type or guessed or "application/octet-stream",
        license=work.license,
        tags=tuple(dict.fromkeys(work.tags)),
        parents=work.parents,
        upstream_bps=work.upstream_bps,
        collab=work.collab,
    )


def check_work(work: WorkFields, file_name: str) -> None:
    """Raise ``InvalidRecord`` now if ``work`` cannot be published, before any byte is read."""
    contribution_for(work, file_name, _NO_CONTENT, 0)


def check_parents(store: Store, parents: tuple[Parent, ...]) -> None:
    """Raise ``NotFound("parent record", id)`` unless every parent is in the store."""
    for parent in parents:
        if not store.has_record(parent.record_id):
            raise NotFound("parent record", parent.record_id)


def publish(
    store: Store,
    identity: Identity,
    path: Path,
    work: WorkFields,
    on_progress: Callable[[int], None],
) -> Published:
    """Import the file at ``path``, sign a contribution for it, store it and pin its content.

    Parents must be in the store (``NotFound`` otherwise) and the fields must
    make a valid contribution (``InvalidRecord`` otherwise), both checked
    before the file is read. Raises ``FileNotFoundError``/``IsADirectoryError``
    for a bad path. Crash safety is ``add_file``'s: repeating an interrupted
    publish completes it.
    """
    check_work(work, path.name)
    check_parents(store, work.parents)
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory (not a file)", str(path))
    added = add_file(store, path, on_progress)
    body = contribution_for(work, path.name, added.root, added.size)
    record = sign_record(body, private_key=identity.private_key, created_ms=now_ms())
    store.put_record(record)
    store.pin(added.root, "own contribution")
    return Published(record, added)


def record_view(store: Store, record_id: Cid) -> dict[str, object]:
    """A record's JSON view plus ``remixed_by`` (ids of the records naming it a parent)."""
    record = store.get_record(record_id)
    children = store.children_of(record.id)
    return {**to_json(record), "remixed_by": [str(child) for child in children]}


@dataclass(frozen=True, slots=True)
class ContentSlice:
    root: Cid
    offset: int
    data: bytes
    eof: bool  # nothing follows ``data``


def read_content(store: Store, cid: Cid, offset: int, max_bytes: int) -> ContentSlice:
    """At most ``max_bytes`` of the content of ``cid`` (or of the record ``cid``) from ``offset``.

    Every block read is verified; subtrees that lie wholly before ``offset``
    are skipped by their declared sizes without being read, so reading a
    slice costs the same wherever it is in the file: a client can read a
    large file slice by slice.
    """
    root, _ = resolve_content(store, cid)
    taken = bytearray()
    pieces = iter_content_from(store, root, offset)
    for piece in pieces:
        room = max_bytes - len(taken)
        taken += piece[:room]
        if len(taken) >= max_bytes:
            eof = room >= len(piece) and next(pieces, None) is None
            return ContentSlice(root, offset, bytes(taken), eof)
    return ContentSlice(root, offset, bytes(taken), True)


def iter_content_from(store: Store, root: Cid, offset: int) -> Iterator[bytes]:
    """The bytes of the file at ``root`` from ``offset`` on, as ``iter_file`` checks them.

    Each block read is hashed against its CID (``BlockMismatch``) and each
    node's children must hold exactly the sizes it announces (``InvalidDag``);
    a child whose bytes all lie before ``offset`` is skipped unread. Empty
    pieces are not yielded.
    """
    data = _fetch_block(store, root)
    if root.codec == RAW:
        if data[offset:]:
            yield data[offset:]
        return
    node = decode_file_node(data)
    skip = offset
    if node.data[skip:]:
        yield node.data[skip:]
    skip = max(0, skip - len(node.data))
    stack = [iter(zip(node.links, node.blocksizes, strict=True))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        link, expected_size = entry
        if skip >= expected_size:
            skip -= expected_size
            continue
        data = _fetch_block(store, link.cid)
        if link.cid.codec == RAW:
            if len(data) != expected_size:
                raise InvalidDag(
                    "blocksize-mismatch", f"{link.cid}: {len(data)} != {expected_size}"
                )
            if data[skip:]:
                yield data[skip:]
            skip = 0
            continue
        child = decode_file_node(data)
        if child.filesize != expected_size:
            raise InvalidDag(
                "blocksize-mismatch", f"{link.cid}: {child.filesize} != {expected_size}"
            )
        if len(stack) >= MAX_DEPTH:
            raise InvalidDag("too-deep", str(root))
        if child.data[skip:]:
            yield child.data[skip:]
        skip = max(0, skip - len(child.data))
        stack.append(iter(zip(child.links, child.blocksizes, strict=True)))


def _fetch_block(store: Store, cid: Cid) -> bytes:
    data = store.get_block(cid)
    if len(data) > MAX_BLOCK_SIZE:
        raise InvalidDag("block-too-large", str(len(data)))
    cid.verify(data)  # records' bytes come from the database, not the verifying block store
    return data


@dataclass(frozen=True, slots=True)
class Lineage:
    root: Cid
    records: list[SignedRecord]  # breadth first from ``root``, without it
    missing: list[Cid]  # named as parents but not in this store (ancestors only)
    truncated: bool  # ``limit`` was reached before the walk ended


def ancestors(store: Store, root: Cid, *, depth: int, limit: int) -> Lineage:
    """The works ``root`` remixes, and theirs, up to ``depth`` generations. ``NotFound``."""
    return _walk(store, root, depth, limit, up=True)


def descendants(store: Store, root: Cid, *, depth: int, limit: int) -> Lineage:
    """The remixes of ``root``, and theirs, down ``depth`` generations. ``NotFound``."""
    return _walk(store, root, depth, limit, up=False)


def _walk(store: Store, root: Cid, depth: int, limit: int, *, up: bool) -> Lineage:
    store.get_record(root)  # NotFound for an unknown id
    seen = {root}
    records: list[SignedRecord] = []
    missing: list[Cid] = []
    level = [root]
    for _generation in range(depth):
        following: list[Cid] = []
        for current in level:
            neighbours = (
                [parent for parent, _ in store.parents_of(current)]
                if up
                else store.children_of(current)
            )
            for neighbour in neighbours:
                if neighbour in seen:
                    continue
                seen.add(neighbour)
                if not store.has_record(neighbour):
                    missing.append(neighbour)
                    continue
                if len(records) >= limit:
                    return Lineage(root, records, missing, truncated=True)
                records.append(store.get_record(neighbour))
                following.append(neighbour)
        if not following:
            break
        level = following
    return Lineage(root, records, missing, truncated=False)
