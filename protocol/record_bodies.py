"""Record bodies: the five kinds of document artists publish, and what values they may hold.

This module owns the body types (``Profile``, ``Contribution`` with its
``Parent`` list, ``Collab``, ``Production`` with its ``Credit`` list,
``Ack``), their field limits (``MAX_*``, ``TOTAL_BPS``) and the checks their
constructors run. ``protocol.records`` encodes, signs and identifies them,
and re-exports every name here: import them from there.

Invariants:

* A body's constructor validates it completely (types exact: a bool is not
  an int), so a body that exists is valid; every failure is an
  ``InvalidRecord`` with a stable ``reason``.
* Text is checked by code point: single-line fields have no control
  characters and no outer spaces; free text allows only tab and newline
  among controls; no field holds a lone surrogate (it could not be UTF-8).

Sans-IO: values in, values out.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from protocol.cid import RAW, Cid
from protocol.errors import RemoteProtocolError

MAX_SAFE_INTEGER: Final = 2**53 - 1  # also exact in JSON/JavaScript numbers
TOTAL_BPS: Final = 10_000
DEFAULT_UPSTREAM_BPS: Final = 5_000

MAX_NAME_CHARS: Final = 100
MAX_BIO_CHARS: Final = 2_000
MAX_TITLE_CHARS: Final = 200
MAX_DESCRIPTION_CHARS: Final = 4_000
MAX_TAG_CHARS: Final = 64
MAX_TAGS: Final = 32
MAX_MEDIA_TYPE_CHARS: Final = 127
MAX_LICENSE_CHARS: Final = 128
MAX_PARENTS: Final = 64
MAX_WEIGHT: Final = 1_000_000
MAX_CREDITS: Final = 1_000
MAX_ROLE_CHARS: Final = 64
MAX_REASON_CHARS: Final = 2_000


class InvalidRecord(RemoteProtocolError):
    """A record (bytes or body values) that is not valid.

    ``reason`` is one of: ``too-large``, ``not-msgpack``, ``non-canonical``,
    ``unknown-version``, ``unknown-type``, ``missing-field``, ``extra-field``,
    ``wrong-type``, ``oversized-field``, ``invalid-value``, ``bad-signature``,
    ``wrong-id``.
    """


class RecordType(enum.StrEnum):
    PROFILE = "profile"
    CONTRIBUTION = "contribution"
    COLLAB = "collab"
    PRODUCTION = "production"
    ACK = "ack"


# --- value checks shared by the body constructors --------------------------

# Control characters (C0, DEL, C1) can drive terminals; lone surrogates cannot
# be encoded as UTF-8. Single-line text also excludes tab and newline.
_LINE_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TEXT_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*\Z")
_LICENSE = re.compile(r"[A-Za-z0-9.+:()-]+(?: [A-Za-z0-9.+:()-]+)*\Z")


def _check_str(
    value: object, name: str, max_chars: int, valid: Callable[[str], object], rule: str
) -> None:
    if type(value) is not str:
        raise InvalidRecord("wrong-type", f"{name} must be a string")
    if len(value) > max_chars:
        raise InvalidRecord("oversized-field", f"{name} is longer than {max_chars} characters")
    if not valid(value):
        raise InvalidRecord("invalid-value", f"{name} must be {rule}")


def _is_line(text: str) -> bool:
    if not text or text[0] == " " or text[-1] == " ":
        return False
    return not _LINE_FORBIDDEN.search(text)


def _is_text(text: str) -> bool:
    return not _TEXT_FORBIDDEN.search(text)


def _check_line(value: object, name: str, max_chars: int) -> None:
    """Single-line text: 1..max_chars code points, no controls, no outer spaces."""
    _check_str(value, name, max_chars, _is_line, "one non-empty line without outer spaces")


def _check_text(value: object, name: str, max_chars: int) -> None:
    """Free text: 0..max_chars code points; tab and newline allowed, other controls not."""
    _check_str(value, name, max_chars, _is_text, "free of control characters")


def check_int(value: object, name: str, low: int, high: int) -> None:
    """Raise ``InvalidRecord`` unless ``value`` is an int in low..high (bools are not)."""
    if type(value) is not int:  # not isinstance: bool is an int in Python
        raise InvalidRecord("wrong-type", f"{name} must be an integer")
    if not low <= value <= high:
        raise InvalidRecord("invalid-value", f"{name} must be in {low}..{high}")


def _check_cid(value: object, name: str, *, record: bool) -> None:
    """A content CID (raw or dag-pb), or with ``record`` a record id (raw)."""
    if not isinstance(value, Cid):
        raise InvalidRecord("wrong-type", f"{name} must be a CID")
    if record and value.codec != RAW:
        raise InvalidRecord("invalid-value", f"{name} must be a record id (raw CID)")


def _check_tuple(value: object, name: str, max_items: int, item_type: type) -> None:
    if type(value) is not tuple or not all(type(item) is item_type for item in value):
        raise InvalidRecord("wrong-type", f"{name} must be a tuple of {item_type.__name__}")
    if len(value) > max_items:
        raise InvalidRecord("oversized-field", f"{name} has more than {max_items} items")


# --- bodies ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """An artist's public profile; the newest one by ``created_ms`` wins."""

    name: str
    bio: str = ""
    avatar: Cid | None = None  # content CID of an image

    def __post_init__(self) -> None:
        _check_line(self.name, "name", MAX_NAME_CHARS)
        _check_text(self.bio, "bio", MAX_BIO_CHARS)
        if self.avatar is not None:
            _check_cid(self.avatar, "avatar", record=False)


