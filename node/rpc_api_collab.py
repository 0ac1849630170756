"""The collab methods of the control interface: collabs, productions, credits, acks, drawings.

Part of the definitions of ``node.rpc_api`` (which lists these in ``METHODS``);
their params are in ``node.rpc_params_collab`` and their handlers in
``node.rpc_methods_collab``. Every record view these methods return carries
``author_name``: the name in the author's newest profile held here, or null.
"""

from __future__ import annotations

from typing import Any, Final

from node.rpc_params_collab import (
    AckParams,
    CollabListParams,
    CollabOpenParams,
    CollabShowParams,
    CreditsParams,
    GraphParams,
    ProductionCreateParams,
    ProductionParams,
)
from node.rpc_schema import (
    INVALID_INPUT,
    NETWORK_ERROR,
    NOT_FOUND,
    Example,
    MethodSpec,
    ResultField,
)

# --- examples ------------------------------------------------------------------

_ANA = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
_BEN = "12D3KooWHxz6Bu9BLJ6tq1q7wmgQzvxmCiYmoxeMnFi9Dr8ysyuu"
_POEM = "bafkreiaqp66gkrph22bifwjr7h23m5ewybpmrrgaotwdmxdjsbc7eodhvq"
_SONG = "bafkreie52wwrqxd7z2ivb7xktetq2ze7ch5zidcmtfkqnhybgyogaumof4"
_COLLAB = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
_PRODUCTION = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
_ACK = "bafkreick266ofwkdsb7ya32466vyucf37fuurtn6r5ctlj6yvdk6vp2jda"

_COLLAB_RECORD: Final[dict[str, object]] = {
    "id": _COLLAB,
    "type": "collab",
    "author": _ANA,
    "created_ms": 1795777393400,
    "title": "Winter sounds",
    "brief": "Music for winter poems",
    "deadline_ms": None,
}
_SONG_RECORD: Final[dict[str, object]] = {
    "id": _SONG,
    "type": "contribution",
    "author": _ANA,
    "created_ms": 1795777393402,
    "title": "Snow song",
    "content": "bafkreiahl6hd6ix4wwjpdqt3bbrxltxkvtdwppkdurmdz76tq2c5hiozxm",
    "size": 9,
    "media_type": "audio/mpeg",
    "license": "CC-BY-SA-4.0",
    "description": "",
    "tags": [],
    "parents": [{"id": _POEM, "weight": None}],
    "upstream_bps": None,
    "collab": _COLLAB,
    "effective_upstream_bps": 5000,
}
_PRODUCTION_RECORD: Final[dict[str, object]] = {
    "id": _PRODUCTION,
    "type": "production",
    "author": _ANA,
    "created_ms": 1795777393500,
    "title": "Winter, the album",
    "credits": [{"contribution": _SONG, "role": "music", "share_bps": 10000}],
    "collab": _COLLAB,
    "description": "",
}
_ACK_RECORD: Final[dict[str, object]] = {
    "id": _ACK,
    "type": "ack",
    "author": _BEN,
    "created_ms": 1795777393600,
    "production": _PRODUCTION,
    "accept": True,
    "reason": "",
}
_NAMED = "record view (see Records) with `author_name`"

# --- methods -------------------------------------------------------------------

COLLABS_OPEN: Final = MethodSpec(
    name="collabs.open",
    params=CollabOpenParams,
    summary="Sign and publish a collab (a call for contributions) that this node directs.",
    result=(ResultField("collab", "record", "The new collab's record view (see Records)."),),
    example=Example(
        {"title": "Winter sounds", "brief": "Music for winter poems"},
        {"collab": _COLLAB_RECORD},
    ),
    errors=(INVALID_INPUT,),
    notes="Emits `record.added` (origin `local`), so gossip announces it at once."
    " Contributions answer it with `content.add`'s `collab`.",
)

