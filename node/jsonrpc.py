"""JSON-RPC 2.0 messages and their framing on a byte stream (sans-IO).

This module owns the wire level of the local control interface: splitting a
stream of bytes into JSON texts, classifying a text as a request, a
notification, a batch or garbage exactly as the JSON-RPC 2.0 specification
says, and encoding responses. It does no I/O and knows no methods; the server
(``node.rpc_server``) and both clients (``node.client``) use it.

Framing, both directions:

* Inbound to the server, a connection carries a *stream* of JSON texts: a
  text needs no trailing newline and any JSON whitespace may separate texts.
  ``JsonStreamSplitter`` finds where each text ends by scanning brackets and
  strings, so a request is handled as soon as its last byte arrives.
* Outbound from the server, every message is one line of compact JSON ending
  in ``\\n`` (JSON escapes newlines inside strings, so a line is a message).

Invariants: the splitter never holds more than ``max_message_bytes`` of an
unfinished text (``MessageTooLarge`` otherwise) nor nests deeper than
``max_depth``; every text it returns is what the peer sent, byte for byte.
A closing bracket that does not match ends the current text (which then fails
to parse), so a client's syntax error costs one parse error, not the stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

VERSION: Final = "2.0"

# Standard error codes (JSON-RPC 2.0, section 5.1).
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

STANDARD_MESSAGES: Final[Mapping[int, str]] = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
}

JsonId: TypeAlias = str | int | float | None
Params: TypeAlias = list[Any] | dict[str, Any] | None

_WHITESPACE: Final = b" \t\r\n"
# Outside a string, the bytes that change the scanner's state.
_STRUCTURAL = re.compile(rb'[\[\]{}"]')
# Inside a string, the bytes that may end it.
_STRING_SPECIAL = re.compile(rb'["\\]')
# A top-level scalar (number, literal, or garbage) ends at one of these.
_SCALAR_END = re.compile(rb'[ \t\r\n\[\]{}",:]')
_CLOSER = {ord("["): ord("]"), ord("{"): ord("}")}


class RpcError(Exception):
    """A JSON-RPC error object as an exception: what a handler raises, what a client gets.

    ``code`` is a standard or application code, ``message`` a short sentence,
    ``data`` any JSON value that helps the caller (documented per code).
    """

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"


class FramingError(Exception):
    """The byte stream cannot be split into JSON texts any further (close it)."""

    code = PARSE_ERROR


class MessageTooLarge(FramingError):
    """A JSON text is longer than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"message larger than {limit} bytes")
        self.limit = limit


