"""The ``remixnet`` commands of collabs and productions: collab, production, credits, ack, graph.

Attached to the ``cli`` group of ``node.cli`` (which imports this module at
its end). A thin layer over ``node.productions`` (the operations) and
``node.lineage_render`` (the drawings); the credit split is
``protocol.lineage``. Like every command: ``--json`` for one JSON document on
stdout, one clear line and a non-zero exit for any error a user can cause.

All of this works on the records this node holds. Credit reaching a record it
does not hold is shown as unresolved; fetching those records from peers
(``--fetch``) needs the daemon and is not here yet.
"""

from __future__ import annotations

import csv
import datetime
import sys
from pathlib import Path
from typing import Final

import click
from rich.cells import cell_len

from node import render
from node.cli import cli as root_group
from node.cli import json_option, parse_cid, settings
from node.lineage_render import MAX_NODES, GraphTooLarge, build_graph, to_dot, to_svg
from node.productions import (
    CreditReport,
    ack_status,
    acknowledge,
    collab_view,
    create_production,
    credit_report,
    list_collabs,
    open_collab,
    profile_name,
)
from node.store import Store
from protocol.cid import Cid
from protocol.records import (
    MAX_SAFE_INTEGER,
    Collab,
    Credit,
    Production,
    SignedRecord,
    to_json,
)

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


def author_label(store: Store, record: SignedRecord) -> str:
    name = profile_name(store, record.author)
    return f"{name} ({record.author_id})" if name else record.author_id


def print_fields(fields: list[tuple[str, str]]) -> None:
    shown = [(key, value) for key, value in fields if value]
    width = max(len(key) for key, _ in shown)
    for key, value in shown:
        render.stdout.print(f"{key:<{width}}  {value}", markup=False)


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
    identity = options.data_dir.load_identity()
    with options.open_store() as store:
        record = open_collab(store, identity, title=title, brief=brief, deadline_ms=deadline_ms)
    if options.json:
        render.print_json(to_json(record))
    else:
        render.stdout.print(f"collab  {record.id}", markup=False)


@collab.command(name="ls")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@json_option
def collab_list(limit: int) -> None:
    """List the collabs in this store, newest first."""
    options = settings()
    with options.open_store() as store:
        records = list_collabs(store, limit)
    if options.json:
        render.print_json([to_json(record) for record in records])
    elif records:
        render.print_records(records)
    else:
        render.stderr.print("no collabs", markup=False)


@collab.command(name="show")
@click.argument("collab_id")
@json_option
def collab_show(collab_id: str) -> None:
    """Show a collab, the contributions answering it and their remixes, its productions."""
    options = settings()
    with options.open_store() as store:
        view = collab_view(store, parse_cid(collab_id))
        director = author_label(store, view.collab)
    if options.json:
        render.print_json(
            {
                **to_json(view.collab),
                "contributions": [
                    {**to_json(answer.record), "remixed_by": [to_json(r) for r in answer.remixes]}
                    for answer in view.contributions
                ],
                "productions": [to_json(record) for record in view.productions],
            }
        )
        return
    body = view.collab.body
    assert isinstance(body, Collab)
    print_fields(
        [
            ("id", str(view.collab.id)),
            ("title", body.title),
            ("director", director),
            ("opened", iso_time(view.collab.created_ms)),
            ("deadline", iso_time(body.deadline_ms) if body.deadline_ms is not None else ""),
            ("brief", body.brief),
        ]
    )
    render.stdout.print(f"\ncontributions ({len(view.contributions)})", markup=False)
    for answer in view.contributions:
        render.stdout.print(f"  {_line(answer.record)}", markup=False)
        for remix in answer.remixes:
            render.stdout.print(f"      remixed by {_line(remix)}", markup=False)
    if view.productions:
        render.stdout.print(f"\nproductions ({len(view.productions)})", markup=False)
        for record in view.productions:
            render.stdout.print(f"  {_line(record)}", markup=False)


