"""The ``remixnet`` commands of collabs and productions: collab, production, credits, ack.

Attached to the ``cli`` group of ``node.cli`` (which imports this module at
its end). Like the store commands, each one parses and checks its arguments,
asks a ``Backend`` (``Settings.backend``: the running daemon over JSON-RPC,
else the store directly) and renders the JSON result of the collab method
(``node.rpc_api_collab``) it called, so it prints the same whichever node
answered. ``--json`` prints one JSON document on stdout; any error a user can
cause is one clear line and a non-zero exit.

Credit reaching a record this node does not hold is shown as unresolved;
``credits --fetch`` has the daemon fetch those records from peers first.
``draw_lineage`` is ``lineage --format dot|svg`` (``graph`` is its hidden old name).
"""

from __future__ import annotations

import csv
import datetime
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import click
from rich.cells import cell_len

from node import render
from node.cli import cli as root_group
from node.cli import json_option, parse_cid, settings
from node.cli_backend import GraphRequest, RecordView
from node.rpc_params_collab import (
    DEFAULT_GRAPH_NODES,
    GRAPH_FORMATS,
    MAX_COLLABS_LISTED,
    MAX_GRAPH_DEPTH,
    MAX_GRAPH_NODES,
)
from protocol.cid import Cid
from protocol.lineage import check_shares
from protocol.records import MAX_SAFE_INTEGER, Ack, Collab, Credit, Production

CSV_COLUMNS: Final = (
    "kind",
    "id",
    "name",
    "bps",
    "percent",
    "exact_bps",
    "ack",
    "ack_reason",
    "through",
)


def percent(bps: int) -> str:
    return f"{bps / 100:.2f}"


