"""``remixnet seed show|set|block|unblock``: the seeding policies (``node.seed``).

Attached to the ``cli`` group of ``node.cli`` (imported at its end). With a
daemon running the edit goes through it (``seed.*`` over RPC) and takes effect
at once; with none, it is written to ``config.toml`` directly and takes effect
at the next start. Either way ``config.toml`` holds the result.
"""

from __future__ import annotations

import re
from typing import Any, Final

import click

from node import render
from node.cli import cli, json_option, settings
from node.client import DaemonGone, connect_to_daemon
from node.config import SEED_MODES, ConfigError
from node.daemon_process import running_pid
from node.jsonrpc import RpcError
from node.rpc_api_seed import (
    BLOCK_KINDS,
    SEED_BLOCK,
    SEED_SET,
    SEED_SHOW,
    SEED_UNBLOCK,
    SeedBlockParams,
    SeedSetParams,
)
from node.rpc_schema import ParamError

_SIZE: Final = re.compile(r"^\s*(\d+)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS: Final = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40})


def parse_size(text: str) -> int:
    """``"0"``, ``"1048576"``, ``"500MiB"``, ``"2GB"`` → bytes. Raises ``click.BadParameter``."""
    match = _SIZE.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a size (e.g. 0, 1048576, 500MiB, 2GB)")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def _seed_call(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """``method`` through the running daemon, or applied to ``config.toml`` when none runs."""
    options = settings()
    data_dir = options.data_dir
    client = None if options.mode == "offline" else connect_to_daemon(data_dir)
    if client is not None:
        with client:
            try:
                result: dict[str, Any] = client.call(method, params)
            except RpcError as error:
                raise click.ClickException(error.message) from None
            except DaemonGone as error:
                raise click.ClickException(str(error)) from None
            return result
    if options.mode == "online":
        raise click.ClickException(f"no daemon is running on {data_dir.root}")
    if method != SEED_SHOW.name and running_pid(data_dir) is not None:
        raise click.ClickException(
            "a daemon runs on this data directory and holds the policy in force:"
            " edit it through the daemon (without --offline)"
        )
    data_dir.require_initialised()
    # Imported here: node.seed pulls in libp2p (through the gossip service),
    # which would add ~0.4 s to every CLI command's start.
    from node.seed import PolicyError, edit_offline, load_policy

    try:
        if method == SEED_SHOW.name:
            return {**load_policy(data_dir).to_json(), "bootstrap_addrs": []}
        typed: SeedSetParams | SeedBlockParams
        spec = SEED_SET if method == SEED_SET.name else SEED_BLOCK
        typed = spec.parse_params(params)
        me = data_dir.load_identity().author_id
        return edit_offline(data_dir, method, typed, me)
    except (ConfigError, PolicyError, ParamError) as error:
        raise click.ClickException(str(error)) from None
    except RpcError as error:
        raise click.ClickException(error.message) from None


def _print_policy(result: dict[str, Any]) -> None:
    if settings().json:
        render.print_json(result)
        return
    limit = result["max_content_bytes"]
    rows = [
        ("mode", result["mode"]),
        ("max size", f"{limit} bytes" if limit else "no limit"),
        ("blocked", f"{len(result['block_authors'])} authors, {len(result['block_peers'])} peers"),
    ]
    rows += [("  author", author) for author in result["block_authors"]]
    rows += [("  peer", peer) for peer in result["block_peers"]]
    rows += [("bootstrap", address) for address in result.get("bootstrap_addrs", [])]
    if "changed" in result and not result["changed"]:
        rows.append(("note", "nothing changed"))
    for name, value in rows:
        render.stdout.print(f"{name:<9} {value}", markup=False)


@cli.group()
def seed() -> None:
    """Seeding policies: what this node replicates, and whom it blocks."""


@seed.command(name="show")
@json_option
def seed_show() -> None:
    """Show the policies in force and this node's bootstrap addresses."""
    _print_policy(_seed_call(SEED_SHOW.name, {}))


@seed.command(name="set")
@click.option(
    "--mode",
    type=click.Choice(SEED_MODES),
    help="off | authors (followed authors' works) | collabs (followed collabs') | followed"
    " (both) | everything.",
)
@click.option(
    "--max-content-size",
    "max_size",
    metavar="SIZE",
    help="Largest content replicated per record (500MiB, 2GB, 0 = no limit).",
)
@json_option
def seed_set(mode: str | None, max_size: str | None) -> None:
    """Change what this node replicates (with the ancestors of what it replicates)."""
    if mode is None and max_size is None:
        raise click.UsageError("give --mode and/or --max-content-size")
    params: dict[str, Any] = {"mode": mode}
    if max_size is not None:
        params["max_content_bytes"] = parse_size(max_size)
    _print_policy(_seed_call(SEED_SET.name, params))


@seed.command(name="block")
@click.argument("kind", type=click.Choice(BLOCK_KINDS))
@click.argument("peer_id", metavar="ID")
@json_option
def seed_block(kind: str, peer_id: str) -> None:
    """Block an author (their records are deleted here, never stored, forwarded nor served)
    or a peer (disconnected and refused)."""
    _print_policy(_seed_call(SEED_BLOCK.name, {"kind": kind, "id": peer_id}))


@seed.command(name="unblock")
@click.argument("kind", type=click.Choice(BLOCK_KINDS))
@click.argument("peer_id", metavar="ID")
@json_option
def seed_unblock(kind: str, peer_id: str) -> None:
    """Lift a block on an author or a peer."""
    _print_policy(_seed_call(SEED_UNBLOCK.name, {"kind": kind, "id": peer_id}))
