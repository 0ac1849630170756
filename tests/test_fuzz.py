"""Fuzzing every decoder a peer or a client can reach: typed errors only, bounded memory.

Each decoder gets arbitrary bytes and structured mutations (bit flips,
truncation, extension, insertion, deletion, splices) of the valid encodings
in docs/protocol.md. It must return a valid value — which then re-encodes to
exactly the input where the format is canonical — or raise its documented
error (a ``RemoteProtocolError`` subclass); anything else escaping is a bug.
Lengths that claim gigabytes must be refused before anything is allocated
(checked with ``tracemalloc``). The JSON-RPC socket of a real daemon gets
arbitrary bytes and arbitrary requests and must answer each with a proper
JSON-RPC response, never an internal error, and keep running.

Budget: the ``fuzz`` Hypothesis profile (tests/conftest.py): small in a
normal run, large with ``pytest -m fuzz`` or ``REMIXNET_FUZZ=large``.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.gossip import ANNOUNCE_TOPIC, check_topics, validate_announcement
from node.jsonrpc import (
    INTERNAL_ERROR,
    FramingError,
    JsonStreamSplitter,
    RpcError,
    parse_incoming,
)
from protocol.car import CarDecoder, encode_header, encode_section
from protocol.cid import Cid
from protocol.content import Block, decode_file_node
from protocol.dagpb import (
    InvalidDag,
    decode_pb_node,
    decode_unixfs_data,
    encode_pb_node,
    encode_varint,
)
from protocol.errors import RemoteProtocolError
from protocol.records import InvalidRecord, decode_record, verify_record_bytes
from protocol.sync_messages import SyncError
from protocol.sync_wire import SyncLimits, decode_message, encode_message
from protocol.wire import (
    MAX_REQUEST_FRAME_SIZE,
    MAX_RESPONSE_FRAME_SIZE,
    FrameDecoder,
    Message,
    WireError,
    encode,
)
from tests.conftest import REPO, Cli
from tests.daemon_fixtures import DaemonProcess, write_test_config
from tests.test_records import VECTORS as RECORD_VECTORS
from tests.test_sync import spec_blocks
from tests.test_wire import documented_vectors

pytestmark = pytest.mark.fuzz

FUZZ = settings.get_profile("fuzz")
# A decoder may hold its input, the value it builds and some constant state; a
# claimed length must never make it allocate what the claim says.
MEMORY_SLACK = 1 << 20
MEMORY_PER_INPUT_BYTE = 100
GIB_4 = 1 << 32
PROTOCOL_MD = (REPO / "docs" / "protocol.md").read_text(encoding="utf-8")


def hex_of(dump: str) -> bytes:
    """The bytes of an annotated hex dump (``# comments`` ignored)."""
    return bytes.fromhex("".join(line.split("#")[0] for line in dump.splitlines()))


# --- valid encodings from docs/protocol.md ---------------------------------------------

RECORDS = [bytes.fromhex(vector["encoded"].replace("\n", "")) for vector in RECORD_VECTORS]
FRAMES = [frame for _, _, frame in documented_vectors()]
SYNC_MESSAGES = [hex_of(dump) for _, dump in spec_blocks("sync-hexdump")]
DAG_PB_ROOT = hex_of(re.findall(r"```dag-pb-hex\n(.*?)```", PROTOCOL_MD, re.DOTALL)[0])
HELLO = Block(Cid.for_raw(b"hello world\n"), b"hello world\n")
ROOT = Block(Cid.for_dag_pb(DAG_PB_ROOT), DAG_PB_ROOT)
CAR = encode_header([ROOT.cid]) + encode_section(ROOT) + encode_section(HELLO)
SYNC_LIMITS = SyncLimits()


def test_the_valid_vectors_decode() -> None:
    """The seeds of the mutations are valid, so mutations start from the real formats."""
    assert len(RECORDS) >= 5
    assert len(FRAMES) >= 5
    assert len(SYNC_MESSAGES) >= 2
    for record in RECORDS:
        assert decode_record(record).encoded == record
    for frame in FRAMES:
        decoder = FrameDecoder(max_frame_size=MAX_RESPONSE_FRAME_SIZE)
        decoder.feed(frame)
        message = decoder.next_message()
        assert message is not None
        assert encode(message) == frame
    for data in SYNC_MESSAGES:
        assert encode_message(decode_message(data, SYNC_LIMITS)) == data
    assert decode_file_node(DAG_PB_ROOT).filesize == 301_200
    car_decoder = CarDecoder()
    assert len(car_decoder.feed(CAR)) == 3
    car_decoder.finish()


# --- strategies ---------------------------------------------------------------------------


@st.composite
def mutations(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid encoding with one to four edits."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(
            st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete", "splice"])
        )
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if edit == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif edit == "set" and data:
            data[position] = draw(
                st.sampled_from([0x00, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))])
            )
        elif edit == "truncate":
            del data[position:]
        elif edit == "extend":
            data += draw(st.binary(min_size=1, max_size=64))
        elif edit == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif edit == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other)))
            data[position:] = other[start:]
    return bytes(data)


