"""The sans-IO JSON-RPC layer: stream splitting, request classification, param validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    EncodedResult,
    FramingError,
    InvalidRequest,
    JsonStreamSplitter,
    MessageTooLarge,
    Request,
    RpcError,
    classify,
    encode_line,
    parse_incoming,
    success,
)
from node.rpc_api import CONTENT_ADD, CONTENT_CAT, RECORDS_LIST
from node.rpc_schema import rpc_error_for
from node.store import NotFound
from protocol.cid import Cid
from protocol.records import InvalidRecord

POEM = "bafkreiaqp66gkrph22bifwjr7h23m5ewybpmrrgaotwdmxdjsbc7eodhvq"


def split_all(chunks: list[bytes], limit: int = 1 << 20) -> list[bytes]:
    splitter = JsonStreamSplitter(max_message_bytes=limit)
    texts = []
    for chunk in chunks:
        splitter.feed(chunk)
        while (text := splitter.next_text()) is not None:
            texts.append(text)
    last = splitter.end_of_stream()
    if last is not None:
        texts.append(last)
    return texts


def test_texts_need_no_delimiter_and_whitespace_between_is_skipped() -> None:
    stream = b'{"a":1}[1,{"b":[2]}]  \n\t"str}"{"c":"]"}\r\n 17 true'
    assert split_all([stream]) == [
        b'{"a":1}',
        b'[1,{"b":[2]}]',
        b'"str}"',
        b'{"c":"]"}',
        b"17",
        b"true",
    ]


def test_a_request_is_complete_at_its_last_byte() -> None:
    splitter = JsonStreamSplitter(max_message_bytes=1000)
    request = b'{"jsonrpc":"2.0","method":"node.status","id":1}'
    splitter.feed(request[:-1])
    assert splitter.next_text() is None
    splitter.feed(request[-1:])
    assert splitter.next_text() == request  # without waiting for a newline or more data


def test_escapes_and_brackets_inside_strings_at_every_cut() -> None:
    text = json.dumps({"k": 'a\\"}]{["\\\\', "é": ["\u2028", "\\"]}).encode()
    for cut in range(1, len(text)):
        assert split_all([text[:cut], text[cut:], text]) == [text, text]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(
    st.lists(json_values.filter(lambda v: isinstance(v, dict | list)), min_size=1, max_size=5),
    st.data(),
)
def test_any_cutting_of_a_stream_gives_the_same_texts(values: list[Any], data: Any) -> None:
    texts = [json.dumps(value, ensure_ascii=False).encode() for value in values]
    stream = b" \n".join(texts)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert split_all(chunks) == texts
    assert [json.loads(text) for text in texts] == values


def test_oversized_texts_are_refused_finished_or_not() -> None:
    with pytest.raises(MessageTooLarge):
        split_all([b'{"a":"' + b"x" * 200], limit=100)  # never finished
    with pytest.raises(MessageTooLarge):
        split_all([b'{"a":"' + b"x" * 200 + b'"}'], limit=100)
    assert split_all([b'{"a":"' + b"x" * 80 + b'"}'], limit=100)


def test_a_mismatched_bracket_ends_the_text_so_the_stream_resynchronises() -> None:
    texts = split_all([b'{"a": "b, "c]  {"ok": 1} [{"x": 1}, {"y"\n] {"ok": 2}'])
    assert texts == [b'{"a": "b, "c]', b'{"ok": 1}', b'[{"x": 1}, {"y"\n]', b'{"ok": 2}']


def test_deep_nesting_and_end_inside_a_text_are_framing_errors() -> None:
    with pytest.raises(FramingError):
        split_all([b"[" * 100 + b"]" * 100])
    with pytest.raises(FramingError):
        split_all([b'{"a":'])  # the stream ended inside a text


def test_classification_follows_the_specification() -> None:
    ok = classify({"jsonrpc": "2.0", "method": "m", "params": [1], "id": "x"})
    assert ok == Request("m", [1], "x", is_notification=False)
    assert classify({"jsonrpc": "2.0", "method": "m"}) == Request("m", None, None, True)
    assert classify({"jsonrpc": "2.0", "method": "m", "id": None}).is_notification is False  # type: ignore[union-attr]
    bad: list[Any] = [
        1,
        "x",
        [],
        {"method": "m", "id": 1},
        {"jsonrpc": "1.0", "method": "m", "id": 1},
        {"jsonrpc": "2.0", "method": 1, "id": 1},
        {"jsonrpc": "2.0", "method": "m", "params": "bar", "id": 1},
        {"jsonrpc": "2.0", "method": "m", "id": True},
        {"jsonrpc": "2.0", "method": "m", "id": [1]},
        {"jsonrpc": "2.0", "method": "m", "param": [1], "id": 1},
    ]
    for value in bad:
        assert isinstance(classify(value), InvalidRequest), value
    # A valid id is echoed in the error; an invalid one is null.
    assert classify({"jsonrpc": "2.0", "method": 1, "id": 7}) == InvalidRequest(
        7, "method must be a string"
    )


def test_parse_errors_and_empty_batches() -> None:
    for text in (b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]', b"NaN", b"\xff"):
        with pytest.raises(RpcError) as caught:
            parse_incoming(text)
        assert caught.value.code == PARSE_ERROR
    with pytest.raises(RpcError) as caught:
        parse_incoming(b"[]")
    assert caught.value.code == INVALID_REQUEST
    batch = parse_incoming(b"[1,2,3]")
    assert batch.is_batch
    assert len(batch.items) == 3


def test_params_by_name_and_position_are_validated_into_typed_values() -> None:
    by_name = CONTENT_CAT.parse_params({"cid": POEM, "max_bytes": 4.0})
    by_position = CONTENT_CAT.parse_params([POEM, 0, 4])
    assert by_name == by_position
    assert by_name.cid == Cid.parse(POEM)
    assert CONTENT_CAT.parse_params({"cid": POEM}).max_bytes == 64 * 1024
    added = CONTENT_ADD.parse_params(
        {"path": "/a/b.txt", "parents": [{"id": POEM, "weight": 2}], "tags": ["x"]}
    )
    assert added.path == Path("/a/b.txt")
    assert added.parents[0].weight == 2
    assert RECORDS_LIST.parse_params({"author": "me", "type": "contribution"}).author == "me"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "cid"),
        ({"cid": "nope"}, "cid"),
        ({"cid": POEM, "max_bytes": 0}, "max_bytes"),
        ({"cid": POEM, "max_bytes": 2.5}, "max_bytes"),
        ({"cid": POEM, "offset": True}, "offset"),
        ({"cid": POEM, "colour": 1}, None),
        ([POEM, 0, 4, 5], None),
    ],
)
def test_invalid_params_name_the_param(params: Any, param: str | None) -> None:
    with pytest.raises(RpcError) as caught:
        CONTENT_CAT.parse_params(params)
    assert caught.value.code == INVALID_PARAMS
    assert caught.value.data["param"] == param  # type: ignore[index]


def test_relative_paths_and_bad_parents_are_invalid_params() -> None:
    for params in (
        {"path": "poem.txt"},
        {"path": "/p", "parents": [POEM]},
        {"path": "/p", "parents": [{"id": POEM, "weight": 0}]},
        {"path": "/p", "tags": [""]},
    ):
        with pytest.raises(RpcError) as caught:
            CONTENT_ADD.parse_params(params)
        assert caught.value.code == INVALID_PARAMS, params


def test_errors_a_caller_can_cause_map_to_documented_codes() -> None:
    not_found = rpc_error_for(NotFound("record", POEM))
    assert not_found is not None
    assert (not_found.code, not_found.data) == (-32002, {"what": "record", "name": POEM})
    invalid = rpc_error_for(InvalidRecord("invalid-value", "duplicate tag"))
    assert invalid is not None
    assert invalid.code == -32001
    assert invalid.data == {"reason": "invalid-value", "error": "InvalidRecord"}
    missing = rpc_error_for(FileNotFoundError(2, "No such file or directory", "/x"))
    assert missing is not None
    assert (missing.code, missing.data) == (-32005, {"errno": "ENOENT", "path": "/x"})
    assert rpc_error_for(KeyError("bug")) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@given(json_values, st.integers(0, 3))
def test_a_pre_encoded_result_gives_the_line_its_value_would(result: Any, batch: int) -> None:
    encoded = EncodedResult(json.dumps(result, separators=(",", ":")).encode())
    if batch:
        line = encode_line([success(n, encoded) for n in range(batch)])
        plain = encode_line([success(n, result) for n in range(batch)])
    else:
        line, plain = encode_line(success(7, encoded)), encode_line(success(7, result))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line) == json.loads(plain)
