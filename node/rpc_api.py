"""The control interface, defined once: every JSON-RPC method, event and error code.

The server validates requests against these definitions, both clients
validate calls with them before sending, and ``docs/rpc.md`` is rendered from
them (``python -m node.rpc_docs --write``; a test fails when it is stale).
Handlers live elsewhere (``node.rpc_methods``, ``node.rpc_server``, and the
services that register their own methods with the daemon) and may only serve
a method listed in ``METHODS``.

This module owns the lists (``METHODS``, ``EVENTS``, ``ERRORS``) and defines
the node, content, record, lineage, store, event-subscription and
authentication methods and the record and progress events. Other groups are
defined beside it and listed here: ``node.rpc_api_peers`` (``peers.*`` and
the ``peer.*`` events), ``node.rpc_api_social`` (follows, the feed, profiles,
notifications), ``node.rpc_api_collab``, ``node.rpc_api_seed`` and
``node.rpc_api_storage``. Those modules never import this one.

To add a method: a frozen params dataclass whose fields are ``param(...)``
(in ``node.rpc_params``), a ``MethodSpec`` in ``METHODS`` with the result's fields and an example, a
handler registered with ``MethodRegistry.register``, then regenerate the docs.
"""

from __future__ import annotations

from typing import Any, Final

from node.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
)
from node.rpc_api_collab import COLLAB_METHODS
from node.rpc_api_peers import PEER_CONNECTED, PEER_DISCONNECTED, PEERS_METHODS
from node.rpc_api_seed import SEED_METHODS
from node.rpc_api_social import SOCIAL_METHODS
from node.rpc_api_storage import STORAGE_METHODS, STORE_BUSY_ERROR
from node.rpc_examples import (
    EXAMPLE_AUTHOR,
    EXAMPLE_DRAWING,
    EXAMPLE_DRAWING_RECORD,
    EXAMPLE_POEM,
    EXAMPLE_POEM_CONTENT,
    EXAMPLE_POEM_RECORD,
)
from node.rpc_params import (
    AddParams,
    AuthenticateParams,
    CatParams,
    ExportParams,
    FsckParams,
    GetParams,
    ImportParams,
    LineageParams,
    ListParams,
    NoParams,
    PinsParams,
    RecordParams,
    SubscribeParams,
    UnsubscribeParams,
)
from node.rpc_schema import (
    DATA_DIR,
    FILE_ERROR,
    INTEGRITY,
    INVALID_INPUT,
    MESSAGE_TOO_LARGE,
    NETWORK_ERROR,
    NOT_FOUND,
    TOO_MANY_CONNECTIONS,
    UNAUTHORIZED,
    ErrorSpec,
    EventSpec,
    Example,
    MethodSpec,
    ResultField,
)

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
        "A record, block or subscription is not known to this node (nor, for content and"
        " records, to the peers it asked).",
        '`{"what": "record" | "block" | "parent record" | …, "name": id}`; after a failed fetch'
        ' also `"reason": "no-providers" | "unavailable"`',
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
    ErrorSpec(
        NETWORK_ERROR,
        "network error",
        "A peer cannot be dialled, or the network is not running.",
        '`{"reason": "unreachable" | "offline" | …, "error": …}`',
    ),
    STORE_BUSY_ERROR,
)


