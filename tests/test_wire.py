"""Messages and framing of /remixnet/blocks/1.0.0 (protocol/wire.py).

The byte-exact vectors live in the protocol documentation and are parsed from
it here (docs/protocol.md, "Block exchange").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.cid import DAG_PB, RAW, Cid
from protocol.content import MAX_BLOCK_SIZE
from protocol.dagpb import encode_varint
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.wire import (
    CID_SIZE,
    MAX_CIDS_PER_WANT,
    MAX_REQUEST_FRAME_SIZE,
    MAX_RESPONSE_FRAME_SIZE,
    Abort,
    BlockData,
    DontHave,
    FrameDecoder,
    Message,
    MessageType,
    Want,
    WireError,
    encode,
    encode_block_header,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
HELLO = Cid.for_raw(b"hello world\n")

cids = st.builds(Cid, st.sampled_from([RAW, DAG_PB]), st.binary(min_size=32, max_size=32))
reasons = st.from_regex(r"[a-z0-9-]{1,64}", fullmatch=True)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Want, st.lists(cids, min_size=1, max_size=MAX_CIDS_PER_WANT).map(tuple)),
    st.builds(BlockData, cids, st.binary(max_size=2048)),
    st.builds(DontHave, cids),
    st.builds(Abort, reasons),
)


def decode_all(data: bytes, *, piece: int | None = None, max_frame_size: int) -> list[Message]:
    """Feed ``data`` in pieces of ``piece`` bytes (all at once if None); the messages out."""
    decoder = FrameDecoder(max_frame_size=max_frame_size)
    out: list[Message] = []
    step = piece or max(len(data), 1)
    for start in range(0, len(data), step):
        decoder.feed(data[start : start + step])
        while (message := decoder.next_message()) is not None:
            out.append(message)
    decoder.close()
    return out


def response_decode(data: bytes) -> list[Message]:
    return decode_all(data, max_frame_size=MAX_RESPONSE_FRAME_SIZE)


def reason_of(data: bytes, max_frame_size: int = MAX_RESPONSE_FRAME_SIZE) -> str:
    with pytest.raises(WireError) as caught:
        decode_all(data, max_frame_size=max_frame_size)
    return caught.value.reason


# --- round trips ----------------------------------------------------------------


@given(st.lists(messages, max_size=8), st.integers(min_value=1, max_value=64))
def test_messages_survive_encoding_in_any_pieces(batch: list[Message], piece: int) -> None:
    data = b"".join(encode(message) for message in batch)
    assert decode_all(data, piece=piece, max_frame_size=MAX_RESPONSE_FRAME_SIZE) == batch


def test_largest_frames_are_exactly_the_bounds() -> None:
    want = encode(Want((HELLO,) * MAX_CIDS_PER_WANT))
    block = encode(BlockData(HELLO, bytes(MAX_BLOCK_SIZE)))
    assert len(want) == MAX_REQUEST_FRAME_SIZE + len(encode_varint(MAX_REQUEST_FRAME_SIZE))
    assert len(block) == MAX_RESPONSE_FRAME_SIZE + 3
    assert decode_all(want, max_frame_size=MAX_REQUEST_FRAME_SIZE) == [
        Want((HELLO,) * MAX_CIDS_PER_WANT)
    ]
    assert response_decode(block) == [BlockData(HELLO, bytes(MAX_BLOCK_SIZE))]


@given(cids, st.binary(max_size=2048))
def test_a_block_header_then_the_block_is_the_block_frame(cid: Cid, data: bytes) -> None:
    assert encode_block_header(cid, len(data)) + data == encode(BlockData(cid, data))


def test_an_empty_block_is_a_block() -> None:
    empty = Cid.for_raw(b"")
    assert response_decode(encode(BlockData(empty, b""))) == [BlockData(empty, b"")]


# --- the documented vectors -------------------------------------------------------


def documented_vectors() -> list[tuple[str, str, bytes]]:
    vectors = []
    for path in (DOCS / "protocol.md",):
        for block in re.findall(r"```wire-vector\n(.*?)```", path.read_text(), re.S):
            fields = dict(re.findall(r"^(\w+): ?(.*)$", block, re.M))
            hex_part = block.split("hex:", 1)[1]
            hex_text = "".join(line.split("#")[0] for line in hex_part.splitlines())
            vectors.append((fields["name"], fields["message"], bytes.fromhex(hex_text)))
        if vectors:
            break
    return vectors


def message_of(text: str) -> Message:
    kind, *args = text.split()
    if kind == "want":
        return Want(tuple(Cid.parse(arg) for arg in args))
    if kind == "block":
        return BlockData(Cid.parse(args[0]), bytes.fromhex(args[1]))
    if kind == "dont-have":
        return DontHave(Cid.parse(args[0]))
    assert kind == "abort"
    return Abort(args[0])


def test_the_documentation_has_vectors() -> None:
    assert len(documented_vectors()) >= 5


@pytest.mark.parametrize(
    ("name", "message", "frame"), documented_vectors(), ids=lambda value: str(value)[:20]
)
def test_documented_vector(name: str, message: str, frame: bytes) -> None:
    expected = message_of(message)
    assert encode(expected) == frame, name
    assert response_decode(frame) == [expected]


# --- every invalid input is a typed error --------------------------------------------


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    for max_frame_size in (MAX_REQUEST_FRAME_SIZE, MAX_RESPONSE_FRAME_SIZE):
        failure: WireError | None = None
        try:
            decode_all(data, max_frame_size=max_frame_size)
        except WireError as error:  # anything else escapes and fails the test
            failure = error
        if failure is not None:
            assert isinstance(failure, RemoteProtocolError)
            assert re.fullmatch(r"[a-z-]+", failure.reason)


@given(st.lists(messages, min_size=1, max_size=4), st.data())
def test_a_stream_cut_short_is_a_truncated_frame(batch: list[Message], data: st.DataObject) -> None:
    encoded = b"".join(encode(message) for message in batch)
    cut = data.draw(st.integers(min_value=1, max_value=len(encoded) - 1))
    if any(sum(map(len, map(encode, batch[:n]))) == cut for n in range(len(batch))):
        return  # cut between two frames: that is a clean end
    assert reason_of(encoded[:cut]) == "truncated-frame"


def test_an_oversized_length_is_rejected_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_frame_size=MAX_REQUEST_FRAME_SIZE)
    decoder.feed(encode_varint(MAX_REQUEST_FRAME_SIZE + 1))
    with pytest.raises(WireError, match="frame-too-large"):
        decoder.next_message()
    # A response decoder rejects a 2 GiB length from its first two bytes.
    decoder = FrameDecoder(max_frame_size=MAX_RESPONSE_FRAME_SIZE)
    decoder.feed(b"\xff\xff")
    assert decoder.next_message() is None
    decoder.feed(b"\xff")
    with pytest.raises(WireError, match="frame-too-large"):
        decoder.next_message()


def test_a_server_frame_is_too_large_for_a_server() -> None:
    frame = encode(BlockData(HELLO, bytes(4096)))
    assert reason_of(frame, MAX_REQUEST_FRAME_SIZE) == "frame-too-large"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\x00", "empty-frame"),
        (b"\x81\x00" + bytes(1), "non-minimal-varint"),
        (b"\x01\x09", "unknown-message-type"),
        (b"\x01\x00", "unknown-message-type"),
        (b"\x01\x01", "bad-message-size"),  # WANT of nothing
        (b"\x26\x01" + HELLO.to_bytes() + b"\x00", "bad-message-size"),  # 37 bytes
        (b"\x24\x02" + HELLO.to_bytes()[:35], "bad-message-size"),  # BLOCK shorter than a CID
        (b"\x26\x03" + HELLO.to_bytes() + b"\x00", "bad-message-size"),  # DONT_HAVE + 1
        (b"\x01\x04", "bad-reason"),
        (b"\x03\x04Hi", "bad-reason"),
        (b"\x03\x04a ", "bad-reason"),
        (b"\x25\x03" + b"\x00" + HELLO.to_bytes()[1:], "bad-cid"),  # version 0
        (b"\x25\x03\x01\x71" + HELLO.to_bytes()[2:], "bad-cid"),  # dag-cbor
        (b"\x25\x03\x01\x55\x13\x20" + HELLO.digest, "bad-cid"),  # sha2-512 code
        (b"\x25\x03\x12\x20" + HELLO.digest + b"\x00\x00", "bad-cid"),  # CIDv0 + padding
    ],
    ids=lambda value: value if isinstance(value, str) else value[:3].hex(),
)
def test_malformed_frames(frame: bytes, reason: str) -> None:
    assert reason_of(frame) == reason


def test_too_many_cids_and_too_large_blocks() -> None:
    want = bytes([MessageType.WANT]) + HELLO.to_bytes() * (MAX_CIDS_PER_WANT + 1)
    assert reason_of(encode_varint(len(want)) + want) == "too-many-cids"
    block = bytes([MessageType.BLOCK]) + HELLO.to_bytes() + bytes(MAX_BLOCK_SIZE + 1)
    decoder = FrameDecoder(max_frame_size=MAX_RESPONSE_FRAME_SIZE)
    decoder.feed(encode_varint(len(block)))
    with pytest.raises(WireError, match="frame-too-large"):
        decoder.next_message()  # the length alone gives it away


def test_the_decoder_holds_less_than_a_frame_between_messages() -> None:
    frames = encode(BlockData(HELLO, bytes(100_000))) * 3
    decoder = FrameDecoder(max_frame_size=MAX_RESPONSE_FRAME_SIZE)
    decoder.feed(frames[:250_000])
    assert decoder.next_message() is not None
    assert decoder.next_message() is not None
    assert decoder.next_message() is None
    assert decoder.buffered < len(frames) // 3


# --- our own misuse ----------------------------------------------------------------


def test_constructors_refuse_what_cannot_be_encoded() -> None:
    with pytest.raises(LocalProtocolError):
        Want(())
    with pytest.raises(LocalProtocolError):
        Want((HELLO,) * (MAX_CIDS_PER_WANT + 1))
    with pytest.raises(LocalProtocolError):
        BlockData(HELLO, bytes(MAX_BLOCK_SIZE + 1))
    with pytest.raises(LocalProtocolError):
        encode_block_header(HELLO, MAX_BLOCK_SIZE + 1)
    for reason in ("", "Busy", "no way", "é", "x" * 65):
        with pytest.raises(LocalProtocolError):
            Abort(reason)
    with pytest.raises(LocalProtocolError):
        FrameDecoder(max_frame_size=MAX_RESPONSE_FRAME_SIZE + 1)
    assert len(HELLO.to_bytes()) == CID_SIZE
