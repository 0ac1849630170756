"""Params of the social methods (``social.*``, ``profiles.*``, ``notifications.list``).

Kept apart from ``node.rpc_params`` only to keep that module small; the
methods themselves are defined in ``node.rpc_api_social``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from node.rpc_schema import (
    AbsolutePath,
    AuthorText,
    Boolean,
    CidText,
    Integer,
    Nullable,
    Text,
    param,
)
from protocol.cid import Cid
from protocol.records import MAX_BIO_CHARS, MAX_NAME_CHARS

MAX_FEED: Final = 1000


@dataclass(frozen=True, slots=True)
class AuthorParams:
    author: str = field(metadata=param(AuthorText(), "An author's PeerID."))


@dataclass(frozen=True, slots=True)
class CollabParams:
    collab: Cid = field(metadata=param(CidText(), "A collab's record id."))


@dataclass(frozen=True, slots=True)
class FeedParams:
    limit: int = field(
        default=50, metadata=param(Integer(1, MAX_FEED), "Records at most, newest first.")
    )


@dataclass(frozen=True, slots=True)
class ProfileParams:
    name: str = field(metadata=param(Text(MAX_NAME_CHARS, non_empty=True), "Display name."))
    bio: str = field(default="", metadata=param(Text(MAX_BIO_CHARS), "Free text."))
    avatar: Path | None = field(
        default=None,
        metadata=param(Nullable(AbsolutePath()), "An image file to add as the avatar."),
    )


@dataclass(frozen=True, slots=True)
class NotificationsParams:
    unread: bool = field(default=False, metadata=param(Boolean(), "Only unread ones."))
    mark_read: bool = field(
        default=False, metadata=param(Boolean(), "Mark every notification read afterwards.")
    )
    limit: int = field(
        default=50, metadata=param(Integer(1, MAX_FEED), "Notifications at most, newest first.")
    )
