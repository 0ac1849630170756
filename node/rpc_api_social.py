"""The social methods of the control interface: follows, the feed, profiles, notifications.

Part of the definitions of ``node.rpc_api`` (which lists these in ``METHODS``);
their params are in ``node.rpc_params_social`` and their handlers in
``node.social_methods``.
"""

from __future__ import annotations

from typing import Any, Final

from node.rpc_examples import EXAMPLE_AUTHOR, EXAMPLE_DRAWING, EXAMPLE_POEM, EXAMPLE_POEM_RECORD
from node.rpc_params import NoParams
from node.rpc_params_social import (
    AuthorParams,
    CollabParams,
    FeedParams,
    NotificationsParams,
    ProfileParams,
)
from node.rpc_schema import INVALID_INPUT, Example, MethodSpec, ResultField

# --- examples ------------------------------------------------------------------

_PROFILE_DOC = "{author, name, bio, avatar (content CID or null), id (record), created_ms}"

# --- methods -------------------------------------------------------------------

SOCIAL_FOLLOW: Final = MethodSpec(
    name="social.follow",
    params=AuthorParams,
    summary="Follow an author: their records appear in `social.feed`.",
    result=(
        ResultField("author", "PeerID", "The author."),
        ResultField("changed", "boolean", "False when already followed."),
    ),
    example=Example({"author": EXAMPLE_AUTHOR}, {"author": EXAMPLE_AUTHOR, "changed": True}),
)

SOCIAL_UNFOLLOW: Final = MethodSpec(
    name="social.unfollow",
    params=AuthorParams,
    summary="Stop following an author.",
    result=(
        ResultField("author", "PeerID", "The author."),
        ResultField("changed", "boolean", "False when not followed."),
    ),
    example=Example({"author": EXAMPLE_AUTHOR}, {"author": EXAMPLE_AUTHOR, "changed": True}),
)

SOCIAL_FOLLOW_COLLAB: Final = MethodSpec(
    name="social.follow_collab",
    params=CollabParams,
    summary="Follow a collab: the node subscribes to its topic and stores what answers it.",
    result=(
        ResultField("collab", "CID", "The collab's record id."),
        ResultField("changed", "boolean", "False when already followed."),
    ),
    example=Example({"collab": EXAMPLE_POEM}, {"collab": EXAMPLE_POEM, "changed": True}),
    errors=(INVALID_INPUT,),
    notes="The collab record need not be held here yet; if it is held, it must be a collab"
    " (else `-32001`). A running daemon subscribes to the collab's gossip topic at once, and"
    " at every start.",
)

SOCIAL_UNFOLLOW_COLLAB: Final = MethodSpec(
    name="social.unfollow_collab",
    params=CollabParams,
    summary="Stop following a collab (and unsubscribe from its topic).",
    result=(
        ResultField("collab", "CID", "The collab's record id."),
        ResultField("changed", "boolean", "False when not followed."),
    ),
    example=Example({"collab": EXAMPLE_POEM}, {"collab": EXAMPLE_POEM, "changed": True}),
)

SOCIAL_FOLLOWING: Final = MethodSpec(
    name="social.following",
    params=NoParams,
    summary="The authors and collabs this node follows, in the order they were followed.",
    result=(
        ResultField(
            "following", "[{author, name}]", "Each author and the name in their profile, or null."
        ),
        ResultField(
            "collabs",
            "[{collab, title}]",
            "Each followed collab and its title, or null when its record is not held here.",
        ),
    ),
    example=Example(
        {},
        {
            "following": [{"author": EXAMPLE_AUTHOR, "name": "Ada"}],
            "collabs": [{"collab": EXAMPLE_POEM, "title": "Winter sounds"}],
        },
    ),
)

SOCIAL_FEED: Final = MethodSpec(
    name="social.feed",
    params=FeedParams,
    summary="Recent records by followed authors and remixes of this node's works.",
    result=(
        ResultField(
            "records",
            "[record]",
            "Record views (see Records) with `author_name` (from profiles, or null), newest first.",
        ),
    ),
    example=Example({"limit": 10}, {"records": [{**EXAMPLE_POEM_RECORD, "author_name": "Ada"}]}),
)

PROFILES_SET: Final = MethodSpec(
    name="profiles.set",
    params=ProfileParams,
    summary="Sign and publish this node's profile (the newest one replaces the others).",
    result=(ResultField("profile", "profile", _PROFILE_DOC),),
    example=Example(
        {"name": "Ada", "bio": "Poems."},
        {
            "profile": {
                "author": EXAMPLE_AUTHOR,
                "name": "Ada",
                "bio": "Poems.",
                "avatar": None,
                "id": EXAMPLE_DRAWING,
                "created_ms": 1_767_225_600_000,
            }
        },
    ),
    errors=(INVALID_INPUT,),
    notes="Emits `record.added` (origin `local`); the avatar file is added and pinned.",
)

PROFILES_GET: Final = MethodSpec(
    name="profiles.get",
    params=AuthorParams,
    summary="An author's newest profile held here.",
    result=(ResultField("profile", "profile or null", _PROFILE_DOC + "; null when none is held."),),
    example=Example({"author": EXAMPLE_AUTHOR}, {"profile": None}),
)

NOTIFICATIONS_LIST: Final = MethodSpec(
    name="notifications.list",
    params=NotificationsParams,
    summary="Notifications (remixes of this node's works), newest first.",
    result=(ResultField("notifications", "[notification]", "As in the `notification` event."),),
    example=Example(
        {"unread": True},
        {
            "notifications": [
                {
                    "id": 1,
                    "kind": "remix",
                    "record": EXAMPLE_DRAWING,
                    "subject": EXAMPLE_POEM,
                    "created_ms": 1_767_225_600_000,
                    "read": False,
                }
            ]
        },
    ),
)

SOCIAL_METHODS: Final[tuple[MethodSpec[Any], ...]] = (
    SOCIAL_FOLLOW,
    SOCIAL_UNFOLLOW,
    SOCIAL_FOLLOW_COLLAB,
    SOCIAL_UNFOLLOW_COLLAB,
    SOCIAL_FOLLOWING,
    SOCIAL_FEED,
    PROFILES_SET,
    PROFILES_GET,
    NOTIFICATIONS_LIST,
)
