"""The social methods: follows, the feed, profiles and notifications, as JSON.

Each ``*_result(store, identity, params)`` is blocking and returns the JSON
result of one method (``node.rpc_api``): the daemon serves it through
``trio.to_thread.run_sync`` (``SocialMethods``), and the CLI calls the same
function on the store when no daemon runs, so both give identical output.

Invariants: ``profiles.set`` stores a signed profile (and its avatar's
content, pinned) and, in the daemon, emits ``record.added`` (origin
``local``) so that gossip announces it; in the daemon, a collab followed or
unfollowed is stored first, then handed to ``SocialMethods.collab_followed``
(gossip's subscription to the collab's topic), before the call returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from node.datadir import Identity
from node.events import EventBus
from node.jsonrpc import RpcError
from node.operations import now_ms
from node.rpc_api import RECORD_ADDED
from node.rpc_api_social import (
    NOTIFICATIONS_LIST,
    PROFILES_GET,
    PROFILES_SET,
    SOCIAL_FEED,
    SOCIAL_FOLLOW,
    SOCIAL_FOLLOW_COLLAB,
    SOCIAL_FOLLOWING,
    SOCIAL_UNFOLLOW,
    SOCIAL_UNFOLLOW_COLLAB,
)
from node.rpc_params import NoParams
from node.rpc_params_social import (
    AuthorParams,
    CollabParams,
    FeedParams,
    NotificationsParams,
    ProfileParams,
)
from node.rpc_schema import INVALID_INPUT
from node.rpc_server import Call, MethodRegistry
from node.social import (
    feed,
    follow,
    follow_collab,
    followed_collabs,
    following,
    latest_profile,
    list_notifications,
    mark_read,
    profile_json,
    unfollow,
    unfollow_collab,
)
from node.store import Store
from node.transfer import add_file
from protocol.cid import Cid
from protocol.identity import author_id, public_key_of
from protocol.records import Collab, Profile, SignedRecord, sign_record, to_json

P = TypeVar("P")
AVATAR_PIN = "avatar"
CollabFollowed = Callable[[Cid, bool], Awaitable[None]]


def _author(identity: Identity, text: str) -> bytes:
    return identity.public_key if text == "me" else public_key_of(text)


def display_name(store: Store, author: bytes) -> str | None:
    profile = latest_profile(store, author)
    return profile.body.name if profile is not None and isinstance(profile.body, Profile) else None


def follow_result(store: Store, identity: Identity, params: AuthorParams) -> dict[str, object]:
    author = _author(identity, params.author)
    return {"author": author_id(author), "changed": follow(store, author)}


def unfollow_result(store: Store, identity: Identity, params: AuthorParams) -> dict[str, object]:
    author = _author(identity, params.author)
    return {"author": author_id(author), "changed": unfollow(store, author)}


def collab_title(store: Store, collab: Cid) -> str | None:
    """The title of ``collab`` if its record is held here. Raises ``RpcError`` for a non-collab."""
    if not store.has_record(collab):
        return None
    body = store.get_record(collab).body
    if not isinstance(body, Collab):
        raise RpcError(INVALID_INPUT, f"{collab} is not a collab")
    return body.title


def follow_collab_result(
    store: Store, identity: Identity, params: CollabParams
) -> dict[str, object]:
    collab_title(store, params.collab)  # refuses a record that is not a collab
    return {"collab": str(params.collab), "changed": follow_collab(store, params.collab)}


def unfollow_collab_result(
    store: Store, identity: Identity, params: CollabParams
) -> dict[str, object]:
    return {"collab": str(params.collab), "changed": unfollow_collab(store, params.collab)}


def following_result(store: Store, identity: Identity, params: NoParams) -> dict[str, object]:
    return {
        "following": [
            {"author": author_id(author), "name": display_name(store, author)}
            for author in following(store)
        ],
        "collabs": [
            {"collab": str(collab), "title": collab_title(store, collab)}
            for collab in followed_collabs(store)
        ],
    }


def feed_result(store: Store, identity: Identity, params: FeedParams) -> dict[str, object]:
    records = feed(store, identity.public_key, limit=params.limit)
    names: dict[bytes, str | None] = {}
    views = []
    for record in records:
        if record.author not in names:
            names[record.author] = display_name(store, record.author)
        views.append({**to_json(record), "author_name": names[record.author]})
    return {"records": views}


def sign_profile(store: Store, identity: Identity, params: ProfileParams) -> SignedRecord:
    """Add the avatar (if any), sign and store the profile. Raises ``RpcError``."""
    avatar = None
    if params.avatar is not None:
        if not params.avatar.is_file():
            raise RpcError(INVALID_INPUT, f"no such file: {params.avatar}")
        avatar = add_file(store, params.avatar).root
        store.pin(avatar, AVATAR_PIN)
    body = Profile(name=params.name, bio=params.bio, avatar=avatar)
    record = sign_record(body, private_key=identity.private_key, created_ms=now_ms())
    store.put_record(record)
    return record


def profile_set_result(record: SignedRecord) -> dict[str, object]:
    return {"profile": profile_json(record)}


def profile_get_result(store: Store, identity: Identity, params: AuthorParams) -> dict[str, object]:
    record = latest_profile(store, _author(identity, params.author))
    return {"profile": profile_json(record) if record is not None else None}


def notifications_result(
    store: Store, identity: Identity, params: NotificationsParams
) -> dict[str, object]:
    found = list_notifications(store, unread_only=params.unread, limit=params.limit)
    result: dict[str, object] = {"notifications": [n.to_json() for n in found]}
    if params.mark_read:
        mark_read(store, None)
    return result


OFFLINE: dict[str, Callable[[Store, Identity, Any], dict[str, object]]] = {
    SOCIAL_FOLLOW.name: follow_result,
    SOCIAL_UNFOLLOW.name: unfollow_result,
    SOCIAL_FOLLOW_COLLAB.name: follow_collab_result,
    SOCIAL_UNFOLLOW_COLLAB.name: unfollow_collab_result,
    SOCIAL_FOLLOWING.name: following_result,
    SOCIAL_FEED.name: feed_result,
    PROFILES_GET.name: profile_get_result,
    NOTIFICATIONS_LIST.name: notifications_result,
    PROFILES_SET.name: lambda store, identity, params: profile_set_result(
        sign_profile(store, identity, params)
    ),
}
"""Every social method as a blocking function of the store (the CLI's offline path)."""


class SocialMethods:
    """The daemon's handlers of the social methods."""

    def __init__(self, store: Store, identity: Identity, events: EventBus) -> None:
        self.store = store
        self.identity = identity
        self.events = events
        # Set by the gossip service: subscribes to (True) or leaves (False) a collab's topic.
        self.collab_followed: CollabFollowed | None = None

    def register(self, methods: MethodRegistry) -> None:
        methods.register(SOCIAL_FOLLOW, self._threaded(follow_result))
        methods.register(SOCIAL_UNFOLLOW, self._threaded(unfollow_result))
        methods.register(SOCIAL_FOLLOW_COLLAB, self.follow_collab)
        methods.register(SOCIAL_UNFOLLOW_COLLAB, self.unfollow_collab)
        methods.register(SOCIAL_FOLLOWING, self._threaded(following_result))
        methods.register(SOCIAL_FEED, self._threaded(feed_result))
        methods.register(PROFILES_GET, self._threaded(profile_get_result))
        methods.register(NOTIFICATIONS_LIST, self._threaded(notifications_result))
        methods.register(PROFILES_SET, self.profiles_set)

    def _threaded(
        self, function: Callable[[Store, Identity, P], dict[str, object]]
    ) -> Callable[[P, Call], Awaitable[dict[str, object]]]:
        async def handler(params: P, call: Call) -> dict[str, object]:
            return await trio.to_thread.run_sync(function, self.store, self.identity, params)

        return handler

    async def profiles_set(self, params: ProfileParams, call: Call) -> dict[str, object]:
        record = await trio.to_thread.run_sync(sign_profile, self.store, self.identity, params)
        self.events.publish(RECORD_ADDED.name, {"record": to_json(record), "origin": "local"})
        return profile_set_result(record)

    async def follow_collab(self, params: CollabParams, call: Call) -> dict[str, object]:
        result = await trio.to_thread.run_sync(
            follow_collab_result, self.store, self.identity, params
        )
        if self.collab_followed is not None:
            await self.collab_followed(params.collab, True)
        return result

    async def unfollow_collab(self, params: CollabParams, call: Call) -> dict[str, object]:
        result = await trio.to_thread.run_sync(
            unfollow_collab_result, self.store, self.identity, params
        )
        if self.collab_followed is not None:
            await self.collab_followed(params.collab, False)
        return result
