"""``remixnet pin add|rm|ls`` and ``remixnet gc``: what the node keeps, and freeing the rest.

Like the store commands, they go through the daemon when one runs and work on
the data directory when none does (``Settings.backend``), and print the same
either way: the JSON of ``pins.add``, ``pins.rm``, ``pins.list`` and
``store.gc`` (``node.rpc_api_storage``) with ``--json``, a line or a table
without.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from node import render
from node.cli import cli, json_option, parse_cid, settings
from node.leases import format_bytes
from node.rpc_api_storage import MAX_REASON_CHARS


@cli.group()
def pin() -> None:
    """Keep content from garbage collection (your own works are pinned when added)."""


@pin.command("add")
@click.argument("cid")
@click.option(
    "--reason", default="pinned by hand", show_default=True, help="Why it is kept (shown by ls)."
)
@json_option
def pin_add(cid: str, reason: str) -> None:
    """Pin CID (content, or a record id: its content); it must be held fully here."""
    if not reason.strip() or len(reason) > MAX_REASON_CHARS:
        raise click.UsageError(f"--reason must be 1 to {MAX_REASON_CHARS} characters")
    options = settings()
    with options.backend() as node:
        result = node.pin_add(parse_cid(cid), reason)
    _print_change(result, "pinned", "already pinned", options.json)


@pin.command("rm")
@click.argument("cid")
@json_option
def pin_rm(cid: str) -> None:
    """Unpin CID (or the content of the record CID); `remixnet gc` may then delete it."""
    options = settings()
    with options.backend() as node:
        result = node.pin_rm(parse_cid(cid))
    _print_change(result, "unpinned", "unpinned", options.json)


@pin.command("ls")
@json_option
def pin_ls() -> None:
    """List the pins, oldest first."""
    options = settings()
    with options.backend() as node:
        pins = node.pins()
    if options.json:
        render.print_json({"pins": pins})
        return
    if not pins:
        render.stderr.print("no pins", markup=False)
    for item in pins:
        render.stdout.print(f"{item['cid']}  {item['reason']}", markup=False)


@cli.command()
@json_option
def gc() -> None:
    """Delete the blocks no pin (or running fetch) needs and give their space back."""
    options = settings()
    with (
        options.backend() as node,
        render.progress_report("collecting", quiet=options.json) as report_progress,
    ):
        report = node.gc(report_progress)
    if options.json:
        render.print_json(dict(report))
        return
    render.stdout.print(
        f"deleted {report['blocks_deleted']} of {report['blocks_before']} blocks"
        f" ({format_bytes(report['bytes_deleted'])}), reclaimed"
        f" {format_bytes(report['bytes_reclaimed'])} on disk;"
        f" {format_bytes(report['used_after'])} used, {report['pinned_roots']} pins kept"
        f" in {report['elapsed']:.1f} s",
        markup=False,
    )
    if report["pinned_missing"]:
        render.stderr.print(
            f"note: {report['pinned_missing']} block(s) under pins are not held here"
            " (`remixnet get` fetches them)",
            markup=False,
        )


def _print_change(result: Mapping[str, Any], done: str, unchanged: str, as_json: bool) -> None:
    if as_json:
        render.print_json(dict(result))
        return
    what = result["cid"]
    if result["record"] is not None:
        what += f" (content of {result['record']})"
    render.stdout.print(f"{done if result['changed'] else unchanged} {what}", markup=False)
