"""Files as IPFS UnixFS DAGs: chunking, the balanced layout, and reading back.

The layout is the one ``ipfs add --cid-version=1`` makes by default (js
``ipfs-unixfs-importer`` with ``cidVersion: 1, rawLeaves: true``, fixed
262 144-byte chunks, balanced layout of at most 174 links per node,
``reduceSingleLeafToSelf``), so a file's root CID here is its CID in IPFS:

* The file is cut into 256 KiB chunks (the last one shorter; an empty file is
  one empty chunk). Each chunk is a ``raw`` block.
* Chunks are grouped, in order, 174 at a time under a dag-pb UnixFS File node;
  those nodes are grouped 174 at a time under the next level, and so on until
  one node is left: the root. A group of one still gets its own node (only a
  file of a single chunk has that chunk's raw CID as its root).
* A link's ``Tsize`` is the total size of the blocks under it (a leaf's
  length; a node's encoded length plus its links' ``Tsize``); the node's
  ``blocksizes[i]`` is the number of file bytes under link ``i``.

Byte-level encodings live in ``protocol.dagpb``; docs/protocol.md ("Content") is
the normative description.

Invariants: building needs memory for one chunk plus at most ``MAX_LINKS``
pending links per level, whatever the file size. Reading hashes every block
against its CID before looking at it, checks that the sizes announced by each
node add up, and keeps at most one node's links per level of the DAG.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from protocol.cid import DAG_PB, RAW, Cid
from protocol.dagpb import (
    MAX_FILE_SIZE,
    UNIXFS_FILE,
    UNIXFS_RAW,
    UNIXFS_TYPE_NAMES,
    InvalidDag,
    decode_pb_node,
    decode_unixfs_data,
    encode_file_node,
)
from protocol.errors import LocalProtocolError

__all__ = [
    "CHUNK_SIZE",
    "MAX_BLOCK_SIZE",
    "MAX_DEPTH",
    "MAX_LINKS",
    "Block",
    "DagBuilder",
    "FileNode",
    "InvalidDag",
    "Link",
    "child_links",
    "dag_cids",
    "decode_file_node",
    "file_size",
    "iter_dag_blocks",
    "iter_file",
]

CHUNK_SIZE = 262_144
MAX_LINKS = 174
# The largest block we accept from anyone. Our own blocks are at most a chunk
# (256 KiB) or a full node (~7 KiB); 1 MiB also admits the 1 MiB chunks of
# other importer profiles.
MAX_BLOCK_SIZE = 1 << 20
# A bound on the walk's memory; a balanced DAG of 2**63 bytes is 8 levels deep.
MAX_DEPTH = 32

GetBlock = Callable[[Cid], bytes]


@dataclass(frozen=True, slots=True)
class Block:
    """A block and its CID. Constructing one does not hash: see ``Cid.verify``."""

    cid: Cid
    data: bytes


@dataclass(frozen=True, slots=True)
class Link:
    """A link of a UnixFS file node. ``tsize`` is ``None`` when the block omits it."""

    cid: Cid
    tsize: int | None


@dataclass(frozen=True, slots=True)
class FileNode:
    """A decoded dag-pb UnixFS File (or Raw) node.

    The file bytes under it are ``data`` followed by the bytes under each link;
    ``blocksizes[i]`` is the size of what is under ``links[i]`` and ``filesize``
    is ``len(data) + sum(blocksizes)``.
    """

    links: tuple[Link, ...]
    filesize: int
    blocksizes: tuple[int, ...]
    data: bytes


# --- building ---------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """Links waiting at one level of the tree for their parent node."""

    links: list[tuple[Cid, int]]
    blocksizes: list[int]


class DagBuilder:
    """Feed file bytes in any pieces; get back the blocks that became complete.

    Blocks come out in an order where every block's children came before it,
    so a store that writes them in order never holds a node whose children are
    missing. ``chunk_size`` and ``max_links`` exist for tests; any other value
    than the defaults gives CIDs that IPFS would not.
    """

    __slots__ = ("_buffer", "_chunk_size", "_finished", "_leaves", "_levels", "_max_links", "_size")

    def __init__(self, *, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS) -> None:
        if not 1 <= chunk_size <= MAX_BLOCK_SIZE:
            raise LocalProtocolError("bad-chunk-size", str(chunk_size))
        if max_links < 2:
            raise LocalProtocolError("bad-max-links", str(max_links))
        self._chunk_size = chunk_size
        self._max_links = max_links
        self._buffer = bytearray()
        self._levels: list[_Pending] = []
        self._size = 0
        self._leaves = 0
        self._finished = False

    @property
    def size(self) -> int:
        """File bytes written so far."""
        return self._size

    @property
    def pending_links(self) -> int:
        """Links held for nodes not yet built (at most ``max_links - 1`` per level)."""
        return sum(len(level.links) for level in self._levels)

    @property
    def depth(self) -> int:
        """Levels of the tree begun so far, leaves included (0 before the first chunk)."""
        return len(self._levels)

    def write(self, data: bytes | bytearray | memoryview) -> list[Block]:
        """Add file bytes; return the blocks completed by them, children first."""
        if self._finished:
            raise LocalProtocolError("builder-finished", "write after finish")
        view = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
        total = len(view)
        self._size += total
        chunk_size = self._chunk_size
        blocks: list[Block] = []
        offset = 0
        buffer = self._buffer
        if buffer:
            offset = min(chunk_size - len(buffer), total)
            buffer += view[:offset]
            if len(buffer) < chunk_size:
                return blocks
            self._add_leaf(bytes(buffer), blocks)
            buffer.clear()
        if offset == 0 and total == chunk_size and type(data) is bytes:
            # The caller read exactly one chunk: use it as is, no copy.
            self._add_leaf(data, blocks)
            return blocks
        while total - offset >= chunk_size:
            self._add_leaf(bytes(view[offset : offset + chunk_size]), blocks)
            offset += chunk_size
        if offset < total:
            buffer += view[offset:]
        return blocks

    def finish(self) -> tuple[list[Block], Cid]:
        """Flush what is pending; return the remaining blocks and the root CID."""
        if self._finished:
            raise LocalProtocolError("builder-finished", "finish called twice")
        self._finished = True
        blocks: list[Block] = []
        if self._buffer or self._leaves == 0:
            self._add_leaf(bytes(self._buffer), blocks)
            self._buffer = bytearray()
        level = 0
        # Close every level bottom-up, exactly as the js balanced layout
        # regroups the nodes of a level until only one is left.
        while True:
            pending = self._levels[level]
            if level == len(self._levels) - 1 and len(pending.links) == 1:
                return blocks, pending.links[0][0]
            if pending.links:
                self._flush(level, blocks)
            level += 1

    def _add_leaf(self, chunk: bytes, blocks: list[Block]) -> None:
        cid = Cid(RAW, hashlib.sha256(chunk).digest())
        blocks.append(Block(cid, chunk))
        self._leaves += 1
        self._push(0, cid, len(chunk), len(chunk), blocks)

    def _push(self, level: int, cid: Cid, tsize: int, filesize: int, blocks: list[Block]) -> None:
        if level == len(self._levels):
            self._levels.append(_Pending([], []))
        pending = self._levels[level]
        pending.links.append((cid, tsize))
        pending.blocksizes.append(filesize)
        if len(pending.links) == self._max_links:
            self._flush(level, blocks)

    def _flush(self, level: int, blocks: list[Block]) -> None:
        pending = self._levels[level]
        data = encode_file_node(pending.links, pending.blocksizes)
        cid = Cid(DAG_PB, hashlib.sha256(data).digest())
        blocks.append(Block(cid, data))
        tsize = len(data) + sum(tsize for _, tsize in pending.links)
        filesize = sum(pending.blocksizes)
        pending.links.clear()
        pending.blocksizes.clear()
        self._push(level + 1, cid, tsize, filesize, blocks)


# --- decoding and reading ---------------------------------------------------


def child_links(block: Block) -> tuple[Cid, ...]:
    """The CIDs a block links to: ``()`` for raw, the links of a dag-pb node.

    Works for any dag-pb node (directories too). Does not hash the block.
    Raises ``InvalidDag`` for a malformed or oversized dag-pb block.
    """
    if block.cid.codec == RAW:
        return ()
    _check_block_size(block.data)
    return tuple(link.cid for link in decode_pb_node(block.data).links)


def sized_child_links(block: Block) -> tuple[tuple[Cid, int | None], ...]:
    """``child_links`` with the file bytes under each link, where the block says.

    A UnixFS file node gives each child's size; any other dag-pb node (a
    directory, say) gives None for each. Does not hash the block. Raises
    ``InvalidDag`` for a malformed or oversized dag-pb block.
    """
    if block.cid.codec == RAW:
        return ()
    try:
        node = decode_file_node(block.data)
    except InvalidDag:
        return tuple((child, None) for child in child_links(block))
    return tuple((link.cid, size) for link, size in zip(node.links, node.blocksizes, strict=True))


def decode_file_node(data: bytes) -> FileNode:
    """Decode a dag-pb block that must be a UnixFS File (or Raw) node.

    Raises ``InvalidDag`` when it is malformed, is another UnixFS type, or when
    its sizes do not add up.
    """
    _check_block_size(data)
    node = decode_pb_node(data)
    if node.data is None:
        raise InvalidDag("missing-unixfs-data")
    unixfs = decode_unixfs_data(node.data)
    if unixfs.type not in (UNIXFS_FILE, UNIXFS_RAW):
        raise InvalidDag("not-a-file", UNIXFS_TYPE_NAMES[unixfs.type])
    if len(unixfs.blocksizes) != len(node.links):
        raise InvalidDag(
            "blocksizes-mismatch", f"{len(unixfs.blocksizes)} blocksizes, {len(node.links)} links"
        )
    total = len(unixfs.data) + sum(unixfs.blocksizes)
    if total > MAX_FILE_SIZE:
        raise InvalidDag("file-too-large", str(total))
    if unixfs.filesize is not None and unixfs.filesize != total:
        raise InvalidDag("filesize-mismatch", f"filesize {unixfs.filesize}, content {total}")
    return FileNode(
        links=tuple(Link(link.cid, link.tsize) for link in node.links),
        filesize=total,
        blocksizes=unixfs.blocksizes,
        data=unixfs.data,
    )


def file_size(root: Cid, root_block: bytes) -> int:
    """The size in bytes of the file whose root block is ``root_block``.

    Raises ``BlockMismatch`` if the block is not ``root``'s, ``InvalidDag`` if
    it is not a file's root.
    """
    _check_block_size(root_block)
    root.verify(root_block)
    if root.codec == RAW:
        return len(root_block)
    return decode_file_node(root_block).filesize


def iter_file(root: Cid, get_block: GetBlock) -> Iterator[bytes]:
    """Yield the bytes of the file ``root`` in order, verifying the whole DAG.

    ``get_block(cid)`` returns a block's bytes; whatever it raises (``KeyError``
    for a missing block, say) propagates. Each block is hashed against its CID
    before use (``BlockMismatch``); each node must be a UnixFS file node whose
    children hold exactly the sizes it announces (``InvalidDag``). Pieces are
    yielded as soon as they are verified, so a caller may see a prefix of the
    file before an error about a later block. Empty pieces are not yielded.
    """
    data = _fetch(root, get_block)
    if root.codec == RAW:
        if data:
            yield data
        return
    node = decode_file_node(data)
    if node.data:
        yield node.data
    stack = [zip(node.links, node.blocksizes, strict=True)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        link, expected_size = entry
        data = _fetch(link.cid, get_block)
        if link.cid.codec == RAW:
            if len(data) != expected_size:
                raise InvalidDag(
                    "blocksize-mismatch", f"{link.cid}: {len(data)} != {expected_size}"
                )
            if data:
                yield data
            continue
        child = decode_file_node(data)
        if child.filesize != expected_size:
            raise InvalidDag(
                "blocksize-mismatch", f"{link.cid}: {child.filesize} != {expected_size}"
            )
        if len(stack) >= MAX_DEPTH:
            raise InvalidDag("too-deep", str(root))
        if child.data:
            yield child.data
        stack.append(zip(child.links, child.blocksizes, strict=True))


def iter_dag_blocks(root: Cid, get_block: GetBlock) -> Iterator[Block]:
    """Yield every block of the DAG under ``root``, depth first, parents first.

    Any dag-pb DAG (a file or a directory). Every block is verified
    (``BlockMismatch``); a dag-pb node is yielded, and descended into, once
    even if several links point at it; a raw leaf is yielded at each
    occurrence (a set of them would grow with the file). This is the order of
    ``ipfs dag export``, suited to writing a CAR.
    """
    for cid, data in _walk(root, get_block, fetch_leaves=True):
        assert data is not None
        yield Block(cid, data)


def dag_cids(root: Cid, get_block: GetBlock) -> Iterator[Cid]:
    """Yield the CID of every block of the DAG under ``root`` (for pinning and GC).

    Same order and repetition rules as ``iter_dag_blocks``, but ``get_block``
    is only called for dag-pb nodes: raw leaves need not be present.
    """
    for cid, _ in _walk(root, get_block, fetch_leaves=False):
        yield cid


def _walk(
    root: Cid, get_block: GetBlock, *, fetch_leaves: bool
) -> Iterator[tuple[Cid, bytes | None]]:
    seen_nodes: set[Cid] = set()
    stack: list[Iterator[Cid]] = [iter((root,))]
    while stack:
        cid = next(stack[-1], None)
        if cid is None:
            stack.pop()
            continue
        if cid.codec == RAW:
            yield cid, (_fetch(cid, get_block) if fetch_leaves else None)
            continue
        if cid in seen_nodes:
            continue
        seen_nodes.add(cid)
        data = _fetch(cid, get_block)
        yield cid, data
        if len(stack) > MAX_DEPTH:
            raise InvalidDag("too-deep", str(root))
        stack.append(iter(child_links(Block(cid, data))))


def _fetch(cid: Cid, get_block: GetBlock) -> bytes:
    data = get_block(cid)
    _check_block_size(data)
    cid.verify(data)
    return data


def _check_block_size(data: bytes) -> None:
    if len(data) > MAX_BLOCK_SIZE:
        raise InvalidDag("block-too-large", str(len(data)))
