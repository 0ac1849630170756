"""The ``remixnet`` social commands: follow, unfollow, following, feed, profile, notifications.

``follow``/``unfollow`` take an AUTHOR or ``--collab COLLAB_ID``.

Attached to the ``cli`` group of ``node.cli`` (which imports this module at
its end). Each command calls one method of ``node.rpc_api`` on the daemon when
one runs, else the same function (``node.social_methods.OFFLINE``) on the
store, so both paths print the same thing. ``--json`` prints the method's
result; every error a user can cause is one line and a non-zero exit.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import click

from node import render
from node.cli import cli, json_option, no_daemon, settings
from node.client import DaemonGone, connect_to_daemon
from node.jsonrpc import RpcError
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
from node.rpc_params_social import MAX_FEED
from node.rpc_schema import MethodSpec
from node.social_methods import OFFLINE


def run_method(spec: MethodSpec[Any], params: dict[str, object]) -> dict[str, Any]:
    """The result of ``spec`` with ``params``: from the daemon if one runs, else offline."""
    options = settings()
    try:
        if options.mode != "offline":
            client = connect_to_daemon(options.data_dir)
            if client is not None:
                with client:
                    result: dict[str, Any] = client.call(spec.name, params)
                    return result
            if options.mode == "online":
                raise no_daemon(options.data_dir)
        parsed = spec.parse_params(params)
        identity = options.data_dir.load_identity()
        with options.open_store() as store:
            return OFFLINE[spec.name](store, identity, parsed)
    except RpcError as error:
        reason = error.data.get("reason") if isinstance(error.data, dict) else None
        detail = f" ({reason})" if isinstance(reason, str) and reason not in error.message else ""
        raise click.ClickException(f"{spec.name}: {error.message}{detail}") from None
    except DaemonGone as error:
        raise click.ClickException(str(error)) from None


def author_label(author: str, name: object) -> str:
    return f"{name} ({render.short_author(author)})" if isinstance(name, str) else author


def print_result(result: dict[str, Any], line: str) -> None:
    if settings().json:
        render.print_json(result)
    else:
        render.stdout.print(line, markup=False)


def follow_target(author: str | None, collab: str | None, command: str) -> dict[str, object]:
    """The params of AUTHOR or ``--collab ID``: exactly one of them (else a usage error)."""
    if (author is None) == (collab is None):
        raise click.UsageError(f"{command} takes an AUTHOR or --collab COLLAB_ID (one of them)")
    return {"author": author} if author is not None else {"collab": collab}


@cli.command()
@click.argument("author", required=False)
@click.option("--collab", metavar="COLLAB_ID", help="Follow a collab instead of an author.")
@json_option
def follow(author: str | None, collab: str | None) -> None:
    """Follow AUTHOR (a PeerID): their works appear in `remixnet feed`.

    With --collab COLLAB_ID, follow a collab: the daemon listens to its topic
    and stores the contributions that answer it.
    """
    params = follow_target(author, collab, "follow")
    result = run_method(SOCIAL_FOLLOW_COLLAB if collab else SOCIAL_FOLLOW, params)
    verb = "following" if result["changed"] else "already following"
    target = f"collab {result['collab']}" if collab else result["author"]
    print_result(result, f"{verb} {target}")


@cli.command()
@click.argument("author", required=False)
@click.option("--collab", metavar="COLLAB_ID", help="Unfollow a collab instead of an author.")
@json_option
def unfollow(author: str | None, collab: str | None) -> None:
    """Stop following AUTHOR (or the collab COLLAB_ID)."""
    params = follow_target(author, collab, "unfollow")
    result = run_method(SOCIAL_UNFOLLOW_COLLAB if collab else SOCIAL_UNFOLLOW, params)
    verb = "unfollowed" if result["changed"] else "was not following"
    target = f"collab {result['collab']}" if collab else result["author"]
    print_result(result, f"{verb} {target}")


@cli.command()
@json_option
def following() -> None:
    """List the authors and collabs you follow."""
    result = run_method(SOCIAL_FOLLOWING, {})
    if settings().json:
        render.print_json(result)
        return
    if not result["following"] and not result["collabs"]:
        render.stderr.print(
            "you follow nobody yet (remixnet follow AUTHOR, or --collab COLLAB_ID)", markup=False
        )
    for entry in result["following"]:
        name = entry["name"] if isinstance(entry["name"], str) else "-"
        render.stdout.print(f"{entry['author']}  {name}", markup=False)
    for entry in result["collabs"]:
        title = entry["title"] if isinstance(entry["title"], str) else "-"
        render.stdout.print(f"collab {entry['collab']}  {title}", markup=False)


@cli.command()
@click.option("--limit", type=click.IntRange(1, MAX_FEED), default=50, show_default=True)
@json_option
def feed(limit: int) -> None:
    """Recent works of the authors you follow and remixes of your works, newest first."""
    result = run_method(SOCIAL_FEED, {"limit": limit})
    if settings().json:
        render.print_json(result)
        return
    if not result["records"]:
        render.stderr.print("nothing in your feed yet", markup=False)
    for view in result["records"]:
        moment = datetime.datetime.fromtimestamp(view["created_ms"] / 1000, datetime.UTC)
        render.stdout.print(
            f"{moment:%Y-%m-%d %H:%M}  {view['id']}  {render.view_title(view)}"
            f"  by {author_label(view['author'], view.get('author_name'))}",
            markup=False,
        )


@cli.command()
@click.option("--unread", is_flag=True, help="Only the unread ones.")
@click.option("--mark-read", is_flag=True, help="Mark them all read afterwards.")
@click.option("--limit", type=click.IntRange(1, MAX_FEED), default=50, show_default=True)
@json_option
def notifications(unread: bool, mark_read: bool, limit: int) -> None:
    """Remixes of your works that this node has received, newest first."""
    params: dict[str, object] = {"unread": unread, "mark_read": mark_read, "limit": limit}
    result = run_method(NOTIFICATIONS_LIST, params)
    if settings().json:
        render.print_json(result)
        return
    if not result["notifications"]:
        render.stderr.print("no notifications", markup=False)
    for item in result["notifications"]:
        flag = " " if item["read"] else "*"
        render.stdout.print(
            f"{flag} {item['kind']}  {item['record']} remixes {item['subject']}", markup=False
        )


@cli.group()
def profile() -> None:
    """Your public profile, and other artists'."""


@profile.command(name="set")
@click.option("--name", required=True, help="The name shown for you.")
@click.option("--bio", default="", help="Free text about you.")
@click.option(
    "--avatar",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An image file (added and pinned like `remixnet add`).",
)
@json_option
def profile_set(name: str, bio: str, avatar: Path | None) -> None:
    """Sign and publish your profile (it replaces the previous one)."""
    params: dict[str, object] = {"name": name, "bio": bio}
    if avatar is not None:
        params["avatar"] = str(avatar.resolve())
    result = run_method(PROFILES_SET, params)
    print_result(result, f"profile  {result['profile']['id']}")


@profile.command(name="show")
@click.argument("author", default="me")
@json_option
def profile_show(author: str) -> None:
    """Show AUTHOR's newest profile held here (default: yours)."""
    result = run_method(PROFILES_GET, {"author": author})
    if settings().json:
        render.print_json(result)
        return
    shown = result["profile"]
    if shown is None:
        raise click.ClickException(f"no profile of {author} is held here")
    for key in ("author", "name", "bio", "avatar", "id"):
        if shown.get(key):
            render.stdout.print(f"{key:<7} {shown[key]}", markup=False)