def inputs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=2048), mutations(seeds))


def chunked(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """``data`` cut at ``cuts`` (any offsets)."""
    start = 0
    for cut in sorted({cut % (len(data) + 1) for cut in cuts}):
        yield data[start:cut]
        start = cut
    yield data[start:]


def peak_bytes(function: Callable[[], object]) -> int:
    """The peak of memory allocated while ``function`` runs (it may raise)."""
    tracemalloc.start()
    try:
        with contextlib.suppress(RemoteProtocolError):
            function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_bounded(function: Callable[[], object], input_size: int) -> None:
    peak = peak_bytes(function)
    assert peak <= MEMORY_SLACK + MEMORY_PER_INPUT_BYTE * input_size, f"peak {peak} bytes"


# --- records and gossip -------------------------------------------------------------------


@FUZZ
@given(inputs(RECORDS))
def test_records_decode_canonically_or_raise_invalid_record(data: bytes) -> None:
    try:
        record = decode_record(data)
    except InvalidRecord:
        return
    assert record.encoded == data  # only the exact signed bytes are accepted


@FUZZ
@given(inputs(RECORDS), st.sampled_from(RECORDS))
def test_records_fetched_by_id_are_that_record_or_invalid(data: bytes, wanted: bytes) -> None:
    expected = Cid.for_raw(wanted)
    try:
        record = verify_record_bytes(data, expected_id=expected)
    except InvalidRecord:
        assert data != wanted
        return
    assert record.id == expected
    assert data == wanted


@FUZZ
@given(inputs(RECORDS), st.lists(st.sampled_from([ANNOUNCE_TOPIC, "/remixnet/collab/x/1"])))
def test_gossip_validation_raises_invalid_record_only(data: bytes, topics: list[str]) -> None:
    try:
        record = validate_announcement(data, now_ms=1_700_000_000_000, max_clock_skew_ms=600_000)
        check_topics(record, topics)
    except InvalidRecord:
        return
    assert record.encoded == data


def test_record_claiming_huge_sizes_allocates_nothing() -> None:
    claims = [
        b"\xc6\xff\xff\xff\xff",  # bin 32 of 4 GiB
        b"\xdb\xff\xff\xff\xff",  # str 32
        b"\xdd\xff\xff\xff\xff",  # array 32 of 4 G items
        b"\xdf\xff\xff\xff\xff",  # map 32
        b"\x86\xa1a\xc6\xff\xff\xff\xff",  # inside the record map
    ]
    for claim in claims:
        with pytest.raises(InvalidRecord):
            decode_record(claim)
        assert_bounded(lambda claim=claim: decode_record(claim), len(claim))  # type: ignore[misc]


@FUZZ
@given(inputs(RECORDS))
def test_record_decoding_memory_is_bounded(data: bytes) -> None:
    assert_bounded(lambda: decode_record(data), len(data))


# --- block exchange frames ----------------------------------------------------------------


def decode_frames(data: bytes, cuts: list[int], max_frame_size: int) -> list[Message]:
    """Every message of ``data`` fed in pieces; raises ``WireError`` as the decoder does."""
    decoder = FrameDecoder(max_frame_size=max_frame_size)
    messages = []
    for piece in chunked(data, cuts):
        decoder.feed(piece)
        while (message := decoder.next_message()) is not None:
            messages.append(message)
        # Never more than one unfinished frame, a varint and the last piece.
        assert decoder.buffered <= max_frame_size + 3 + len(piece)
    decoder.close()
    return messages


@FUZZ
@given(
    st.one_of(inputs(FRAMES), st.lists(inputs(FRAMES), max_size=4).map(b"".join)),
    st.lists(st.integers(0, 4096), max_size=6),
    st.sampled_from([MAX_REQUEST_FRAME_SIZE, MAX_RESPONSE_FRAME_SIZE]),
)
def test_exchange_frames_decode_or_raise_wire_error(
    data: bytes, cuts: list[int], max_frame_size: int
) -> None:
    try:
        messages = decode_frames(data, cuts, max_frame_size)
    except WireError:
        return
    assert b"".join(map(encode, messages)) == data  # one encoding per message


def test_frame_claiming_4_gib_is_refused_before_buffering() -> None:
    for header in (
        b"\x80\x80\x80\x80\x10\x02",
        b"\xff\xff\xff\x7f\x02",
        encode_varint(MAX_RESPONSE_FRAME_SIZE + 1) + b"\x02",
    ):
        decoder = FrameDecoder(max_frame_size=MAX_RESPONSE_FRAME_SIZE)
        decoder.feed(header)
        with pytest.raises(WireError, match="frame-too-large"):
            decoder.next_message()
    # A peer trickling a maximal frame keeps the decoder within its bound.
    decoder = FrameDecoder(max_frame_size=MAX_REQUEST_FRAME_SIZE)
    decoder.feed(b"\xff\xff\x7f")
    with pytest.raises(WireError, match="frame-too-large"):
        decoder.next_message()


# --- catch-up sync messages ---------------------------------------------------------------

SMALL_SYNC_LIMITS = SyncLimits(max_message_size=4096, max_ranges=32, max_ids=64)


@FUZZ
@given(inputs(SYNC_MESSAGES), st.sampled_from([SYNC_LIMITS, SMALL_SYNC_LIMITS]))
def test_sync_messages_decode_canonically_or_raise_sync_error(
    data: bytes, limits: SyncLimits
) -> None:
    try:
        message = decode_message(data, limits)
    except SyncError:
        return
    assert encode_message(message) == data


@FUZZ
@given(inputs(SYNC_MESSAGES))
def test_sync_decoding_memory_is_bounded(data: bytes) -> None:
    assert_bounded(lambda: decode_message(data, SYNC_LIMITS), len(data))


def test_sync_counts_claiming_billions_allocate_nothing() -> None:
    huge = b"\x80\x80\x80\x80\x80\x80\x80\x80\x01"  # varint 2**56
    claims = [
        b"\x01\x00\x00\x02" + huge,  # ID_LIST to infinity claiming 2**56 ids
        b"\x01\x00\x00\x03\x00" + huge,  # DIFF with a bit field of 2**56 bits
        b"\x01\x01" + huge + b"\x01",  # a bound with a 2**56-byte id prefix
    ]
    for claim in claims:
        with pytest.raises(SyncError):
            decode_message(claim, SYNC_LIMITS)
        assert_bounded(lambda claim=claim: decode_message(claim, SYNC_LIMITS), len(claim))  # type: ignore[misc]


# --- CARv1 files and dag-pb blocks ----------------------------------------------------------


def decode_car(data: bytes, cuts: list[int]) -> list[object]:
    decoder = CarDecoder()
    events: list[object] = []
    for piece in chunked(data, cuts):
        events += decoder.feed(piece)
    decoder.finish()
    return events


@FUZZ
@given(inputs([CAR]), st.lists(st.integers(0, 1024), max_size=4))
def test_car_files_decode_or_raise_typed_errors(data: bytes, cuts: list[int]) -> None:
    try:
        events = decode_car(data, cuts)
    except RemoteProtocolError:  # InvalidCar, or BlockMismatch for a block that is not its CID
        return
    for event in events[1:]:
        assert isinstance(event, Block)
        assert event.cid.matches(event.data)


def test_car_lengths_claiming_4_gib_allocate_nothing() -> None:
    for claim in (
        b"\x80\x80\x80\x80\x10",
        b"\xff\xff\xff\xff\x0f",
        encode_header([]) + b"\xff\xff\xff\x7f",
    ):
        assert_bounded(lambda claim=claim: decode_car(claim, []), len(claim))  # type: ignore[misc]
        with pytest.raises(RemoteProtocolError):
            decode_car(claim, [])


@FUZZ
@given(inputs([DAG_PB_ROOT]))
def test_dag_pb_blocks_decode_or_raise_invalid_dag(data: bytes) -> None:
    try:
        node = decode_pb_node(data)
    except InvalidDag:
        return
    try:
        file_node = decode_file_node(data)
    except InvalidDag:
        file_node = None
    if node.data is not None:
        try:
            decode_unixfs_data(node.data)
        except InvalidDag:
            assert file_node is None
    if file_node is not None and data == encode_pb_node(node):
        assert file_node.filesize == len(file_node.data) + sum(file_node.blocksizes)


def test_dag_pb_lengths_claiming_4_gib_allocate_nothing() -> None:
    for claim in (b"\x0a\x80\x80\x80\x80\x10", b"\x12\xff\xff\xff\xff\x0f\x0a\x24"):
        assert_bounded(lambda claim=claim: decode_file_node(claim), len(claim))  # type: ignore[misc]
        with pytest.raises(InvalidDag):
            decode_file_node(claim)


# --- JSON-RPC: the sans-IO framing and classification ---------------------------------------

REQUESTS = [
    b'{"jsonrpc": "2.0", "method": "node.status", "id": 1}',
    b'[{"jsonrpc": "2.0", "method": "records.list", "params": {"limit": 2}, "id": "a"},'
    b' {"jsonrpc": "2.0", "method": "pins.list"}]',
    b'{"jsonrpc": "2.0", "method": "content.cat", "params": ["bafkreifjjcie6lypi6ny7amxnfft'
    b'agclbuxndqonfipmb64f2km2devei4", 0, 4], "id": 7}',
]


@FUZZ
@given(
    st.one_of(inputs(REQUESTS), st.lists(inputs(REQUESTS), max_size=4).map(b"\n".join)),
    st.lists(st.integers(0, 512), max_size=6),
)
def test_json_rpc_stream_splits_and_classifies_with_typed_errors_only(
    data: bytes, cuts: list[int]
) -> None:
    splitter = JsonStreamSplitter(max_message_bytes=1024, max_depth=16)
    texts: list[bytes] = []
    try:
        for piece in chunked(data, cuts):
            splitter.feed(piece)
            while (text := splitter.next_text()) is not None:
                texts.append(text)
        if (last := splitter.end_of_stream()) is not None:
            texts.append(last)
    except FramingError:  # also MessageTooLarge: the connection is closed with an error
        pass
    for text in texts:
        code = None
        try:
            parse_incoming(text)
        except RpcError as error:
            code = error.code
        assert code in (None, -32700, -32600)


# --- JSON-RPC: a real daemon's socket ---------------------------------------------------------

READ_SECONDS = 10.0


@pytest.fixture(scope="module")
def fuzzed_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the whole module (Hypothesis runs many examples against it)."""
    cli = Cli(tmp_path_factory.mktemp("fuzz") / "node")
    cli.run("init")
    write_test_config(cli.data_dir)
    daemon = DaemonProcess(cli)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.kill()


def exchange(path: Path, data: bytes) -> list[Any]:
    """Send ``data`` then EOF on a new connection; the messages received until the daemon closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(READ_SECONDS)
        client.connect(str(path))
        try:
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon closed early (say, a framing error): read what it said
        received = b""
        deadline = time.monotonic() + READ_SECONDS
        while time.monotonic() < deadline:
            try:
                chunk = client.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        else:
            raise AssertionError("the daemon did not close the connection")
    assert received == b"" or received.endswith(b"\n"), received[-200:]
    return [json.loads(line) for line in received.splitlines()]


def responses(messages: list[Any]) -> list[Any]:
    """The messages that are responses: event and progress notifications left out."""
    return [m for m in messages if not (isinstance(m, dict) and "method" in m and "id" not in m)]


def assert_responses(messages: list[Any]) -> None:
    """Each response is a JSON-RPC response (or a batch of them), none an internal error."""
    for message in responses(messages):
        for response in message if isinstance(message, list) else [message]:
            assert response["jsonrpc"] == "2.0", response
            assert ("result" in response) != ("error" in response), response
            assert "id" in response, response
            if "error" in response:
                error = response["error"]
                assert isinstance(error["code"], int)
                assert isinstance(error["message"], str)
                assert error["code"] != INTERNAL_ERROR, response


METHODS = [
    "node.status",
    "content.add",
    "content.get",
    "content.cat",
    "car.export",
    "car.import",
    "records.get",
    "records.list",
    "lineage.ancestors",
    "lineage.descendants",
    "pins.list",
    "events.subscribe",
    "events.unsubscribe",
    "rpc.authenticate",
    "peers.list",
    "social.follow",
    "social.unfollow",
    "social.following",
    "social.feed",
    "profiles.get",
    "notifications.list",
    "no.such.method",
]
PARAM_NAMES = [
    "cid",
    "path",
    "limit",
    "offset",
    "max_bytes",
    "tag",
    "author",
    "depth",
    "events",
    "subscription",
    "name",
    "id",
    "output",
    "type",
    "since",
    "unread",
    "token",
]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4", "me", "*"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=8)), children, max_size=4
        ),
    ),
    max_leaves=12,
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": draw(st.sampled_from(METHODS))}
    request["id"] = draw(st.one_of(st.integers(-(2**60), 2**60), st.text(max_size=10), st.none()))
    if draw(st.booleans()):
        request["params"] = draw(
            st.one_of(
                st.dictionaries(st.sampled_from(PARAM_NAMES), json_values, max_size=4),
                st.lists(json_values, max_size=4),
                json_values,
            )
        )
    return request