COLLABS_LIST: Final = MethodSpec(
    name="collabs.list",
    params=CollabListParams,
    summary="The collabs this node holds, newest first.",
    result=(ResultField("collabs", f"[{_NAMED}]", "The collabs."),),
    example=Example({"limit": 10}, {"collabs": [{**_COLLAB_RECORD, "author_name": "Ana"}]}),
)

COLLABS_SHOW: Final = MethodSpec(
    name="collabs.show",
    params=CollabShowParams,
    summary="A collab, the contributions answering it with their remixes, and its productions.",
    result=(
        ResultField("collab", _NAMED, "The collab."),
        ResultField(
            "contributions",
            f"[{_NAMED} and `remixed_by`]",
            "Contributions naming the collab, oldest first; `remixed_by` lists the remixes of"
            " each held here (record views with `author_name`).",
        ),
        ResultField("productions", f"[{_NAMED}]", "Productions of the collab, oldest first."),
    ),
    example=Example(
        {"id": _COLLAB},
        {
            "collab": {**_COLLAB_RECORD, "author_name": "Ana"},
            "contributions": [{**_SONG_RECORD, "author_name": "Ana", "remixed_by": []}],
            "productions": [{**_PRODUCTION_RECORD, "author_name": "Ana"}],
        },
    ),
    errors=(NOT_FOUND, INVALID_INPUT),
    notes="A record that is not a collab is invalid input (reason `not-a-collab`).",
)

PRODUCTIONS_CREATE: Final = MethodSpec(
    name="productions.create",
    params=ProductionCreateParams,
    summary="Sign and publish a production crediting contributions this node holds.",
    result=(ResultField("production", "record", "The new production's record view."),),
    example=Example(
        {
            "title": "Winter, the album",
            "collab": _COLLAB,
            "credits": [{"contribution": _SONG, "role": "music", "share_bps": 10000}],
        },
        {"production": _PRODUCTION_RECORD},
    ),
    errors=(NOT_FOUND, INVALID_INPUT),
    notes="The shares must sum to 10000, every credited contribution (and the collab) must be"
    " held here, and only a collab's director may sign its productions (reasons in"
    " docs/credits.md). Emits `record.added` (origin `local`), so gossip announces it at once.",
)

PRODUCTIONS_SHOW: Final = MethodSpec(
    name="productions.show",
    params=ProductionParams,
    summary="A production, what it credits, and how many credited authors acknowledged it.",
    result=(
        ResultField("production", _NAMED, "The production."),
        ResultField(
            "credits",
            "[{contribution, role, share_bps, title}]",
            "Its credits; `title` is null for a contribution not held here.",
        ),
        ResultField(
            "acks",
            "{accepted, disputed, pending}",
            "How many authors of the split gave each answer (their latest ack).",
        ),
    ),
    example=Example(
        {"id": _PRODUCTION},
        {
            "production": {**_PRODUCTION_RECORD, "author_name": "Ana"},
            "credits": [
                {"contribution": _SONG, "role": "music", "share_bps": 10000, "title": "Snow song"}
            ],
            "acks": {"accepted": 1, "disputed": 0, "pending": 1},
        },
    ),
    errors=(NOT_FOUND, INVALID_INPUT),
)

_AUTHOR_SHARE = (
    "[{author, name, bps, percent, exact_bps, ack, ack_reason, ack_id,"
    " through: [{contribution, title, bps, exact_bps}]}]"
)

