"""Example values of the JSON-RPC method specs, shared by every ``node.rpc_api*`` module.

They appear in docs/rpc.md (generated from the specs) and are checked there
against the real methods by the conformance tests, so they must be values a
node could really return.
"""

from __future__ import annotations

from typing import Final

EXAMPLE_AUTHOR: Final = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
EXAMPLE_POEM: Final = "bafkreiaqp66gkrph22bifwjr7h23m5ewybpmrrgaotwdmxdjsbc7eodhvq"
EXAMPLE_POEM_CONTENT: Final = "bafkreick266ofwkdsb7ya32466vyucf37fuurtn6r5ctlj6yvdk6vp2jda"
EXAMPLE_DRAWING: Final = "bafkreie52wwrqxd7z2ivb7xktetq2ze7ch5zidcmtfkqnhybgyogaumof4"
EXAMPLE_POEM_RECORD: Final[dict[str, object]] = {
    "id": EXAMPLE_POEM,
    "type": "contribution",
    "author": EXAMPLE_AUTHOR,
    "created_ms": 1795777393400,
    "title": "Winter poem",
    "content": EXAMPLE_POEM_CONTENT,
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
EXAMPLE_DRAWING_RECORD: Final[dict[str, object]] = {
    **EXAMPLE_POEM_RECORD,
    "id": EXAMPLE_DRAWING,
    "created_ms": 1795777393402,
    "title": "Snow drawing",
    "content": "bafkreiahl6hd6ix4wwjpdqt3bbrxltxkvtdwppkdurmdz76tq2c5hiozxm",
    "size": 9,
    "media_type": "image/png",
    "tags": [],
    "parents": [{"id": EXAMPLE_POEM, "weight": None}],
    "effective_upstream_bps": 5000,
}
