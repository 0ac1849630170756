"""CARv1 encoding and the incremental, verifying decoder (protocol/car.py)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.car import (
    MAX_HEADER_SIZE,
    MAX_SECTION_SIZE,
    CarDecoder,
    CarHeader,
    InvalidCar,
    encode_header,
    encode_section,
)
from protocol.cid import DAG_PB, RAW, Cid
from protocol.content import Block, DagBuilder, iter_dag_blocks, iter_file
from protocol.dagpb import encode_varint
from protocol.errors import BlockMismatch, RemoteProtocolError

EMPTY_RAW = Cid.parse("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")


def small_file() -> tuple[Cid, list[Block]]:
    builder = DagBuilder(chunk_size=5, max_links=3)
    blocks = builder.write(bytes(range(40)))
    rest, root = builder.finish()
    store = {block.cid: block.data for block in blocks + rest}
    return root, list(iter_dag_blocks(root, store.__getitem__))


def car_of(root: Cid, blocks: list[Block]) -> bytes:
    return encode_header([root]) + b"".join(encode_section(block) for block in blocks)


def decode(data: bytes, piece: int | None = None) -> list[CarHeader | Block]:
    decoder = CarDecoder()
    step = piece or max(len(data), 1)
    events = []
    for offset in range(0, len(data), step):
        events += decoder.feed(data[offset : offset + step])
    decoder.finish()
    return events


def test_header_bytes_are_what_js_writes() -> None:
    # First bytes of the CAR that @ipld/car wrote for an empty file (tests/interop).
    expected = bytes.fromhex(
        "3aa265726f6f747381d82a58250001551220e3b0c44298fc1c149afbf4c8996fb924"
        "27ae41e4649b934ca495991b7852b8556776657273696f6e01"
    )
    assert encode_header([EMPTY_RAW]) == expected
    assert encode_section(Block(EMPTY_RAW, b"")) == b"\x24" + EMPTY_RAW.to_bytes()


def test_round_trip_and_read_back() -> None:
    root, blocks = small_file()
    events = decode(car_of(root, blocks))
    assert events[0] == CarHeader((root,))
    assert events[1:] == blocks
    store = {block.cid: block.data for block in blocks}
    assert b"".join(iter_file(root, store.__getitem__)) == bytes(range(40))


@pytest.mark.parametrize("roots", [[], [EMPTY_RAW], [Cid.for_dag_pb(b"x"), EMPTY_RAW] * 20])
def test_header_round_trip(roots: list[Cid]) -> None:
    assert decode(encode_header(roots)) == [CarHeader(tuple(roots))]


def test_one_byte_pieces_equal_whole() -> None:
    car = car_of(*small_file())
    assert decode(car, 1) == decode(car)


def test_truncation_at_every_offset_is_invalid() -> None:
    root, blocks = small_file()
    car = car_of(root, blocks)
    # CARv1 has no end marker: a cut between sections is a valid, shorter CAR
    # (whoever imports it must check that the DAG is complete).
    boundaries = {len(encode_header([root]))}
    for block in blocks:
        boundaries.add(max(boundaries) + len(encode_section(block)))
    for end in range(len(car)):
        decoder = CarDecoder()
        events = decoder.feed(car[:end])
        if end in boundaries:
            decoder.finish()
            assert events == [CarHeader((root,)), *blocks[: len(events) - 1]]
            continue
        with pytest.raises(InvalidCar) as caught:
            decoder.finish()
        assert caught.value.reason == "truncated"


def test_corrupted_block_is_a_block_mismatch() -> None:
    root, blocks = small_file()
    car = bytearray(car_of(root, blocks))
    car[-1] ^= 0x01
    with pytest.raises(BlockMismatch):
        decode(bytes(car))


def test_cidv0_sections_are_accepted() -> None:
    node = b"\x0a\x02\x08\x02"
    cidv0 = b"\x12\x20" + Cid.for_dag_pb(node).digest
    car = encode_header([EMPTY_RAW]) + encode_varint(len(cidv0) + len(node)) + cidv0 + node
    assert decode(car)[1] == Block(Cid.for_dag_pb(node), node)


def header_of(body: bytes) -> bytes:
    return encode_varint(len(body)) + body


def header_with(roots: bytes, version: bytes = b"\x01") -> bytes:
    """A header whose roots value and version value are the given CBOR bytes."""
    return header_of(b"\xa2\x65roots" + roots + b"\x67version" + version)


ROOT = b"\xd8\x2a\x58\x25\x00" + EMPTY_RAW.to_bytes()


@pytest.mark.parametrize(
    ("car", "reason"),
    [
        (header_with(b"\x81" + ROOT, b"\x02"), "unsupported-version"),
        (header_with(b"\x80", b"\x20"), "unsupported-version"),
        (header_of(b"\xa1\x67version\x02"), "bad-header"),  # a CARv2 pragma
        (header_of(b"\xa2\x67version\x01\x65roots\x80"), "bad-header"),  # keys unsorted
        (header_with(b"\x98\x01" + ROOT), "bad-header"),  # non-canonical array length
        (header_with(b"\x9f" + ROOT + b"\xff"), "bad-header"),  # indefinite length
        (header_with(b"\x81\xd8\x2b" + ROOT[2:]), "bad-header"),  # tag 43
        (header_with(b"\x81" + ROOT[:4] + b"\x01" + ROOT[5:]), "bad-header"),  # no 00 prefix
        (header_with(b"\x81\xd8\x2a\x44\x00\x01\x71\x12"), "unsupported-cid"),
        (header_with(b"\x80", b"\x01\x00"), "bad-header"),  # trailing bytes
        (header_with(b"\x81"), "bad-header"),  # truncated
        (encode_varint(MAX_HEADER_SIZE + 1), "header-too-large"),
        (b"\x00", "empty-header"),
        (b"\x80\x00", "non-canonical-varint"),
        (encode_header([]) + encode_varint(MAX_SECTION_SIZE + 1), "section-too-large"),
        (encode_header([]) + b"\x00", "empty-section"),
        (encode_header([]) + b"\x04\x01\x71\x12\x00", "unsupported-cid"),
        (encode_header([]) + b"\x03\x01\x55\x12", "bad-section"),
        (encode_header([]) + b"\x05\x01\x55\x12\x20\x00", "bad-section"),
    ],
)
def test_malformed_cars_are_rejected(car: bytes, reason: str) -> None:
    with pytest.raises(InvalidCar) as caught:
        decode(car)
    assert caught.value.reason == reason


def test_empty_input_is_truncated() -> None:
    with pytest.raises(InvalidCar):
        CarDecoder().finish()


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_remote_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode(data)


@given(st.binary(max_size=200), st.integers(0, 3))
def test_random_bytes_after_a_valid_header(data: bytes, roots: int) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode(encode_header([EMPTY_RAW] * roots) + data)


@given(
    st.lists(st.tuples(st.sampled_from([RAW, DAG_PB]), st.binary(max_size=50)), max_size=8),
    st.integers(1, 30),
)
def test_random_blocks_round_trip_in_any_pieces(
    contents: list[tuple[int, bytes]], piece: int
) -> None:
    blocks = [
        Block(Cid.for_raw(data) if codec == RAW else Cid.for_dag_pb(data), data)
        for codec, data in contents
    ]
    roots = [block.cid for block in blocks[:2]]
    car = encode_header(roots) + b"".join(encode_section(block) for block in blocks)
    assert decode(car, piece) == [CarHeader(tuple(roots)), *blocks]
