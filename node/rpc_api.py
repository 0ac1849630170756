"""The control interface, defined once: every JSON-RPC method, event and error code.

The server validates requests against these definitions, both clients
validate calls with them before sending, and ``docs/rpc.md`` is rendered from
them (``python -m node.rpc_docs --write``; a test fails when it is stale).
Handlers live elsewhere (``node.rpc_methods``, ``node.rpc_server``, and the
services that register their own methods with the daemon) and may only serve
a method listed in ``METHODS``.

To add a method: a frozen params dataclass whose fields are ``param(...)``,
a ``MethodSpec`` in ``METHODS`` with the result's fields and an example, a
handler registered with ``MethodRegistry.register``, then regenerate the docs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from node.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
)
from node.operations import DEFAULT_LICENSE
from node.rpc_schema import (
    DATA_DIR,
    FILE_ERROR,
    INTEGRITY,
    INVALID_INPUT,
    MESSAGE_TOO_LARGE,
    NOT_FOUND,
    TOO_MANY_CONNECTIONS,
    UNAUTHORIZED,
    AbsolutePath,
    AuthorText,
    Boolean,
    Choice,
    CidText,
    ErrorSpec,
    EventSpec,
    Example,
    Integer,
    ListOf,
    MethodSpec,
    Nullable,
    ParentRef,
    ResultField,
    Text,
    param,
)
from protocol.cid import Cid
from protocol.records import (
    MAX_DESCRIPTION_CHARS,
    MAX_LICENSE_CHARS,
    MAX_MEDIA_TYPE_CHARS,
    MAX_PARENTS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TITLE_CHARS,
    Parent,
    RecordType,
)

MAX_CAT_BYTES: Final = 1 << 20
DEFAULT_CAT_BYTES: Final = 64 * 1024

# Notifications the server sends (the "method" of a server-to-client notification).
PROGRESS_NOTIFICATION: Final = "progress"
EVENT_NOTIFICATION: Final = "event"

ERRORS: Final = (
    ErrorSpec(PARSE_ERROR, "parse error", "The text is not JSON.", "why, as text"),
    ErrorSpec(
        INVALID_REQUEST,
        "invalid request",
        "Valid JSON, but not a request object (or an empty batch).",
        "why, as text",
    ),
    ErrorSpec(METHOD_NOT_FOUND, "method not found", "No such method.", "the method name"),
    ErrorSpec(
        INVALID_PARAMS,
        "invalid params",
        "A param is missing, unknown, of the wrong type or out of bounds.",
        '`{"param": name or null, "reason": text}`',
    ),
    ErrorSpec(
        INTERNAL_ERROR, "internal error", "A bug in the daemon (it is logged).", "the error type"
    ),
    ErrorSpec(
        INVALID_INPUT,
        "invalid input",
        "A value is well-formed but not acceptable: a record field, a CID, a CAR file.",
        '`{"reason": stable kebab-case word, "error": error class}`',
    ),
    ErrorSpec(
        NOT_FOUND,
        "not found",
        "A record, block or subscription is not known to this node.",
        '`{"what": "record" | "block" | "parent record" | …, "name": id}`',
    ),
    ErrorSpec(
        INTEGRITY,
        "integrity error",
        "Stored bytes do not match their CID (run `remixnet fsck`).",
        '`{"reason": …, "error": …}`',
    ),
    ErrorSpec(DATA_DIR, "data directory error", "The data directory is unusable.", "null"),
    ErrorSpec(
        FILE_ERROR,
        "file error",
        "A file named in the params cannot be read or written.",
        '`{"errno": "ENOENT" | …, "path": path}`',
    ),
    ErrorSpec(
        MESSAGE_TOO_LARGE,
        "message too large",
        "A request is longer than the limit; the connection is then closed.",
        '`{"limit": bytes}`',
    ),
    ErrorSpec(
        TOO_MANY_CONNECTIONS,
        "too many connections",
        "The daemon serves its limit of clients; the connection is then closed.",
        '`{"limit": connections}`',
    ),
    ErrorSpec(
        UNAUTHORIZED,
        "unauthorized",
        "On TCP, any call before a successful `rpc.authenticate`.",
        "null",
    ),
)


# --- params ------------------------------------------------------------------

_ID = CidText()
_LINE_TAG = Text(MAX_TAG_CHARS, non_empty=True)


@dataclass(frozen=True, slots=True)
class NoParams:
    """A method without params."""


@dataclass(frozen=True, slots=True)
class AddParams:
    path: Path = field(metadata=param(AbsolutePath(), "The file to import (read by the daemon)."))
    title: str | None = field(
        default=None, metadata=param(Nullable(Text(MAX_TITLE_CHARS)), "Title; null: the file name.")
    )
    description: str = field(default="", metadata=param(Text(MAX_DESCRIPTION_CHARS), "Free text."))
    license: str = field(
        default=DEFAULT_LICENSE, metadata=param(Text(MAX_LICENSE_CHARS), "SPDX license id.")
    )
    tags: tuple[str, ...] = field(default=(), metadata=param(ListOf(_LINE_TAG, MAX_TAGS), "Tags."))
    media_type: str | None = field(
        default=None,
        metadata=param(
            Nullable(Text(MAX_MEDIA_TYPE_CHARS)), "MIME type; null: guessed from the file name."
        ),
    )
    collab: Cid | None = field(
        default=None, metadata=param(Nullable(_ID), "Id of the collab this answers.")
    )
    parents: tuple[Parent, ...] = field(
        default=(),
        metadata=param(
            ListOf(ParentRef(), MAX_PARENTS),
            "The works this remixes (a remix when not empty); weights all given or all null.",
        ),
    )
    upstream_bps: int | None = field(
        default=None,
        metadata=param(
            Nullable(Integer(0, 10_000)),
            "Basis points of credit passed to the parents; null: 5000 (0 without parents).",
        ),
    )
    progress: bool = field(
        default=False, metadata=param(Boolean(), "Send `progress` notifications.")
    )


@dataclass(frozen=True, slots=True)
class GetParams:
    cid: Cid = field(metadata=param(_ID, "A content CID, or a record id meaning its content."))
    path: Path = field(
        metadata=param(
            AbsolutePath(), "Where to write the file; replaced atomically when complete."
        )
    )
    progress: bool = field(
        default=False, metadata=param(Boolean(), "Send `progress` notifications.")
    )


@dataclass(frozen=True, slots=True)
class CatParams:
    cid: Cid = field(metadata=param(_ID, "A content CID, or a record id meaning its content."))
    offset: int = field(default=0, metadata=param(Integer(0, 2**53 - 1), "First byte to return."))
    max_bytes: int = field(
        default=DEFAULT_CAT_BYTES,
        metadata=param(Integer(1, MAX_CAT_BYTES), "At most this many bytes."),
    )


@dataclass(frozen=True, slots=True)
class RecordParams:
    id: Cid = field(metadata=param(_ID, "A record id."))


@dataclass(frozen=True, slots=True)
class ListParams:
    author: str | None = field(
        default=None, metadata=param(Nullable(AuthorText()), "Only this author's records.")
    )
    tag: str | None = field(
        default=None, metadata=param(Nullable(_LINE_TAG), "Only records with this tag.")
    )
    media_type: str | None = field(
        default=None,
        metadata=param(
            Nullable(Text(MAX_MEDIA_TYPE_CHARS, non_empty=True)),
            'Exact MIME type, or "image/*" for a whole kind.',
        ),
    )
    type: str | None = field(
        default=None,
        metadata=param(Nullable(Choice(tuple(t.value for t in RecordType))), "Record type."),
    )
    title: str | None = field(
        default=None,
        metadata=param(Nullable(Text(MAX_TITLE_CHARS, non_empty=True)), "Text the title contains."),
    )
    collab: Cid | None = field(
        default=None, metadata=param(Nullable(_ID), "Only answers to this collab.")
    )
    limit: int = field(
        default=100, metadata=param(Integer(1, 10_000), "At most this many records.")
    )


@dataclass(frozen=True, slots=True)
class LineageParams:
    id: Cid = field(metadata=param(_ID, "A record id."))
    depth: int = field(default=50, metadata=param(Integer(1, 1000), "Generations to follow."))
    limit: int = field(
        default=1000, metadata=param(Integer(1, 10_000), "At most this many records.")
    )


@dataclass(frozen=True, slots=True)
class PinsParams:
    limit: int = field(
        default=10_000, metadata=param(Integer(1, 100_000), "At most this many pins.")
    )


@dataclass(frozen=True, slots=True)
class SubscribeParams:
    events: tuple[str, ...] | None = field(
        default=None,
        metadata=param(
            Nullable(ListOf(Text(64, non_empty=True), 64)),
            "Event names (see Events); null: all of them.",
        ),
    )


@dataclass(frozen=True, slots=True)
class UnsubscribeParams:
    subscription: int = field(
        metadata=param(Integer(1, 2**53 - 1), "What `events.subscribe` returned.")
    )


@dataclass(frozen=True, slots=True)
class AuthenticateParams:
    token: str = field(metadata=param(Text(1024, non_empty=True), "The content of the token file."))


# --- examples ------------------------------------------------------------------

_AUTHOR = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
_POEM = "bafkreiaqp66gkrph22bifwjr7h23m5ewybpmrrgaotwdmxdjsbc7eodhvq"
_POEM_CONTENT = "bafkreick266ofwkdsb7ya32466vyucf37fuurtn6r5ctlj6yvdk6vp2jda"
_DRAWING = "bafkreie52wwrqxd7z2ivb7xktetq2ze7ch5zidcmtfkqnhybgyogaumof4"
_POEM_RECORD: Final[dict[str, object]] = {
    "id": _POEM,
    "type": "contribution",
    "author": _AUTHOR,
    "created_ms": 1795777393400,
    "title": "Winter poem",
    "content": _POEM_CONTENT,
    "size": 13,
    "media_type": "text/plain",
    "license": "CC-BY-SA-4.0",
    "description": "",
    "tags": ["poetry"],
    "parents": [],
    "upstream_bps": None,
    "collab": None,
    "effective_upstream_bps": 0,
}
_DRAWING_RECORD: Final[dict[str, object]] = {
    **_POEM_RECORD,
    "id": _DRAWING,
    "created_ms": 1795777393402,
    "title": "Snow drawing",
    "content": "bafkreiahl6hd6ix4wwjpdqt3bbrxltxkvtdwppkdurmdz76tq2c5hiozxm",
    "size": 9,
    "media_type": "image/png",
    "tags": [],
    "parents": [{"id": _POEM, "weight": None}],
    "effective_upstream_bps": 5000,
}

_RECORD_LIST = "[record]"
_RECORDS_DOC = "Record views (see Records), newest first."

# --- methods -------------------------------------------------------------------

NODE_STATUS: Final = MethodSpec(
    name="node.status",
    params=NoParams,
    summary="What this node is and how it is doing.",
    result=(
        ResultField("version", "string", "remixnet version."),
        ResultField("author", "PeerID", "This node's author id."),
        ResultField("peer_id", "PeerID", "Its libp2p PeerID (the same key, DESIGN.md)."),
        ResultField("pid", "integer", "Process id of the daemon."),
        ResultField("data_dir", "string", "The data directory."),
        ResultField("rpc_socket", "string", "Path of the Unix socket."),
        ResultField("rpc_tcp", "string or null", '"host:port" of the TCP listener, if on.'),
        ResultField("listen_addrs", "[multiaddr]", "Addresses peers can dial (empty offline)."),
        ResultField("uptime_s", "number", "Seconds since the daemon started."),
        ResultField("store", "object", "Store statistics: records, blocks, bytes, pins."),
        ResultField("rpc", "object", "RPC server statistics: connections, requests, events."),
        ResultField("services", "object", "Statistics of each service, by service name."),
    ),
    example=Example(
        {},
        {
            "version": "0.1.0",
            "author": _AUTHOR,
            "peer_id": _AUTHOR,
            "pid": 4242,
            "data_dir": "/home/ada/.local/share/remixnet",
            "rpc_socket": "/home/ada/.local/share/remixnet/rpc.sock",
            "rpc_tcp": None,
            "listen_addrs": [],
            "uptime_s": 12.5,
            "store": {"records": 2, "blocks": 2, "block_bytes": 22, "pins": 2},
            "rpc": {"connections": 1, "connections_total": 3, "requests_total": 9},
            "services": {},
        },
    ),
)

NODE_SHUTDOWN: Final = MethodSpec(
    name="node.shutdown",
    params=NoParams,
    summary="Stop the daemon cleanly, after answering this call.",
    result=(ResultField("stopping", "boolean", "Always true."),),
    example=Example({}, {"stopping": True}),
    notes="Calls in progress are cancelled and their connections closed.",
)

CONTENT_ADD: Final = MethodSpec(
    name="content.add",
    params=AddParams,
    summary="Import a file and publish it as a signed contribution (a remix with `parents`).",
    result=(
        ResultField("id", "CID", "The new record's id."),
        ResultField("content", "CID", "The file's root CID (as `ipfs add --cid-version=1`)."),
        ResultField("size", "integer", "File size in bytes."),
    ),
    example=Example(
        {"path": "/home/ada/poem.txt", "title": "Winter poem", "tags": ["poetry"]},
        {"id": _POEM, "content": _POEM_CONTENT, "size": 13},
    ),
    errors=(NOT_FOUND, FILE_ERROR, INVALID_INPUT),
    long_running=True,
    notes="Emits `record.added`. Progress counts bytes read from the file.",
)

CONTENT_GET: Final = MethodSpec(
    name="content.get",
    params=GetParams,
    summary="Write content to a file, every block verified, atomically.",
    result=(
        ResultField("content", "CID", "The content's root CID."),
        ResultField("path", "string", "The file written."),
        ResultField("size", "integer", "Bytes written."),
    ),
    example=Example(
        {"cid": _POEM, "path": "/home/ada/copy.txt"},
        {"content": _POEM_CONTENT, "path": "/home/ada/copy.txt", "size": 13},
    ),
    errors=(NOT_FOUND, INTEGRITY, FILE_ERROR, INVALID_INPUT),
    long_running=True,
)

CONTENT_CAT: Final = MethodSpec(
    name="content.cat",
    params=CatParams,
    summary="Read a bounded slice of content, base64-encoded.",
    result=(
        ResultField("content", "CID", "The content's root CID."),
        ResultField("offset", "integer", "Offset of the first byte returned."),
        ResultField("data", "string", "The bytes, base64 (RFC 4648, with padding)."),
        ResultField("bytes", "integer", "How many bytes `data` holds."),
        ResultField("eof", "boolean", "True when nothing follows."),
    ),
    example=Example(
        {"cid": _POEM, "max_bytes": 4},
        {"content": _POEM_CONTENT, "offset": 0, "data": "c25vdw==", "bytes": 4, "eof": False},
    ),
    errors=(NOT_FOUND, INTEGRITY, INVALID_INPUT),
    notes="Reading from an offset walks the file from its start: use `content.get` for big files.",
)

RECORDS_GET: Final = MethodSpec(
    name="records.get",
    params=RecordParams,
    summary="One record, and the records that remix it.",
    result=(
        ResultField("record", "record", "The record view (see Records)."),
        ResultField("remixed_by", "[CID]", "Ids of the records naming it as a parent."),
    ),
    example=Example({"id": _POEM}, {"record": _POEM_RECORD, "remixed_by": [_DRAWING]}),
    errors=(NOT_FOUND,),
)

RECORDS_LIST: Final = MethodSpec(
    name="records.list",
    params=ListParams,
    summary="Records in the store matching every filter given, newest first.",
    result=(ResultField("records", _RECORD_LIST, _RECORDS_DOC),),
    example=Example({"tag": "poetry", "limit": 10}, {"records": [_POEM_RECORD]}),
)

LINEAGE_ANCESTORS: Final = MethodSpec(
    name="lineage.ancestors",
    params=LineageParams,
    summary="What a record remixes, generation by generation.",
    result=(
        ResultField("root", "CID", "The record asked about."),
        ResultField("records", _RECORD_LIST, "Ancestors held here, breadth first."),
        ResultField("missing", "[CID]", "Ancestors named by a parent link but not held here."),
        ResultField("truncated", "boolean", "True when `limit` cut the walk short."),
    ),
    example=Example(
        {"id": _DRAWING},
        {"root": _DRAWING, "records": [_POEM_RECORD], "missing": [], "truncated": False},
    ),
    errors=(NOT_FOUND,),
)

LINEAGE_DESCENDANTS: Final = MethodSpec(
    name="lineage.descendants",
    params=LineageParams,
    summary="The remixes of a record, generation by generation.",
    result=(
        ResultField("root", "CID", "The record asked about."),
        ResultField("records", _RECORD_LIST, "Descendants held here, breadth first."),
        ResultField("truncated", "boolean", "True when `limit` cut the walk short."),
    ),
    example=Example(
        {"id": _POEM, "depth": 1},
        {"root": _POEM, "records": [_DRAWING_RECORD], "truncated": False},
    ),
    errors=(NOT_FOUND,),
)

PINS_LIST: Final = MethodSpec(
    name="pins.list",
    params=PinsParams,
    summary="Content kept from garbage collection, oldest first.",
    result=(
        ResultField("pins", '[{"cid": CID, "reason": string}]', "The pins."),
        ResultField("truncated", "boolean", "True when there are more than `limit`."),
    ),
    example=Example(
        {}, {"pins": [{"cid": _POEM_CONTENT, "reason": "own contribution"}], "truncated": False}
    ),
)

EVENTS_SUBSCRIBE: Final = MethodSpec(
    name="events.subscribe",
    params=SubscribeParams,
    summary="Receive events on this connection as `event` notifications.",
    result=(
        ResultField("subscription", "integer", "Id for `events.unsubscribe`, in notifications."),
        ResultField("events", "[string]", "The event names subscribed to."),
    ),
    example=Example({"events": ["record.added"]}, {"subscription": 1, "events": ["record.added"]}),
    notes=(
        "Each connection has a bounded queue of outgoing messages: a subscriber that does not"
        " read its socket while events keep coming is disconnected, never waited for."
    ),
)

EVENTS_UNSUBSCRIBE: Final = MethodSpec(
    name="events.unsubscribe",
    params=UnsubscribeParams,
    summary="Stop a subscription of this connection.",
    result=(ResultField("unsubscribed", "boolean", "Always true."),),
    example=Example({"subscription": 1}, {"unsubscribed": True}),
    errors=(NOT_FOUND,),
)

RPC_AUTHENTICATE: Final = MethodSpec(
    name="rpc.authenticate",
    params=AuthenticateParams,
    summary="On the TCP listener, present the bearer token; must be the first call.",
    result=(ResultField("authenticated", "boolean", "Always true."),),
    example=Example({"token": "q1W…the token file's content"}, {"authenticated": True}),
    errors=(UNAUTHORIZED,),
    notes="A wrong token closes the connection. On the Unix socket it is accepted and ignored.",
)

METHODS: Final[tuple[MethodSpec[Any], ...]] = (
    NODE_STATUS,
    NODE_SHUTDOWN,
    CONTENT_ADD,
    CONTENT_GET,
    CONTENT_CAT,
    RECORDS_GET,
    RECORDS_LIST,
    LINEAGE_ANCESTORS,
    LINEAGE_DESCENDANTS,
    PINS_LIST,
    EVENTS_SUBSCRIBE,
    EVENTS_UNSUBSCRIBE,
    RPC_AUTHENTICATE,
)

METHODS_BY_NAME: Final[dict[str, MethodSpec[Any]]] = {spec.name: spec for spec in METHODS}

# --- events --------------------------------------------------------------------

RECORD_ADDED: Final = EventSpec(
    name="record.added",
    summary="A record was stored (published here, or received from a peer).",
    data=(
        ResultField("record", "record", "The record view (see Records)."),
        ResultField("origin", "string", '"local", or the PeerID it came from.'),
    ),
    example={"record": _POEM_RECORD, "origin": "local"},
)

PROGRESS_EVENT: Final = EventSpec(
    name="progress",
    summary="A long operation advanced (at most ~10 per second per operation).",
    data=(
        ResultField("operation", "string", 'The method: "content.add", "content.get".'),
        ResultField("target", "string", "The file path or CID being processed."),
        ResultField("done", "integer", "Bytes done so far."),
        ResultField("total", "integer or null", "Bytes in all, when known."),
    ),
    example={
        "operation": "content.add",
        "target": "/home/ada/film.mp4",
        "done": 1 << 20,
        "total": 52_428_800,
    },
)

EVENTS: Final[tuple[EventSpec, ...]] = (RECORD_ADDED, PROGRESS_EVENT)
EVENT_NAMES: Final = frozenset(event.name for event in EVENTS)