# --- examples ------------------------------------------------------------------

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
        ResultField("profile", "string", '"seed" under `remixnet daemon --seed`, else "node".'),
        ResultField("store", "object", "Store statistics: records, blocks, bytes, pins."),
        ResultField(
            "traffic",
            "{bytes_in, bytes_out}",
            "Bytes received from and sent to peers (blocks and records) since the start.",
        ),
        ResultField("rpc", "object", "RPC server statistics: connections, requests, events."),
        ResultField("services", "object", "Statistics of each service, by service name."),
    ),
    example=Example(
        {},
        {
            "version": "0.1.0",
            "author": EXAMPLE_AUTHOR,
            "peer_id": EXAMPLE_AUTHOR,
            "pid": 4242,
            "data_dir": "/home/ada/.local/share/remixnet",
            "rpc_socket": "/home/ada/.local/share/remixnet/rpc.sock",
            "rpc_tcp": None,
            "listen_addrs": [],
            "uptime_s": 12.5,
            "profile": "node",
            "store": {"records": 2, "blocks": 2, "block_bytes": 22, "pins": 2},
            "traffic": {"bytes_in": 0, "bytes_out": 0},
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
        {"id": EXAMPLE_POEM, "content": EXAMPLE_POEM_CONTENT, "size": 13},
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
        ResultField(
            "fetched",
            "object or null",
            "When blocks came from peers: blocks_fetched, bytes_fetched, blocks_present,"
            " bytes_present, duplicate_blocks, total_bytes, elapsed, bytes_by_peer,"
            " banned_peers, pinned; null when everything was local.",
        ),
    ),
    example=Example(
        {"cid": EXAMPLE_POEM, "path": "/home/ada/copy.txt"},
        {
            "content": EXAMPLE_POEM_CONTENT,
            "path": "/home/ada/copy.txt",
            "size": 13,
            "fetched": None,
        },
    ),
    errors=(NOT_FOUND, INTEGRITY, FILE_ERROR, INVALID_INPUT, NETWORK_ERROR),
    long_running=True,
    notes=(
        "Blocks missing here are fetched from peers first when the network runs (a record"
        " id not held here is fetched too, then its content from its author and others);"
        " progress then counts the content's bytes fetched or already present."
    ),
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
        {"cid": EXAMPLE_POEM, "max_bytes": 4},
        {
            "content": EXAMPLE_POEM_CONTENT,
            "offset": 0,
            "data": "c25vdw==",
            "bytes": 4,
            "eof": False,
        },
    ),
    errors=(NOT_FOUND, INTEGRITY, INVALID_INPUT, NETWORK_ERROR),
    notes=(
        "Content missing here is fetched from peers first (not pinned) when the network runs."
        " The slice is found by the sizes the file's DAG records, so a slice costs the same"
        " wherever it is: a client can read a large file slice by slice, and may pipeline the"
        " requests on one connection (`remixnet cat` keeps 4 slices of 1 MiB in flight)."
        " `content.get` writes a whole file faster."
    ),
)

CAR_EXPORT: Final = MethodSpec(
    name="car.export",
    params=ExportParams,
    summary="Write a record, its ancestors' records and all their content to a CARv1 file.",
    result=(
        ResultField("root", "CID", "The record id, the CAR's single root."),
        ResultField("path", "string", "The file written."),
        ResultField("blocks", "integer", "Blocks written (records and content)."),
    ),
    example=Example(
        {"id": EXAMPLE_POEM, "path": "/home/ada/poem.car"},
        {"root": EXAMPLE_POEM, "path": "/home/ada/poem.car", "blocks": 2},
    ),
    errors=(NOT_FOUND, INTEGRITY, FILE_ERROR),
    long_running=True,
    notes="Progress counts content bytes written; the total is not known in advance.",
)

CAR_IMPORT: Final = MethodSpec(
    name="car.import",
    params=ImportParams,
    summary="Import a CARv1 file, verifying every block and record; pin complete content.",
    result=(
        ResultField("roots", "[CID]", "The roots the CAR's header names."),
        ResultField("records", "integer", "Records in the CAR (each verified)."),
        ResultField("blocks", "integer", "Blocks in the CAR, records included."),
        ResultField(
            "incomplete",
            "[CID]",
            "Content roots of imported works whose blocks the CAR and this node do not all"
            " hold (a CAR cut short); not pinned.",
        ),
    ),
    example=Example(
        {"path": "/home/ada/poem.car"},
        {"roots": [EXAMPLE_POEM], "records": 1, "blocks": 2, "incomplete": []},
    ),
    errors=(FILE_ERROR, INVALID_INPUT, INTEGRITY),
    long_running=True,
    notes=(
        "Emits `record.added` (origin `import`) for each record this node did not hold."
        " Stops at the first block that fails verification, which is never stored."
        " Progress counts bytes read from the file."
    ),
)

RECORDS_GET: Final = MethodSpec(
    name="records.get",
    params=RecordParams,
    summary="One record, and the records that remix it.",
    result=(
        ResultField("record", "record", "The record view (see Records)."),
        ResultField("remixed_by", "[CID]", "Ids of the records naming it as a parent."),
    ),
    example=Example(
        {"id": EXAMPLE_POEM}, {"record": EXAMPLE_POEM_RECORD, "remixed_by": [EXAMPLE_DRAWING]}
    ),
    errors=(NOT_FOUND, NETWORK_ERROR),
    notes="A record not held here is fetched from peers, verified and stored when the network"
    " runs.",
)

RECORDS_LIST: Final = MethodSpec(
    name="records.list",
    params=ListParams,
    summary="Records in the store matching every filter given, newest first.",
    result=(ResultField("records", _RECORD_LIST, _RECORDS_DOC),),
    example=Example({"tag": "poetry", "limit": 10}, {"records": [EXAMPLE_POEM_RECORD]}),
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
        {"id": EXAMPLE_DRAWING},
        {
            "root": EXAMPLE_DRAWING,
            "records": [EXAMPLE_POEM_RECORD],
            "missing": [],
            "truncated": False,
        },
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
        {"id": EXAMPLE_POEM, "depth": 1},
        {"root": EXAMPLE_POEM, "records": [EXAMPLE_DRAWING_RECORD], "truncated": False},
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
        {},
        {"pins": [{"cid": EXAMPLE_POEM_CONTENT, "reason": "own contribution"}], "truncated": False},
    ),
)

