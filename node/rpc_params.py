"""The params of the control interface's methods, one frozen dataclass per method.

Part of the definitions in ``node.rpc_api`` (which holds the methods, the
events and the error codes): each field is a ``param(kind, doc)``, so the
server and both clients validate a call with the same ``MethodSpec.parse_params``
and ``docs/rpc.md`` documents every param from the same line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from node.operations import DEFAULT_LICENSE
from node.rpc_schema import (
    AbsolutePath,
    AuthorText,
    Boolean,
    Choice,
    CidText,
    Integer,
    ListOf,
    Nullable,
    ParentRef,
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
MAX_LINEAGE_DEPTH: Final = 1000
MAX_LINEAGE_RECORDS: Final = 10_000

_ID = CidText()
_LINE_TAG = Text(MAX_TAG_CHARS, non_empty=True)
_PROGRESS = param(Boolean(), "Send `progress` notifications.")


@dataclass(frozen=True, slots=True)
class NoParams:
    """A method without params (shared by every such method)."""


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
    progress: bool = field(default=False, metadata=_PROGRESS)


@dataclass(frozen=True, slots=True)
class GetParams:
    cid: Cid = field(metadata=param(_ID, "A content CID, or a record id meaning its content."))
    path: Path = field(
        metadata=param(
            AbsolutePath(), "Where to write the file; replaced atomically when complete."
        )
    )
    progress: bool = field(default=False, metadata=_PROGRESS)
    pin: bool = field(
        default=True,
        metadata=param(
            Boolean(),
            "When the content is fetched from peers: pin it (keep it, provide it to others).",
        ),
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
    depth: int = field(
        default=50, metadata=param(Integer(1, MAX_LINEAGE_DEPTH), "Generations to follow.")
    )
    limit: int = field(
        default=1000,
        metadata=param(Integer(1, MAX_LINEAGE_RECORDS), "At most this many records."),
    )


@dataclass(frozen=True, slots=True)
class PinsParams:
    limit: int = field(
        default=10_000, metadata=param(Integer(1, 100_000), "At most this many pins.")
    )


@dataclass(frozen=True, slots=True)
class ExportParams:
    id: Cid = field(metadata=param(_ID, "A record id: the CAR's root."))
    path: Path = field(
        metadata=param(AbsolutePath(), "Where to write the CAR; replaced atomically when complete.")
    )
    progress: bool = field(default=False, metadata=_PROGRESS)


@dataclass(frozen=True, slots=True)
class ImportParams:
    path: Path = field(metadata=param(AbsolutePath(), "The CAR file (read by the daemon)."))
    progress: bool = field(default=False, metadata=_PROGRESS)


@dataclass(frozen=True, slots=True)
class FsckParams:
    repair: bool = field(
        default=False,
        metadata=param(Boolean(), "Remove what is damaged and index what is unindexed."),
    )
    progress: bool = field(default=False, metadata=_PROGRESS)


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


@dataclass(frozen=True, slots=True)
class ConnectParams:
    address: str = field(
        metadata=param(
            Text(1000, non_empty=True), "The peer's multiaddr, ending in `/p2p/<PeerID>`."
        )
    )