CREDITS_GET: Final = MethodSpec(
    name="credits.get",
    params=CreditsParams,
    summary="The credit split of a production per author, with each author's latest ack.",
    result=(
        ResultField("production", "CID", "The production."),
        ResultField("title", "string", "Its title."),
        ResultField("director", "PeerID", "Its author."),
        ResultField("director_name", "string or null", "The director's profile name."),
        ResultField("total_bps", "integer", "Always 10000."),
        ResultField(
            "authors",
            _AUTHOR_SHARE,
            "Each author's share rounded to basis points (largest remainder), the exact value"
            ' as a fraction ("7/3"), `ack` ("accepted" | "disputed" | "pending") and what'
            " it came through.",
        ),
        ResultField(
            "unresolved",
            "[{record, reason, bps, percent, exact_bps}]",
            'Credit reaching records not held here (reason "missing") or that are no'
            ' contribution ("not-a-contribution").',
        ),
        ResultField(
            "fetched",
            "{records, failed} or null",
            "With `fetch`: how many records came from peers, and the ids none of them had;"
            " null without.",
        ),
    ),
    example=Example(
        {"id": _PRODUCTION, "fetch": True},
        {
            "production": _PRODUCTION,
            "title": "Winter, the album",
            "director": _ANA,
            "director_name": "Ana",
            "total_bps": 10000,
            "authors": [
                {
                    "author": _ANA,
                    "name": "Ana",
                    "bps": 5000,
                    "percent": "50.00",
                    "exact_bps": "5000",
                    "ack": "pending",
                    "ack_reason": "",
                    "ack_id": None,
                    "through": [
                        {
                            "contribution": _SONG,
                            "title": "Snow song",
                            "bps": 5000,
                            "exact_bps": "5000",
                        }
                    ],
                },
                {
                    "author": _BEN,
                    "name": None,
                    "bps": 5000,
                    "percent": "50.00",
                    "exact_bps": "5000",
                    "ack": "accepted",
                    "ack_reason": "",
                    "ack_id": _ACK,
                    "through": [
                        {
                            "contribution": _POEM,
                            "title": "Winter poem",
                            "bps": 5000,
                            "exact_bps": "5000",
                        }
                    ],
                },
            ],
            "unresolved": [],
            "fetched": {"records": 1, "failed": []},
        },
    ),
    errors=(NOT_FOUND, INVALID_INPUT, NETWORK_ERROR),
    notes="With `fetch`, the production (if missing) and then, generation by generation, the"
    " ancestor records its credit reaches are fetched from peers, verified against their ids"
    " and stored (at most 10000 records, each given 20 s, 300 s in all); records no peer has stay"
    " unresolved. Fails with a network error when the network is not running.",
)

ACKS_PUBLISH: Final = MethodSpec(
    name="acks.publish",
    params=AckParams,
    summary="Sign and publish this node's answer to a production that credits it.",
    result=(ResultField("ack", "record", "The new ack's record view."),),
    example=Example({"production": _PRODUCTION, "accept": True}, {"ack": _ACK_RECORD}),
    errors=(NOT_FOUND, INVALID_INPUT),
    notes="Invalid input (reason `not-credited`) when the split computed here gives this node"
    " nothing; a dispute needs a reason. Emits `record.added` (origin `local`), so gossip"
    " announces it at once.",
)

LINEAGE_GRAPH: Final = MethodSpec(
    name="lineage.graph",
    params=GraphParams,
    summary="A drawing of the remix DAG around a record (SVG or Graphviz DOT), with credit flow.",
    result=(
        ResultField("format", "string", '"svg" or "dot".'),
        ResultField("text", "string", "The drawing (a standalone SVG document, or DOT text)."),
        ResultField("nodes", "integer", "Records drawn."),
        ResultField("edges", "integer", "Arrows drawn."),
    ),
    example=Example(
        {"id": _PRODUCTION, "format": "dot"},
        {"format": "dot", "text": "digraph lineage {\n…}\n", "nodes": 3, "edges": 2},
    ),
    errors=(NOT_FOUND, INVALID_INPUT),
    notes="A contribution brings its ancestors and remixes (`depth` generations each way); a"
    " production brings what it credits and their ancestors, and its credit flow. More than"
    " `max_nodes` records is invalid input (reason `graph-too-large`).",
)

COLLAB_METHODS: Final[tuple[MethodSpec[Any], ...]] = (
    COLLABS_OPEN,
    COLLABS_LIST,
    COLLABS_SHOW,
    PRODUCTIONS_CREATE,
    PRODUCTIONS_SHOW,
    CREDITS_GET,
    ACKS_PUBLISH,
    LINEAGE_GRAPH,
)