def iso_time(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_deadline(text: str) -> int:
    """Unix ms of an ISO 8601 date (the end of that day, UTC) or date-time (UTC without offset)."""
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is not an ISO 8601 date (2025-03-01)"
                " or date-time (2025-03-01T18:00+01:00)",
                param_hint="'--deadline'",
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
    else:
        moment = datetime.datetime.combine(day, datetime.time.max, tzinfo=datetime.UTC)
    ms = int(moment.timestamp() * 1000)
    if not 0 <= ms <= MAX_SAFE_INTEGER:
        raise click.BadParameter(f"{text!r} is before 1970", param_hint="'--deadline'")
    return ms


def print_fields(fields: list[tuple[str, str]]) -> None:
    shown = [(key, value) for key, value in fields if value]
    width = max(len(key) for key, _ in shown)
    for key, value in shown:
        render.stdout.print(f"{key:<{width}}  {value}", markup=False)


def director_label(view: RecordView) -> str:
    """The author of a view with ``author_name``: ``Ana (12D3KooW…full id)``."""
    return render.author_label(str(view["author"]), view.get("author_name"), short=False)


# -- collab ---------------------------------------------------------------------------


@root_group.group()
def collab() -> None:
    """Calls for contributions: open one, list them, see what answered."""


@collab.command(name="open")
@click.option("--title", required=True, help="What the collab is called.")
@click.option("--brief", default="", help="What you are asking artists for.")
@click.option("--deadline", metavar="ISO-DATE", help="e.g. 2025-03-01 (end of that day, UTC).")
@json_option
def collab_open(title: str, brief: str, deadline: str | None) -> None:
    """Open a collab that you direct; answer it with `add/remix --collab ID`."""
    options = settings()
    deadline_ms = parse_deadline(deadline) if deadline is not None else None
    Collab(title, brief, deadline_ms)  # a bad field fails here, the same way online and offline
    with options.backend() as node:
        view = node.open_collab(title, brief, deadline_ms)
    if options.json:
        render.print_json(view)
    else:
        render.stdout.print(f"collab  {view['id']}", markup=False)


@collab.command(name="ls")
@click.option("--limit", type=click.IntRange(1, MAX_COLLABS_LISTED), default=100, show_default=True)
@json_option
def collab_list(limit: int) -> None:
    """List the collabs in this store, newest first."""
    options = settings()
    with options.backend() as node:
        views = node.collabs(limit)
    if options.json:
        render.print_json(views)
    elif views:
        render.print_record_views(views)
    else:
        render.stderr.print("no collabs", markup=False)


@collab.command(name="show")
@click.argument("collab_id")
@json_option
def collab_show(collab_id: str) -> None:
    """Show a collab, the contributions answering it and their remixes, its productions."""
    options = settings()
    wanted = parse_cid(collab_id)
    with options.backend() as node:
        result = node.collab(wanted)
    view = result["collab"]
    if options.json:
        render.print_json(
            {
                **view,
                "contributions": result["contributions"],
                "productions": result["productions"],
            }
        )
        return
    deadline = view.get("deadline_ms")
    print_fields(
        [
            ("id", str(view["id"])),
            ("title", str(view["title"])),
            ("director", director_label(view)),
            ("opened", iso_time(int(view["created_ms"]))),
            ("deadline", iso_time(deadline) if isinstance(deadline, int) else ""),
            ("brief", str(view["brief"])),
        ]
    )
    contributions = result["contributions"]
    render.stdout.print(f"\ncontributions ({len(contributions)})", markup=False)
    for answer in contributions:
        render.stdout.print(f"  {_line(answer)}", markup=False)
        for remix in answer["remixed_by"]:
            render.stdout.print(f"      remixed by {_line(remix)}", markup=False)
    if result["productions"]:
        render.stdout.print(f"\nproductions ({len(result['productions'])})", markup=False)
        for production_view in result["productions"]:
            render.stdout.print(f"  {_line(production_view)}", markup=False)


def _line(view: RecordView) -> str:
    author = render.author_label(str(view["author"]), view.get("author_name"))
    return f"{view['id']}  {author}  {render.view_title(view)}"


# -- production -----------------------------------------------------------------------


def parse_credit(text: str) -> Credit:
    """``CONTRIBUTION_ID:ROLE:BPS`` (the role may itself contain colons)."""
    record_id, _, rest = text.partition(":")
    role, _, bps = rest.rpartition(":")
    if not record_id or not role or not bps.isdigit():
        raise click.BadParameter(
            f"{text!r}: expected CONTRIBUTION_ID:ROLE:BPS, e.g. bafk…:music:7000",
            param_hint="'--credit'",
        )
    return Credit(Cid.parse(record_id), role, int(bps))


@root_group.group()
def production() -> None:
    """Productions: finished works assembled from contributions, with their credit shares."""


@production.command(name="create")
@click.option("--title", required=True, help="The production's title.")
@click.option("--collab", "collab_id", help="The collab it comes from (you must direct it).")
@click.option("--description", default="", help="Free text.")
@click.option(
    "--credit",
    "credits",
    multiple=True,
    required=True,
    metavar="CONTRIBUTION_ID:ROLE:BPS",
    help="A contribution used, its role and share in basis points (repeat; shares sum to 10000).",
)
@json_option
def production_create(
    title: str, collab_id: str | None, description: str, credits: tuple[str, ...]
) -> None:
    """Sign a production crediting contributions in this store."""
    options = settings()
    parsed = [parse_credit(text) for text in credits]
    collab_cid = parse_cid(collab_id) if collab_id else None
    # Checked before a node is asked, so a mistake reads the same online and offline.
    check_shares((credit.contribution, credit.share_bps) for credit in parsed)
    Production(title=title, credits=tuple(parsed), collab=collab_cid, description=description)
    with options.backend() as node:
        view = node.create_production(title, parsed, collab_cid, description)
    if options.json:
        render.print_json(view)
    else:
        render.stdout.print(f"production  {view['id']}", markup=False)
        render.stdout.print(f"see the split with `remixnet credits {view['id']}`", markup=False)


@production.command(name="show")
@click.argument("production_id")
@json_option
def production_show(production_id: str) -> None:
    """Show a production: its fields, what it credits, and the acks so far."""
    options = settings()
    wanted = parse_cid(production_id)
    with options.backend() as node:
        result = node.production(wanted)
    view, counts = result["production"], result["acks"]
    if options.json:
        render.print_json({**view, "credits": result["credits"], "acks": counts})
        return
    print_fields(
        [
            ("id", str(view["id"])),
            ("title", str(view["title"])),
            ("director", director_label(view)),
            ("created", iso_time(int(view["created_ms"]))),
            ("collab", str(view["collab"]) if view.get("collab") else ""),
            ("description", str(view["description"])),
            ("acks", ", ".join(f"{n} {status}" for status, n in counts.items())),
        ]
    )
    render.stdout.print("\ncredits", markup=False)
    for credit in result["credits"]:
        title = credit["title"] if credit["title"] is not None else "(not in this store)"
        render.stdout.print(
            f"  {credit['share_bps']:>5} bps  {credit['contribution']}  {credit['role']}: {title}",
            markup=False,
        )


# -- credits and acks -----------------------------------------------------------------


def credit_rows(report: Mapping[str, Any]) -> list[dict[str, str | int]]:
    """One row per author and per unresolved record: the CSV columns."""
    rows: list[dict[str, str | int]] = []
    for share in report["authors"]:
        rows.append(
            {
                "kind": "author",
                "id": share["author"],
                "name": share["name"] or "",
                "bps": share["bps"],
                "percent": share["percent"],
                "exact_bps": share["exact_bps"],
                "ack": share["ack"],
                "ack_reason": share["ack_reason"],
                "through": ";".join(f"{p['contribution']}={p['bps']}" for p in share["through"]),
            }
        )
    for entry in report["unresolved"]:
        rows.append(
            {
                "kind": "unresolved",
                "id": entry["record"],
                "name": "",
                "bps": entry["bps"],
                "percent": entry["percent"],
                "exact_bps": entry["exact_bps"],
                "ack": "",
                "ack_reason": entry["reason"],
                "through": "",
            }
        )
    return rows


@root_group.command(name="credits")
@click.argument("production_id")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV for payouts (see docs/credits.md).")
@click.option(
    "--fetch",
    is_flag=True,
    help="First fetch from peers the records the split lacks (needs the daemon).",
)
@json_option
def credits_command(production_id: str, as_csv: bool, fetch: bool) -> None:
    """The credit split of a production per author, with each author's ack.

    With --fetch, the daemon first fetches from its peers the production and
    the ancestors its credit reaches that this node does not hold.
    """
    options = settings()
    if as_csv and options.json:
        raise click.UsageError("--csv and --json cannot be used together")
    if fetch and options.mode == "offline":
        raise click.UsageError("--fetch needs the daemon; it cannot be used with --offline")
    wanted = parse_cid(production_id)
    with options.backend() as node:
        report = node.credits(wanted, fetch=fetch)
    if options.json:
        render.print_json(report)
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(credit_rows(report))
    else:
        print_credit_table(report)


def print_credit_table(report: Mapping[str, Any]) -> None:
    fetched = report.get("fetched")
    if fetched is not None:
        failed = len(fetched["failed"])
        render.stderr.print(
            f"fetched {fetched['records']} record(s) from peers"
            + (f"; {failed} none of them had" if failed else ""),
            markup=False,
        )
    render.stdout.print(f"credits of “{report['title']}” ({report['production']})", markup=False)
    header = ("name", "author", "bps", "%", "ack", "through")
    rows = []
    for share in report["authors"]:
        through = ", ".join(
            f"{part['title'] if part['title'] is not None else part['contribution']}"
            f" ({part['bps']})"
            for part in share["through"]
        )
        rows.append(
            (
                share["name"] or "-",
                share["author"],
                str(share["bps"]),
                share["percent"],
                share["ack"],
                through,
            )
        )
    for entry in report["unresolved"]:
        rows.append(
            (
                "(unresolved)",
                entry["record"],
                str(entry["bps"]),
                entry["percent"],
                "-",
                f"record {entry['reason'].replace('-', ' ')}",
            )
        )
    rows.append(("total", "", str(report["total_bps"]), percent(report["total_bps"]), "", ""))
    # Padded by terminal cells, not code points: names may hold wide (CJK) characters.
    widths = [max(cell_len(row[i]) for row in [header, *rows]) for i in range(5)]
    right = {2, 3}
    for row in [header, *rows]:
        cells = [
            " " * (widths[i] - cell_len(cell)) + cell
            if i in right
            else cell + " " * (widths[i] - cell_len(cell))
            for i, cell in enumerate(row[:5])
        ]
        render.stdout.print(("  ".join(cells) + "  " + row[5]).rstrip(), markup=False)
    for share in report["authors"]:
        if share["ack"] == "disputed":
            name = share["name"] or share["author"]
            render.stdout.print(f"disputed by {name}: {share['ack_reason']}", markup=False)
    if report["unresolved"]:
        render.stdout.print(
            "unresolved: credit reached records this node does not hold; run"
            f" `remixnet credits {report['production']} --fetch` (with the daemon) or import"
            " them, then run this again",
            markup=False,
        )


@root_group.command()
@click.argument("production_id")
@click.option("--accept", is_flag=True, help="Accept the credit you are given.")
@click.option("--dispute", metavar="REASON", help="Dispute it, saying why.")
@json_option
def ack(production_id: str, accept: bool, dispute: str | None) -> None:
    """Sign your answer to a production that credits you: --accept or --dispute REASON."""
    options = settings()
    if accept == (dispute is not None):
        raise click.UsageError("give exactly one of --accept or --dispute REASON")
    wanted = parse_cid(production_id)
    Ack(wanted, accept, dispute or "")  # a dispute without a reason fails here, either way
    with options.backend() as node:
        view = node.acknowledge(wanted, accept, dispute or "")
    if options.json:
        render.print_json(view)
    else:
        verb = "accepted" if accept else "disputed"
        render.stdout.print(f"{verb} production {production_id}", markup=False)
        render.stdout.print(f"ack  {view['id']}", markup=False)


# -- drawings (``lineage --format dot|svg``; ``graph`` is its old, hidden name) -------------


def draw_lineage(
    record_id: str,
    output_format: str,
    production_id: str | None,
    output: Path | None,
    depth: int,
    max_nodes: int,
) -> None:
    """Draw the remix DAG around a record as SVG or DOT, to ``output`` or stdout."""
    options = settings()
    if output is None and options.json:
        raise click.UsageError("--json needs -o FILE (the drawing goes there)")
    request = GraphRequest(
        parse_cid(record_id),
        output_format,
        parse_cid(production_id) if production_id else None,
        depth,
        max_nodes,
    )
    with options.backend() as node:
        drawing = node.graph(request)
    text = str(drawing["text"])
    if output is None:
        sys.stdout.write(text)
        return
    partial = output.with_name(output.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(output)
    if options.json:
        render.print_json(
            {
                "path": str(output),
                "format": output_format,
                "nodes": drawing["nodes"],
                "edges": drawing["edges"],
            }
        )
    else:
        render.stdout.print(
            f"wrote {output} ({drawing['nodes']} records, {drawing['edges']} edges)",
            markup=False,
        )


@root_group.command(hidden=True)
@click.argument("record_id")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(list(GRAPH_FORMATS)),
    default="svg",
    show_default=True,
)
@click.option("--production", "production_id", help="Show this production's credit flow.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="File.")
@click.option("--depth", type=click.IntRange(1, MAX_GRAPH_DEPTH), default=50, show_default=True)
@click.option(
    "--max-nodes",
    type=click.IntRange(2, MAX_GRAPH_NODES),
    default=DEFAULT_GRAPH_NODES,
    show_default=True,
)
@json_option
def graph(
    record_id: str,
    output_format: str,
    production_id: str | None,
    output: Path | None,
    depth: int,
    max_nodes: int,
) -> None:
    """Same as `lineage RECORD_ID --format svg|dot` (kept for old scripts)."""
    draw_lineage(record_id, output_format, production_id, output, depth, max_nodes)
