"""Chunking, the balanced UnixFS layout, and verified reading back (protocol/content.py)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.cid import DAG_PB, RAW, Cid
from protocol.content import (
    CHUNK_SIZE,
    MAX_BLOCK_SIZE,
    MAX_DEPTH,
    MAX_LINKS,
    Block,
    DagBuilder,
    InvalidDag,
    child_links,
    dag_cids,
    decode_file_node,
    file_size,
    iter_dag_blocks,
    iter_file,
)
from protocol.dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    UNIXFS_RAW,
    PBLink,
    PBNode,
    UnixFSData,
    decode_pb_node,
    decode_unixfs_data,
    encode_pb_node,
    encode_unixfs_data,
)
from protocol.errors import BlockMismatch, LocalProtocolError

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
ANY_DAG_PB_CID = Cid(DAG_PB, bytes(32))


def build(
    data: bytes, pieces: Iterable[int] = (), **params: int
) -> tuple[Cid, list[Block], DagBuilder]:
    """Build ``data`` (written in pieces of the given sizes, then the rest)."""
    builder = DagBuilder(**params)
    blocks: list[Block] = []
    offset = 0
    for size in pieces:
        blocks += builder.write(data[offset : offset + size])
        offset += size
    blocks += builder.write(data[offset:])
    rest, root = builder.finish()
    return root, blocks + rest, builder


def reference_layout(data: bytes, chunk_size: int, max_links: int) -> tuple[Cid, dict[Cid, bytes]]:
    """The js balanced layout, written as plainly as possible with the generic encoders."""
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    blocks = {Cid.for_raw(chunk): chunk for chunk in chunks}
    level = [(Cid.for_raw(chunk), len(chunk), len(chunk)) for chunk in chunks]
    if len(level) == 1:
        return level[0][0], blocks
    while len(level) > 1 or level[0][0].codec == RAW:
        parents = []
        for start in range(0, len(level), max_links):
            group = level[start : start + max_links]
            unixfs = UnixFSData(
                UNIXFS_FILE, b"", sum(size for *_, size in group), tuple(s for *_, s in group)
            )
            links = tuple(PBLink(cid, "", tsize) for cid, tsize, _ in group)
            node = encode_pb_node(PBNode(links, encode_unixfs_data(unixfs)))
            cid = Cid.for_dag_pb(node)
            blocks[cid] = node
            tsize = len(node) + sum(tsize for _, tsize, _ in group)
            parents.append((cid, tsize, sum(size for *_, size in group)))
        level = parents
    return level[0][0], blocks


def read(root: Cid, blocks: dict[Cid, bytes]) -> bytes:
    return b"".join(iter_file(root, blocks.__getitem__))


def pattern(size: int) -> bytes:
    """Deterministic bytes whose chunks all differ (251 is prime to the chunk size)."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


# --- known CIDs ---------------------------------------------------------------

VECTOR_DATA: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "hello-world-newline": lambda: b"hello world\n",
    "range-256-x-4096": lambda: bytes(range(256)) * 4096,
    "range-251-x-1200": lambda: bytes(range(251)) * 1200,
    "zero-175-chunks": lambda: bytes(175 * CHUNK_SIZE),
}


