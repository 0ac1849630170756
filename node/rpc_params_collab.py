"""Params of the collab methods (``collabs.*``, ``productions.*``, ``credits.get``,
``acks.publish``, ``lineage.graph``), one frozen dataclass per method.

Kept apart from ``node.rpc_params`` to keep that module small; the methods
are defined in ``node.rpc_api_collab``. ``CreditRef`` is the one kind of
param only these methods take: a credit of a production, checked as the
record's own ``Credit`` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from node.rpc_schema import (
    Boolean,
    Choice,
    CidText,
    Integer,
    ListOf,
    Nullable,
    ParamError,
    Text,
    param,
)
from protocol.cid import Cid
from protocol.errors import ProtocolError
from protocol.records import (
    MAX_CREDITS,
    MAX_DESCRIPTION_CHARS,
    MAX_REASON_CHARS,
    MAX_SAFE_INTEGER,
    MAX_TITLE_CHARS,
    Credit,
)

MAX_COLLABS_LISTED: Final = 10_000
MAX_GRAPH_DEPTH: Final = 1000
# A drawing of more boxes than this is unreadable; it also bounds the size of
# the text a ``lineage.graph`` answer carries (a few MB at most).
MAX_GRAPH_NODES: Final = 5000
DEFAULT_GRAPH_NODES: Final = 400
GRAPH_FORMATS: Final = ("svg", "dot")

_ID = CidText()


@dataclass(frozen=True, slots=True)
class CreditRef:
    """``{"contribution": CID, "role": string, "share_bps": integer}``: one credit."""

    @property
    def name(self) -> str:
        return '{"contribution": CID, "role": string, "share_bps": integer}'

    def convert(self, value: object) -> Credit:
        if not isinstance(value, dict) or value.keys() != {"contribution", "role", "share_bps"}:
            raise ParamError(f"must be {self.name}")
        contribution = _ID.convert(value["contribution"])
        role = value["role"]
        share = value["share_bps"]
        if not isinstance(role, str):
            raise ParamError("role must be a string")
        if not isinstance(share, int) or isinstance(share, bool):
            raise ParamError("share_bps must be an integer")
        try:
            return Credit(contribution, role, share)
        except ProtocolError as error:
            raise ParamError(str(error)) from None


@dataclass(frozen=True, slots=True)
class CollabOpenParams:
    title: str = field(metadata=param(Text(MAX_TITLE_CHARS, non_empty=True), "The collab's title."))
    brief: str = field(
        default="", metadata=param(Text(MAX_DESCRIPTION_CHARS), "What artists are asked for.")
    )
    deadline_ms: int | None = field(
        default=None,
        metadata=param(Nullable(Integer(0, MAX_SAFE_INTEGER)), "Deadline, Unix time in ms."),
    )


@dataclass(frozen=True, slots=True)
class CollabListParams:
    limit: int = field(
        default=100,
        metadata=param(Integer(1, MAX_COLLABS_LISTED), "Collabs at most, newest first."),
    )


@dataclass(frozen=True, slots=True)
class CollabShowParams:
    id: Cid = field(metadata=param(_ID, "The collab's record id."))


@dataclass(frozen=True, slots=True)
class ProductionCreateParams:
    title: str = field(
        metadata=param(Text(MAX_TITLE_CHARS, non_empty=True), "The production's title.")
    )
    credits: tuple[Credit, ...] = field(
        metadata=param(
            ListOf(CreditRef(), MAX_CREDITS),
            "The contributions used, their roles and shares (basis points summing to 10000).",
        )
    )
    collab: Cid | None = field(
        default=None,
        metadata=param(Nullable(_ID), "The collab it comes from (this node must direct it)."),
    )
    description: str = field(default="", metadata=param(Text(MAX_DESCRIPTION_CHARS), "Free text."))


@dataclass(frozen=True, slots=True)
class ProductionParams:
    id: Cid = field(metadata=param(_ID, "The production's record id."))


@dataclass(frozen=True, slots=True)
class CreditsParams:
    id: Cid = field(metadata=param(_ID, "The production's record id."))
    fetch: bool = field(
        default=False,
        metadata=param(
            Boolean(),
            "First fetch from peers the production and the ancestor records its credit"
            " reaches that this node lacks.",
        ),
    )


@dataclass(frozen=True, slots=True)
class AckParams:
    production: Cid = field(metadata=param(_ID, "The production acknowledged."))
    accept: bool = field(metadata=param(Boolean(), "True to accept the credit, false to dispute."))
    reason: str = field(
        default="", metadata=param(Text(MAX_REASON_CHARS), "Why (required to dispute).")
    )


@dataclass(frozen=True, slots=True)
class GraphParams:
    id: Cid = field(metadata=param(_ID, "A contribution or production to draw around."))
    format: str = field(
        default="svg", metadata=param(Choice(GRAPH_FORMATS), "The drawing's format.")
    )
    production: Cid | None = field(
        default=None,
        metadata=param(Nullable(_ID), "Show this production's credit flow."),
    )
    depth: int = field(
        default=50, metadata=param(Integer(1, MAX_GRAPH_DEPTH), "Generations to follow each way.")
    )
    max_nodes: int = field(
        default=DEFAULT_GRAPH_NODES,
        metadata=param(Integer(2, MAX_GRAPH_NODES), "Fail rather than draw more records."),
    )