def _line(record: SignedRecord) -> str:
    return f"{record.id}  {render.short_author(record.author_id)}  {render.record_title(record)}"


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
    identity = options.data_dir.load_identity()
    with options.open_store() as store:
        record = create_production(
            store,
            identity,
            title=title,
            credits=parsed,
            collab=parse_cid(collab_id) if collab_id else None,
            description=description,
        )
    if options.json:
        render.print_json(to_json(record))
    else:
        render.stdout.print(f"production  {record.id}", markup=False)
        render.stdout.print(f"see the split with `remixnet credits {record.id}`", markup=False)


@production.command(name="show")
@click.argument("production_id")
@json_option
def production_show(production_id: str) -> None:
    """Show a production: its fields, what it credits, and the acks so far."""
    options = settings()
    with options.open_store() as store:
        report = credit_report(store, parse_cid(production_id))
        record = report.production
        body = record.body
        assert isinstance(body, Production)
        titles = {
            credit.contribution: render.record_title(store.get_record(credit.contribution))
            if store.has_record(credit.contribution)
            else None
            for credit in body.credits
        }
        director = author_label(store, record)
    statuses = [ack_status(report.acks.get(share.author))[0] for share in report.split.authors]
    counts = {status: statuses.count(status) for status in ("accepted", "disputed", "pending")}
    if options.json:
        credits = [
            {
                "contribution": str(credit.contribution),
                "role": credit.role,
                "share_bps": credit.share_bps,
                "title": titles[credit.contribution],
            }
            for credit in body.credits
        ]
        render.print_json({**to_json(record), "credits": credits, "acks": counts})
        return
    print_fields(
        [
            ("id", str(record.id)),
            ("title", body.title),
            ("director", director),
            ("created", iso_time(record.created_ms)),
            ("collab", str(body.collab) if body.collab else ""),
            ("description", body.description),
            ("acks", ", ".join(f"{n} {status}" for status, n in counts.items())),
        ]
    )
    render.stdout.print("\ncredits", markup=False)
    for credit in body.credits:
        title = titles[credit.contribution] or "(not in this store)"
        render.stdout.print(
            f"  {credit.share_bps:>5} bps  {credit.contribution}  {credit.role}: {title}",
            markup=False,
        )


# -- credits and acks -----------------------------------------------------------------


def credit_rows(report: CreditReport) -> list[dict[str, str | int]]:
    """One row per author and per unresolved record: the CSV and table columns."""
    rows: list[dict[str, str | int]] = []
    for share in report.split.authors:
        status, reason = ack_status(report.acks.get(share.author))
        rows.append(
            {
                "kind": "author",
                "id": share.author_id,
                "name": report.names.get(share.author, ""),
                "bps": share.bps,
                "percent": percent(share.bps),
                "exact_bps": str(share.exact_bps),
                "ack": status,
                "ack_reason": reason,
                "through": ";".join(f"{p.contribution}={p.bps}" for p in share.through),
            }
        )
    for entry in report.split.unresolved:
        rows.append(
            {
                "kind": "unresolved",
                "id": str(entry.record_id),
                "name": "",
                "bps": entry.bps,
                "percent": percent(entry.bps),
                "exact_bps": str(entry.exact_bps),
                "ack": "",
                "ack_reason": str(entry.reason),
                "through": "",
            }
        )
    return rows


def credits_json(report: CreditReport) -> dict[str, object]:
    body = report.production.body
    assert isinstance(body, Production)
    authors = []
    for share in report.split.authors:
        status, reason = ack_status(report.acks.get(share.author))
        ack = report.acks.get(share.author)
        authors.append(
            {
                "author": share.author_id,
                "name": report.names.get(share.author),
                "bps": share.bps,
                "percent": percent(share.bps),
                "exact_bps": str(share.exact_bps),
                "ack": status,
                "ack_reason": reason,
                "ack_id": str(ack.id) if ack else None,
                "through": [
                    {
                        "contribution": str(part.contribution),
                        "title": report.titles.get(part.contribution),
                        "bps": part.bps,
                        "exact_bps": str(part.exact_bps),
                    }
                    for part in share.through
                ],
            }
        )
    return {
        "production": str(report.production.id),
        "title": body.title,
        "director": report.production.author_id,
        "total_bps": report.split.total_bps,
        "authors": authors,
        "unresolved": [
            {
                "record": str(entry.record_id),
                "reason": str(entry.reason),
                "bps": entry.bps,
                "percent": percent(entry.bps),
                "exact_bps": str(entry.exact_bps),
            }
            for entry in report.split.unresolved
        ],
    }