def doc_block(kind: str) -> str:
    match = re.search(rf"```{kind}\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match, f"no ```{kind} block in {DOC.name}"
    return match.group(1)


def test_doc_vectors_match() -> None:
    vectors = [line.split() for line in doc_block("test-vectors").splitlines() if line.strip()]
    assert {name for name, _ in vectors} == set(VECTOR_DATA)
    for name, expected in vectors:
        root, _, _ = build(VECTOR_DATA[name]())
        assert str(root) == expected, name


def test_doc_annotated_node_is_exact() -> None:
    text = "".join(line.split("#")[0] for line in doc_block("dag-pb-hex").splitlines())
    root, blocks, _ = build(VECTOR_DATA["range-251-x-1200"]())
    assert blocks[-1].cid == root
    assert bytes.fromhex(text) == blocks[-1].data


# --- building -----------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 3 * CHUNK_SIZE + 7],
)
def test_round_trip_at_chunk_boundaries(size: int) -> None:
    data = pattern(size)
    root, blocks, builder = build(data)
    store = {block.cid: block.data for block in blocks}
    assert builder.size == size
    assert read(root, store) == data
    assert file_size(root, store[root]) == size
    assert (root, store) == reference_layout(data, CHUNK_SIZE, MAX_LINKS)
    if size <= CHUNK_SIZE:
        assert root == Cid.for_raw(data)
    else:
        assert root.codec == DAG_PB


@pytest.mark.parametrize("chunks", [MAX_LINKS - 1, MAX_LINKS, MAX_LINKS + 1, 2 * MAX_LINKS + 1])
def test_levels_at_link_boundaries(chunks: int) -> None:
    # Zero chunks hash fast and dedupe, so full-size trees stay cheap.
    data = bytes(chunks * CHUNK_SIZE - 1)
    root, blocks, builder = build(data)
    store = {block.cid: block.data for block in blocks}
    assert (root, store) == reference_layout(data, CHUNK_SIZE, MAX_LINKS)
    assert builder.depth == (2 if chunks <= MAX_LINKS else 3)  # leaves, nodes, root
    assert file_size(root, store[root]) == len(data)


@pytest.mark.parametrize("max_links", [2, 3, 5])
def test_matches_reference_layout_for_every_small_size(max_links: int) -> None:
    for size in range(0, 80):
        data = pattern(size)
        root, blocks, _ = build(data, chunk_size=2, max_links=max_links)
        store = {block.cid: block.data for block in blocks}
        assert (root, store) == reference_layout(data, 2, max_links), size
        assert read(root, store) == data


@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 40), max_size=20))
def test_pieces_do_not_change_the_blocks(data: bytes, cuts: list[int]) -> None:
    whole = build(data, chunk_size=7, max_links=3)
    pieced = build(data, cuts, chunk_size=7, max_links=3)
    assert whole[:2] == pieced[:2]


def test_write_accepts_memoryview_and_bytearray() -> None:
    data = pattern(3 * CHUNK_SIZE + 5)
    builder = DagBuilder()
    blocks = builder.write(memoryview(data)[:CHUNK_SIZE])
    blocks += builder.write(bytearray(data[CHUNK_SIZE:]))
    rest, root = builder.finish()
    assert root == build(data)[0]
    assert all(type(block.data) is bytes for block in blocks + rest)


def test_blocks_come_children_first() -> None:
    _, blocks, _ = build(pattern(200), chunk_size=2, max_links=3)
    seen: set[Cid] = set()
    for block in blocks:
        assert set(child_links(block)) <= seen
        seen.add(block.cid)


def test_pending_links_stay_bounded_by_depth() -> None:
    builder = DagBuilder(chunk_size=1, max_links=3)
    for byte in pattern(3**6 + 5):
        builder.write(bytes((byte,)))
        assert builder.pending_links <= builder.depth * (3 - 1)
    assert builder.depth == 7
    builder.finish()


def test_pending_links_bounded_with_default_parameters() -> None:
    builder = DagBuilder()
    chunk = bytes(CHUNK_SIZE)
    for _ in range(MAX_LINKS * 2 + 3):
        builder.write(chunk)
        assert builder.pending_links <= builder.depth * (MAX_LINKS - 1)
    _, root = builder.finish()
    assert builder.size == (MAX_LINKS * 2 + 3) * CHUNK_SIZE
    assert root.codec == DAG_PB


def test_builder_misuse_is_a_local_error() -> None:
    builder = DagBuilder()
    builder.finish()
    with pytest.raises(LocalProtocolError):
        builder.write(b"x")
    with pytest.raises(LocalProtocolError):
        builder.finish()
    with pytest.raises(LocalProtocolError):
        DagBuilder(max_links=1)
    with pytest.raises(LocalProtocolError):
        DagBuilder(chunk_size=MAX_BLOCK_SIZE + 1)


# --- reading ------------------------------------------------------------------


def test_corrupted_block_is_a_block_mismatch() -> None:
    data = pattern(3 * CHUNK_SIZE)
    root, blocks, _ = build(data)
    for victim in blocks:
        store = {block.cid: block.data for block in blocks}
        store[victim.cid] = victim.data[:-1] + bytes((victim.data[-1] ^ 1,))
        with pytest.raises(BlockMismatch):
            read(root, store)


def test_missing_block_propagates_key_error() -> None:
    root, blocks, _ = build(pattern(2 * CHUNK_SIZE))
    store = {block.cid: block.data for block in blocks[1:]}
    with pytest.raises(KeyError):
        read(root, store)


def test_reads_cidv0_style_nodes_with_inline_data() -> None:
    leaf = encode_pb_node(
        PBNode((), encode_unixfs_data(UnixFSData(UNIXFS_FILE, b"hello world\n", 12, ())))
    )
    root = Cid.parse("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
    assert read(root, {root: leaf}) == b"hello world\n"
    assert file_size(root, leaf) == 12
    # A two-leaf file with old-style (UnixFS Raw type) leaves and inline data at the root.
    leaves = [
        encode_pb_node(PBNode((), encode_unixfs_data(UnixFSData(UNIXFS_RAW, text, 3, ()))))
        for text in (b"abc", b"def")
    ]
    cids = [Cid.for_dag_pb(leaf) for leaf in leaves]
    parent_data = UnixFSData(UNIXFS_FILE, b"xy", 8, (3, 3))
    parent = encode_pb_node(
        PBNode(tuple(PBLink(cid, "", 10) for cid in cids), encode_unixfs_data(parent_data))
    )
    parent_cid = Cid.for_dag_pb(parent)
    store = {parent_cid: parent, **dict(zip(cids, leaves, strict=True))}
    assert read(parent_cid, store) == b"xyabcdef"


def node_with(links: tuple[PBLink, ...], unixfs: UnixFSData) -> tuple[Cid, bytes]:
    data = encode_pb_node(PBNode(links, encode_unixfs_data(unixfs)))
    return Cid.for_dag_pb(data), data


def test_child_sizes_must_match_blocksizes() -> None:
    leaf = b"four"
    leaf_link = (PBLink(Cid.for_raw(leaf), "", 4),)
    root, node = node_with(leaf_link, UnixFSData(UNIXFS_FILE, b"", 5, (5,)))
    with pytest.raises(InvalidDag) as caught:
        read(root, {root: node, Cid.for_raw(leaf): leaf})
    assert caught.value.reason == "blocksize-mismatch"
    inner, inner_node = node_with(leaf_link, UnixFSData(UNIXFS_FILE, b"", 4, (4,)))
    root, node = node_with((PBLink(inner, "", 50),), UnixFSData(UNIXFS_FILE, b"", 3, (3,)))
    with pytest.raises(InvalidDag) as caught:
        read(root, {root: node, inner: inner_node, Cid.for_raw(leaf): leaf})
    assert caught.value.reason == "blocksize-mismatch"


@pytest.mark.parametrize(
    ("unixfs", "reason"),
    [
        (UnixFSData(UNIXFS_FILE, b"", 9, (4,)), "filesize-mismatch"),
        (UnixFSData(UNIXFS_FILE, b"", 4, ()), "blocksizes-mismatch"),
        (UnixFSData(UNIXFS_DIRECTORY, b"", None, (4,)), "not-a-file"),
    ],
)
def test_inconsistent_nodes_are_rejected(unixfs: UnixFSData, reason: str) -> None:
    _, node = node_with((PBLink(Cid.for_raw(b"four"), "", 4),), unixfs)
    with pytest.raises(InvalidDag) as caught:
        decode_file_node(node)
    assert caught.value.reason == reason


def test_node_without_unixfs_data_is_rejected() -> None:
    with pytest.raises(InvalidDag) as caught:
        decode_file_node(encode_pb_node(PBNode((), None)))
    assert caught.value.reason == "missing-unixfs-data"


def test_too_deep_dag_is_rejected() -> None:
    store = {Cid.for_raw(b"x"): b"x"}
    cid = Cid.for_raw(b"x")
    for _ in range(MAX_DEPTH + 2):
        cid, node = node_with((PBLink(cid, "", 1),), UnixFSData(UNIXFS_FILE, b"", 1, (1,)))
        store[cid] = node
    for walk in (read, lambda root, blocks: list(dag_cids(root, blocks.__getitem__))):
        with pytest.raises(InvalidDag) as caught:
            walk(cid, store)
        assert caught.value.reason == "too-deep"


def test_oversized_block_is_rejected_before_hashing() -> None:
    huge = bytes(MAX_BLOCK_SIZE + 1)
    with pytest.raises(InvalidDag) as caught:
        read(Cid.for_raw(huge), {Cid.for_raw(huge): huge})
    assert caught.value.reason == "block-too-large"


def test_file_size_verifies_the_root() -> None:
    root, blocks, _ = build(pattern(CHUNK_SIZE + 1))
    assert file_size(root, blocks[-1].data) == CHUNK_SIZE + 1
    with pytest.raises(BlockMismatch):
        file_size(root, blocks[0].data)
    assert file_size(Cid.for_raw(b"abc"), b"abc") == 3


def test_dag_walks_cover_every_block_parents_first() -> None:
    root, blocks, _ = build(pattern(100), chunk_size=3, max_links=4)
    store = {block.cid: block.data for block in blocks}
    walked = list(iter_dag_blocks(root, store.__getitem__))
    assert walked[0].cid == root
    assert {block.cid for block in walked} == set(store)
    position = {block.cid: index for index, block in reversed(list(enumerate(walked)))}
    for block in walked:
        assert all(position[child] > position[block.cid] for child in child_links(block))
    # dag_cids needs only the dag-pb nodes: the leaves may be absent.
    nodes_only = {cid: data for cid, data in store.items() if cid.codec == DAG_PB}
    assert list(dag_cids(root, nodes_only.__getitem__)) == [block.cid for block in walked]


def test_repeated_subtrees_are_walked_once() -> None:
    root, blocks, _ = build(bytes(64), chunk_size=2, max_links=2)
    store = {block.cid: block.data for block in blocks}
    cids = list(dag_cids(root, store.__getitem__))
    nodes = [cid for cid in cids if cid.codec == DAG_PB]
    assert len(nodes) == len(set(nodes)) == 5  # one distinct node per level
    assert read(root, store) == bytes(64)


# --- strict decoding ------------------------------------------------------------

LINK = b"\x0a\x24" + Cid.for_raw(b"").to_bytes()
DATA = b"\x0a\x04\x08\x02\x18\x00"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x12\x30" + LINK, "truncated"),
        (b"\x12\x26" + LINK + b"\x12\x00", "link-without-hash"),
        (b"\x12" + bytes((len(LINK),)) + LINK + DATA + b"\x12\x00", "bad-field-order"),
        (DATA + DATA, "duplicate-data"),
        (b"\x1a\x00", "bad-field"),
        (b"\x08\x00", "bad-field"),
        (b"\x12\x02\x12\x00", "link-without-hash"),
        (b"\x12\x04\x12\x00\x12\x00", "bad-field-order"),
        (b"\x12\x04\x18\x00" + b"\x12\x00", "bad-field-order"),
        (b"\x12\x06\x0a\x24\x01\x55\x12\x20", "truncated"),
        (b"\x12\x04\x0a\x02\x01\x55", "unsupported-link"),
        (b"\x12\x03\x12\x01\xff", "bad-link-name"),
        (b"\x8a\x00", "non-canonical-varint"),
        (b"\x12" + b"\xff" * 10 + b"\x01", "varint-overflow"),
    ],
)
def test_pb_node_decoding_is_strict(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidDag) as caught:
        decode_pb_node(data)
    assert caught.value.reason == reason


def test_pb_node_accepts_data_first_order() -> None:
    link = b"\x12" + bytes((len(LINK),)) + LINK
    assert decode_pb_node(DATA + link + link) == decode_pb_node(link + link + DATA)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "missing-unixfs-type"),
        (b"\x08\x09", "bad-unixfs-type"),
        (b"\x18\x01\x08\x02", "bad-field-order"),
        (b"\x08\x02\x08\x02", "bad-field-order"),
        (b"\x08\x02\x22\x00", "bad-field"),  # packed blocksizes
        (b"\x08\x02\x48\x00", "bad-field"),
    ],
)
def test_unixfs_decoding_is_strict(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidDag) as caught:
        decode_unixfs_data(data)
    assert caught.value.reason == reason


def test_unixfs_metadata_fields_are_ignored() -> None:
    data = b"\x08\x02\x18\x03\x20\x03\x38\xa4\x03\x42\x02\x08\x01"  # mode 0o644, mtime
    assert decode_unixfs_data(data) == UnixFSData(UNIXFS_FILE, b"", 3, (3,))


cids = st.builds(Cid, st.sampled_from([RAW, DAG_PB]), st.binary(min_size=32, max_size=32))
uint64 = st.integers(0, (1 << 64) - 1)
pb_nodes = st.builds(
    PBNode,
    st.lists(st.builds(PBLink, cids, st.text(max_size=5), st.none() | uint64), max_size=5).map(
        tuple
    ),
    st.none() | st.binary(max_size=20),
)
unixfs_messages = st.builds(
    UnixFSData,
    st.sampled_from([UNIXFS_RAW, UNIXFS_FILE, UNIXFS_DIRECTORY]),
    st.binary(max_size=20),
    st.none() | uint64,
    st.lists(uint64, max_size=5).map(tuple),
)


@given(pb_nodes)
def test_pb_node_round_trip(node: PBNode) -> None:
    assert decode_pb_node(encode_pb_node(node)) == node


@given(unixfs_messages)
def test_unixfs_round_trip(unixfs: UnixFSData) -> None:
    assert decode_unixfs_data(encode_unixfs_data(unixfs)) == unixfs


@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_node_or_invalid_dag(data: bytes) -> None:
    with contextlib.suppress(InvalidDag):
        decode_file_node(data)
    with contextlib.suppress(InvalidDag):
        child_links(Block(ANY_DAG_PB_CID, data))


@given(st.data())
def test_mutated_nodes_give_a_node_or_invalid_dag(data: st.DataObject) -> None:
    _, blocks, _ = build(pattern(40), chunk_size=4, max_links=3)
    node = bytearray(data.draw(st.sampled_from([b.data for b in blocks if b.cid.codec == DAG_PB])))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(node) - 1))
        node[position] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_file_node(bytes(node))
    except InvalidDag:
        return
    assert decoded.filesize == len(decoded.data) + sum(decoded.blocksizes)