@FUZZ
@given(st.lists(requests(), min_size=1, max_size=3), st.booleans())
def test_daemon_answers_any_request_with_a_proper_response(
    fuzzed_daemon: DaemonProcess, batch: list[dict[str, Any]], as_batch: bool
) -> None:
    path = fuzzed_daemon.cli.data_dir / "rpc.sock"
    payload = json.dumps(batch if as_batch else batch[0]).encode()
    messages = responses(exchange(path, payload))
    assert_responses(messages)
    assert len(messages) == 1
    answered = messages[0] if as_batch else [messages[0]]
    sent = batch if as_batch else batch[:1]
    assert [response["id"] for response in answered] == [request["id"] for request in sent]


@FUZZ
@given(st.one_of(inputs(REQUESTS), st.lists(inputs(REQUESTS), max_size=3).map(b" ".join)))
def test_daemon_answers_any_bytes_with_proper_responses(
    fuzzed_daemon: DaemonProcess, data: bytes
) -> None:
    path = fuzzed_daemon.cli.data_dir / "rpc.sock"
    assert_responses(exchange(path, data))


def test_daemon_survived_the_fuzzing(fuzzed_daemon: DaemonProcess) -> None:
    """Runs after the two above: the daemon still answers and logged no internal error."""
    path = fuzzed_daemon.cli.data_dir / "rpc.sock"
    [status] = exchange(path, b'{"jsonrpc": "2.0", "method": "node.status", "id": 1}')
    assert status["result"]["pid"] == fuzzed_daemon.pid
    assert fuzzed_daemon.process is not None
    assert fuzzed_daemon.process.poll() is None
    assert "internal error" not in fuzzed_daemon.log()
    assert "Traceback" not in fuzzed_daemon.log()