class JsonStreamSplitter:
    """Splits a byte stream into JSON texts without parsing them.

    ``feed`` bytes, then call ``next_text`` until it returns None (need more).
    Tracks bracket nesting and string state incrementally (one pass over each
    byte, skipping string contents with a regular expression), so cost is
    linear in the stream length however the bytes are cut.

    Raises ``MessageTooLarge`` when an unfinished text exceeds the limit and
    ``FramingError`` on too deep nesting; after either, the stream cannot be
    resynchronised and must be closed.
    """

    def __init__(self, *, max_message_bytes: int, max_depth: int = 64) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_depth = max_depth
        self._buffer = bytearray()
        self._start = -1  # offset of the current text's first byte, -1 between texts
        self._scan = 0  # offset up to which the current text has been scanned
        self._stack: list[int] = []  # expected closing brackets
        self._in_string = False
        self._scalar = False  # the current text is a top-level scalar

    @property
    def buffered(self) -> int:
        """Bytes held: the unfinished text and what follows it."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_text(self) -> bytes | None:
        """The next complete JSON text, or None until more bytes arrive."""
        buffer = self._buffer
        if self._start < 0:
            start = 0
            while start < len(buffer) and buffer[start] in _WHITESPACE:
                start += 1
            del buffer[:start]
            if not buffer:
                return None
            self._start, self._scan = 0, 0
            self._scalar = buffer[0] not in b'[{"'
        end = self._find_end()
        if end is None:
            if len(buffer) > self.max_message_bytes:
                raise MessageTooLarge(self.max_message_bytes)
            return None
        if end > self.max_message_bytes:
            raise MessageTooLarge(self.max_message_bytes)
        text = bytes(buffer[:end])
        del buffer[:end]
        self._start = -1
        return text

    def end_of_stream(self) -> bytes | None:
        """At EOF: the last text if it was a bare scalar (``1``), else None.

        Raises ``FramingError`` when the stream ends inside a text.
        """
        if self._start >= 0 and self._scalar and not self._in_string:
            text = bytes(self._buffer)
            self._buffer.clear()
            self._start = -1
            return text
        if self._buffer.strip(_WHITESPACE):
            raise FramingError("the stream ended inside a JSON text")
        return None

    def _find_end(self) -> int | None:
        """Offset just past the current text, scanning on from ``_scan``."""
        buffer = self._buffer
        position = self._scan
        if self._scalar:
            match = _SCALAR_END.search(buffer, position)
            if match is None:
                self._scan = len(buffer)
                return None
            return match.start() if match.start() > 0 else 1
        while True:
            if self._in_string:
                match = _STRING_SPECIAL.search(buffer, position)
                if match is None:
                    self._scan = len(buffer)
                    return None
                position = match.start()
                if buffer[position] == ord("\\"):
                    if position + 1 >= len(buffer):
                        self._scan = position  # rescan the escape when its next byte arrives
                        return None
                    position += 2
                    continue
                self._in_string = False
                position += 1
                if not self._stack:
                    return position  # a top-level string
                continue
            match = _STRUCTURAL.search(buffer, position)
            if match is None:
                self._scan = len(buffer)
                return None
            position = match.start()
            byte = buffer[position]
            position += 1
            if byte == ord('"'):
                self._in_string = True
            elif byte in _CLOSER:
                self._stack.append(_CLOSER[byte])
                if len(self._stack) > self.max_depth:
                    raise FramingError(f"JSON nested deeper than {self.max_depth} levels")
            elif self._stack.pop() != byte:
                # Not valid JSON. Ending the text here lets the caller answer it
                # with a parse error and go on with what follows (resynchronise).
                self._stack.clear()
                return position
            elif not self._stack:
                return position


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def decode_json(text: bytes) -> object:
    """Parse one JSON text strictly (UTF-8, no NaN/Infinity). Raises ``ValueError``."""
    return json.loads(text.decode("utf-8"), parse_constant=_reject_constant)


@dataclass(frozen=True, slots=True)
class EncodedResult:
    """A result already encoded as compact UTF-8 JSON, spliced into its response as is.

    For results holding much data (``content.cat``'s base64): the handler
    builds the text off the event loop, and ``encode_line`` only copies it
    instead of scanning it for characters to escape. The handler answers for
    it being one valid JSON value.
    """

    json: bytes


def encode_line(message: object) -> bytes:
    """One message (or a batch of them) as a line of compact JSON ending in a newline."""
    parts: list[bytes] = []
    _encode(message, parts)
    parts.append(b"\n")
    return b"".join(parts)  # one copy of a long pre-encoded result, not one per splice


def _encode(message: object, parts: list[bytes]) -> None:
    if isinstance(message, list):
        parts.append(b"[")
        for index, element in enumerate(message):
            if index:
                parts.append(b",")
            _encode(element, parts)
        parts.append(b"]")
        return
    result = message.get("result") if isinstance(message, dict) else None
    if isinstance(message, dict) and isinstance(result, EncodedResult):
        _encode({key: value for key, value in message.items() if key != "result"}, parts)
        parts[-1] = parts[-1][:-1]  # reopen the object: the result is its last member
        parts += [b',"result":', result.json, b"}"]
        return
    parts.append(
        json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    )


@dataclass(frozen=True, slots=True)
class Request:
    """A valid request object. ``is_notification``: it had no ``id`` (no response)."""

    method: str
    params: Params
    id: JsonId
    is_notification: bool


@dataclass(frozen=True, slots=True)
class InvalidRequest:
    """An element that is not a valid request; answered with -32600."""

    id: JsonId
    reason: str


Item: TypeAlias = Request | InvalidRequest


@dataclass(frozen=True, slots=True)
class Incoming:
    """One JSON text from a client: a single item, or a batch of them."""

    items: tuple[Item, ...]
    is_batch: bool


def parse_incoming(text: bytes) -> Incoming:
    """Classify one JSON text. Raises ``RpcError`` (-32700 or -32600) for the whole text.

    An empty batch is one invalid request (answered with one error object,
    not an array), as the specification's examples show.
    """
    try:
        value = decode_json(text)
    except (ValueError, RecursionError) as error:
        raise RpcError(PARSE_ERROR, STANDARD_MESSAGES[PARSE_ERROR], str(error)) from None
    if isinstance(value, list):
        if not value:
            raise RpcError(INVALID_REQUEST, STANDARD_MESSAGES[INVALID_REQUEST], "empty batch")
        return Incoming(tuple(classify(element) for element in value), is_batch=True)
    return Incoming((classify(value),), is_batch=False)


_REQUEST_MEMBERS: Final = frozenset({"jsonrpc", "method", "params", "id"})


def _is_id(value: object) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def classify(value: object) -> Item:
    """A request object (JSON-RPC 2.0, section 4) or the reason it is not one."""
    if not isinstance(value, dict):
        return InvalidRequest(None, "a request must be an object")
    request_id = value.get("id")
    echo_id = request_id if _is_id(request_id) else None
    if value.get("jsonrpc") != VERSION:
        return InvalidRequest(echo_id, 'jsonrpc must be exactly "2.0"')
    method = value.get("method")
    if not isinstance(method, str):
        return InvalidRequest(echo_id, "method must be a string")
    params = value.get("params")
    if "params" in value and not isinstance(params, list | dict):
        return InvalidRequest(echo_id, "params must be an array or an object")
    if not _is_id(request_id):
        return InvalidRequest(None, "id must be a string, a number or null")
    unknown = value.keys() - _REQUEST_MEMBERS
    if unknown:
        return InvalidRequest(echo_id, f"unknown member {sorted(unknown)[0]!r}")
    return Request(method, params, request_id, is_notification="id" not in value)


def success(request_id: JsonId, result: object) -> dict[str, object]:
    return {"jsonrpc": VERSION, "result": result, "id": request_id}


def failure(request_id: JsonId, error: RpcError) -> dict[str, object]:
    return {"jsonrpc": VERSION, "error": error.to_json(), "id": request_id}


def notification(method: str, params: Mapping[str, object]) -> dict[str, object]:
    return {"jsonrpc": VERSION, "method": method, "params": dict(params)}


def request(method: str, params: Params, request_id: JsonId) -> dict[str, object]:
    message: dict[str, object] = {"jsonrpc": VERSION, "method": method, "id": request_id}
    if params is not None:
        message["params"] = params
    return message


def invalid_request_error(item: InvalidRequest) -> RpcError:
    return RpcError(INVALID_REQUEST, STANDARD_MESSAGES[INVALID_REQUEST], item.reason)


def error_from_json(value: object) -> RpcError:
    """The ``error`` member of a response as an ``RpcError`` (a malformed one as -32603)."""
    if isinstance(value, dict):
        code, message = value.get("code"), value.get("message")
        if isinstance(code, int) and isinstance(message, str):
            return RpcError(code, message, value.get("data"))
    return RpcError(INTERNAL_ERROR, "malformed error object in response", value)