@dataclass(frozen=True, slots=True)
class Parent:
    """A contribution remixed by another; ``weight`` is relative among parents."""

    record_id: Cid
    weight: int | None = None

    def __post_init__(self) -> None:
        _check_cid(self.record_id, "parent id", record=True)
        if self.weight is not None:
            check_int(self.weight, "parent weight", 1, MAX_WEIGHT)


@dataclass(frozen=True, slots=True)
class Contribution:
    """A published work, possibly a remix of ``parents``.

    ``upstream_bps`` is the share passed on to the parents; ``None`` means the
    default (``effective_upstream_bps``). Without parents only 0 may be declared.
    """

    title: str
    content: Cid
    size: int
    media_type: str
    license: str
    description: str = ""
    tags: tuple[str, ...] = ()
    parents: tuple[Parent, ...] = ()
    upstream_bps: int | None = None
    collab: Cid | None = None

    def __post_init__(self) -> None:
        _check_line(self.title, "title", MAX_TITLE_CHARS)
        _check_cid(self.content, "content", record=False)
        check_int(self.size, "size", 0, MAX_SAFE_INTEGER)
        _check_str(
            self.media_type, "media_type", MAX_MEDIA_TYPE_CHARS, _MEDIA_TYPE.match, "type/subtype"
        )
        _check_str(self.license, "license", MAX_LICENSE_CHARS, _LICENSE.match, "SPDX expression")
        _check_text(self.description, "description", MAX_DESCRIPTION_CHARS)
        _check_tuple(self.tags, "tags", MAX_TAGS, str)
        for tag in self.tags:
            _check_line(tag, "tag", MAX_TAG_CHARS)
        if len(set(self.tags)) != len(self.tags):
            raise InvalidRecord("invalid-value", "duplicate tag")
        _check_tuple(self.parents, "parents", MAX_PARENTS, Parent)
        if len({parent.record_id for parent in self.parents}) != len(self.parents):
            raise InvalidRecord("invalid-value", "duplicate parent")
        weighted = sum(parent.weight is not None for parent in self.parents)
        if weighted not in (0, len(self.parents)):
            raise InvalidRecord("invalid-value", "either all parents have a weight or none")
        if self.upstream_bps is not None:
            check_int(self.upstream_bps, "upstream_bps", 0, TOTAL_BPS)
            if not self.parents and self.upstream_bps != 0:
                raise InvalidRecord("invalid-value", "upstream_bps without parents must be 0")
        if self.collab is not None:
            _check_cid(self.collab, "collab", record=True)

    @property
    def effective_upstream_bps(self) -> int:
        """The declared ``upstream_bps``, else 5000 with parents and 0 without."""
        if self.upstream_bps is not None:
            return self.upstream_bps
        return DEFAULT_UPSTREAM_BPS if self.parents else 0


@dataclass(frozen=True, slots=True)
class Collab:
    """A call for contributions; its director is the record's author."""

    title: str
    brief: str = ""
    deadline_ms: int | None = None

    def __post_init__(self) -> None:
        _check_line(self.title, "title", MAX_TITLE_CHARS)
        _check_text(self.brief, "brief", MAX_DESCRIPTION_CHARS)
        if self.deadline_ms is not None:
            check_int(self.deadline_ms, "deadline_ms", 0, MAX_SAFE_INTEGER)


@dataclass(frozen=True, slots=True)
class Credit:
    """One contribution used in a production, with its role and share."""

    contribution: Cid
    role: str
    share_bps: int

    def __post_init__(self) -> None:
        _check_cid(self.contribution, "credit contribution", record=True)
        _check_line(self.role, "role", MAX_ROLE_CHARS)
        check_int(self.share_bps, "share_bps", 1, TOTAL_BPS)


@dataclass(frozen=True, slots=True)
class Production:
    """A finished work assembled by its director (the author) from contributions."""

    title: str
    credits: tuple[Credit, ...]
    collab: Cid | None = None
    description: str = ""

    def __post_init__(self) -> None:
        _check_line(self.title, "title", MAX_TITLE_CHARS)
        _check_tuple(self.credits, "credits", MAX_CREDITS, Credit)
        if not self.credits:
            raise InvalidRecord("invalid-value", "a production needs at least one credit")
        if len({credit.contribution for credit in self.credits}) != len(self.credits):
            raise InvalidRecord("invalid-value", "duplicate credited contribution")
        if sum(credit.share_bps for credit in self.credits) != TOTAL_BPS:
            raise InvalidRecord("invalid-value", f"credit shares must sum to {TOTAL_BPS}")
        if self.collab is not None:
            _check_cid(self.collab, "collab", record=True)
        _check_text(self.description, "description", MAX_DESCRIPTION_CHARS)


@dataclass(frozen=True, slots=True)
class Ack:
    """A credited artist's answer to a production; a refusal must say why."""

    production: Cid
    accept: bool
    reason: str = ""

    def __post_init__(self) -> None:
        _check_cid(self.production, "production", record=True)
        if type(self.accept) is not bool:
            raise InvalidRecord("wrong-type", "accept must be a boolean")
        _check_text(self.reason, "reason", MAX_REASON_CHARS)
        if not self.accept and not self.reason.strip(" \t\n"):
            raise InvalidRecord("invalid-value", "a refusal needs a reason")


Body: TypeAlias = Profile | Contribution | Collab | Production | Ack
