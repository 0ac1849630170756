"""The seeding methods (``seed.*``): their params and specs, served by ``node.seed``.

Kept apart from ``node.rpc_api`` (which lists them in ``METHODS``) only to keep
that module small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from node.config import SEED_MODES
from node.rpc_examples import EXAMPLE_AUTHOR
from node.rpc_schema import (
    INVALID_INPUT,
    AuthorText,
    Choice,
    Example,
    Integer,
    MethodSpec,
    Nullable,
    ResultField,
    param,
)

BLOCK_KINDS: Final = ("author", "peer")


@dataclass(frozen=True, slots=True)
class SeedSetParams:
    mode: str | None = field(
        default=None,
        metadata=param(Nullable(Choice(SEED_MODES)), "What to replicate; null: unchanged."),
    )
    max_content_bytes: int | None = field(
        default=None,
        metadata=param(
            Nullable(Integer(0, 1 << 50)),
            "Largest content replicated per record, in bytes (0: no limit); null: unchanged.",
        ),
    )


@dataclass(frozen=True, slots=True)
class SeedBlockParams:
    kind: str = field(metadata=param(Choice(BLOCK_KINDS), "What to block: an author or a peer."))
    id: str = field(metadata=param(AuthorText(), "The author's or peer's PeerID."))


@dataclass(frozen=True, slots=True)
class SeedShowParams:
    pass


_POLICY = {
    "mode": "followed",
    "max_content_bytes": 0,
    "block_authors": [],
    "block_peers": [],
}
_POLICY_FIELDS = (
    ResultField(
        "mode",
        "string",
        '"off", "authors", "collabs", "followed" (authors and collabs) or "everything".',
    ),
    ResultField("max_content_bytes", "integer", "Largest content replicated (0: no limit)."),
    ResultField("block_authors", "[PeerID]", "Blocked authors."),
    ResultField("block_peers", "[PeerID]", "Blocked peers."),
)

SEED_SHOW: Final = MethodSpec(
    name="seed.show",
    params=SeedShowParams,
    summary="The seeding policies in force, and the addresses others bootstrap from.",
    result=(
        *_POLICY_FIELDS,
        ResultField(
            "bootstrap_addrs",
            "[multiaddr]",
            "This node's listen addresses, for others' `[network] bootstrap` (an unspecified"
            " 0.0.0.0 is to be replaced by the public address).",
        ),
    ),
    example=Example(
        {}, {**_POLICY, "bootstrap_addrs": [f"/ip4/203.0.113.7/tcp/4747/p2p/{EXAMPLE_AUTHOR}"]}
    ),
)

SEED_SET: Final = MethodSpec(
    name="seed.set",
    params=SeedSetParams,
    summary="Change the seeding policies; live, and written to config.toml.",
    result=_POLICY_FIELDS,
    example=Example({"mode": "followed"}, _POLICY),
    errors=(INVALID_INPUT,),
    notes="Replication starts at once for what the new policy covers.",
)

SEED_BLOCK: Final = MethodSpec(
    name="seed.block",
    params=SeedBlockParams,
    summary="Block an author (records neither stored, forwarded nor served) or a peer.",
    result=(*_POLICY_FIELDS, ResultField("changed", "boolean", "False when already blocked.")),
    example=Example(
        {"kind": "author", "id": EXAMPLE_AUTHOR},
        {**_POLICY, "block_authors": [EXAMPLE_AUTHOR], "changed": True},
    ),
    errors=(INVALID_INPUT,),
    notes="Blocking an author deletes their records held here and unpins their content"
    " (garbage collection then frees it; it is refused to peers meanwhile); blocking a peer"
    " disconnects it.",
)

SEED_UNBLOCK: Final = MethodSpec(
    name="seed.unblock",
    params=SeedBlockParams,
    summary="Lift a block on an author or a peer.",
    result=(*_POLICY_FIELDS, ResultField("changed", "boolean", "False when it was not blocked.")),
    example=Example({"kind": "peer", "id": EXAMPLE_AUTHOR}, {**_POLICY, "changed": True}),
    errors=(INVALID_INPUT,),
)

SEED_METHODS: Final = (SEED_SHOW, SEED_SET, SEED_BLOCK, SEED_UNBLOCK)