@root_group.command(name="credits")
@click.argument("production_id")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV for payouts (see docs/credits.md).")
@json_option
def credits_command(production_id: str, as_csv: bool) -> None:
    """The credit split of a production per author, with each author's ack."""
    options = settings()
    if as_csv and options.json:
        raise click.UsageError("--csv and --json cannot be used together")
    with options.open_store() as store:
        report = credit_report(store, parse_cid(production_id))
    if options.json:
        render.print_json(credits_json(report))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(credit_rows(report))
    else:
        print_credit_table(report)


def print_credit_table(report: CreditReport) -> None:
    body = report.production.body
    assert isinstance(body, Production)
    render.stdout.print(f"credits of “{body.title}” ({report.production.id})", markup=False)
    header = ("name", "author", "bps", "%", "ack", "through")
    rows = []
    for share in report.split.authors:
        through = ", ".join(
            f"{report.titles.get(p.contribution, str(p.contribution))} ({p.bps})"
            for p in share.through
        )
        status = ack_status(report.acks.get(share.author))[0]
        rows.append(
            (
                report.names.get(share.author, "-"),
                share.author_id,
                str(share.bps),
                percent(share.bps),
                status,
                through,
            )
        )
    for entry in report.split.unresolved:
        rows.append(
            (
                "(unresolved)",
                str(entry.record_id),
                str(entry.bps),
                percent(entry.bps),
                "-",
                f"record {entry.reason.replace('-', ' ')}",
            )
        )
    rows.append(("total", "", str(report.split.total_bps), percent(report.split.total_bps), "", ""))
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
    for share in report.split.authors:
        status, reason = ack_status(report.acks.get(share.author))
        if status == "disputed":
            name = report.names.get(share.author) or share.author_id
            render.stdout.print(f"disputed by {name}: {reason}", markup=False)
    if report.split.unresolved:
        render.stdout.print(
            "unresolved: credit reached records this node does not hold; import or fetch them"
            " and run this again",
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
    identity = options.data_dir.load_identity()
    with options.open_store() as store:
        record = acknowledge(
            store, identity, parse_cid(production_id), accept=accept, reason=dispute or ""
        )
    if options.json:
        render.print_json(to_json(record))
    else:
        verb = "accepted" if accept else "disputed"
        render.stdout.print(f"{verb} production {production_id}", markup=False)
        render.stdout.print(f"ack  {record.id}", markup=False)


# -- graph --------------------------------------------------------------------------------


@root_group.command()
@click.argument("record_id")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["svg", "dot"]),
    default="svg",
    show_default=True,
)
@click.option("--production", "production_id", help="Show this production's credit flow.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="File.")
@click.option("--depth", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--max-nodes", type=click.IntRange(2, 5000), default=MAX_NODES, show_default=True)
@json_option
def graph(
    record_id: str,
    output_format: str,
    production_id: str | None,
    output: Path | None,
    depth: int,
    max_nodes: int,
) -> None:
    """Draw the remix DAG around a contribution or production (SVG or Graphviz DOT).

    Writes to OUTPUT, or to stdout without -o.
    """
    options = settings()
    with options.open_store() as store:
        try:
            drawing = build_graph(
                store,
                parse_cid(record_id),
                production=parse_cid(production_id) if production_id else None,
                depth=depth,
                max_nodes=max_nodes,
            )
        except GraphTooLarge as error:
            raise click.ClickException(str(error)) from None
    text = to_svg(drawing) if output_format == "svg" else to_dot(drawing)
    if output is None:
        if options.json:
            raise click.UsageError("--json needs -o FILE (the drawing goes there)")
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
                "nodes": len(drawing.nodes),
                "edges": len(drawing.edges),
            }
        )
    else:
        render.stdout.print(
            f"wrote {output} ({len(drawing.nodes)} records, {len(drawing.edges)} edges)",
            markup=False,
        )