STORE_FSCK: Final = MethodSpec(
    name="store.fsck",
    params=FsckParams,
    summary="Verify every block against its CID and every record's signature.",
    result=(
        ResultField("clean", "boolean", "True when nothing is damaged."),
        ResultField("blocks_checked", "integer", "Pack entries read and hashed."),
        ResultField("records_checked", "integer", "Records decoded and verified."),
        ResultField("repaired", "boolean", "True when `repair` was asked."),
        ResultField("corrupt_blocks", "[string]", "CIDs (or `pack@offset`) whose bytes are bad."),
        ResultField("missing_blocks", "[CID]", "Indexed blocks whose bytes are gone."),
        ResultField("stray_files", "[string]", "Files in the block directory that are no pack."),
        ResultField("bad_records", "[CID]", "Records that no longer decode or verify."),
        ResultField(
            "unindexed_blocks",
            "[CID]",
            "Valid blocks an interrupted command left unindexed (not damage).",
        ),
        ResultField("uncommitted_bytes", "integer", "Bytes beyond the packs' committed ends."),
    ),
    example=Example(
        {"repair": False},
        {
            "clean": True,
            "blocks_checked": 2,
            "records_checked": 2,
            "repaired": False,
            "corrupt_blocks": [],
            "missing_blocks": [],
            "stray_files": [],
            "bad_records": [],
            "unindexed_blocks": [],
            "uncommitted_bytes": 0,
        },
    ),
    long_running=True,
    notes="Progress counts block bytes checked out of all the packs hold.",
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
    CAR_EXPORT,
    CAR_IMPORT,
    RECORDS_GET,
    RECORDS_LIST,
    LINEAGE_ANCESTORS,
    LINEAGE_DESCENDANTS,
    PINS_LIST,
    STORE_FSCK,
    EVENTS_SUBSCRIBE,
    EVENTS_UNSUBSCRIBE,
    RPC_AUTHENTICATE,
    *PEERS_METHODS,
    *SOCIAL_METHODS,
    *COLLAB_METHODS,
    *SEED_METHODS,
    *STORAGE_METHODS,
)

METHODS_BY_NAME: Final[dict[str, MethodSpec[Any]]] = {spec.name: spec for spec in METHODS}

# --- events --------------------------------------------------------------------

RECORD_ADDED: Final = EventSpec(
    name="record.added",
    summary="A record was stored (published here, imported, or received from a peer).",
    data=(
        ResultField("record", "record", "The record view (see Records)."),
        ResultField(
            "origin",
            "string",
            '"local" (published here), "import" (from a CAR file), "gossip" (announced'
            ' by a peer) or "sync" (from catch-up sync with a peer).',
        ),
    ),
    example={"record": EXAMPLE_POEM_RECORD, "origin": "local"},
)

PROGRESS_EVENT: Final = EventSpec(
    name="progress",
    summary="A long operation advanced (at most ~10 per second per operation).",
    data=(
        ResultField(
            "operation",
            "string",
            'The method: "content.add", "content.get", "car.export", "car.import", "store.fsck".',
        ),
        ResultField("target", "string", "The file, CID or data directory being processed."),
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

NOTIFICATION_EVENT: Final = EventSpec(
    name="notification",
    summary="Something happened to this node's records: a peer remixed one of them.",
    data=(
        ResultField("id", "integer", "The notification's number (see `notifications.list`)."),
        ResultField("kind", "string", '"remix".'),
        ResultField("record", "CID", "The record that caused it (the remix)."),
        ResultField("subject", "CID", "This node's record it concerns (the parent)."),
        ResultField("created_ms", "integer", "When this node learned of it."),
        ResultField("read", "boolean", "Whether it was marked read."),
    ),
    example={
        "id": 1,
        "kind": "remix",
        "record": EXAMPLE_DRAWING,
        "subject": EXAMPLE_POEM,
        "created_ms": 1_767_225_600_000,
        "read": False,
    },
)

EVENTS: Final[tuple[EventSpec, ...]] = (
    RECORD_ADDED,
    PROGRESS_EVENT,
    NOTIFICATION_EVENT,
    PEER_CONNECTED,
    PEER_DISCONNECTED,
)
EVENT_NAMES: Final = frozenset(event.name for event in EVENTS)
