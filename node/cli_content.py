"""The ``remixnet`` commands on the store: add, remix, show, cat, get, ls, lineage, fsck,
export, import.

Attached to the ``cli`` group of ``node.cli`` (which imports this module at
its end). Each command parses and checks its arguments, asks a ``Backend``
(``Settings.backend``: the running daemon, else the store directly), and
renders the typed result, so it prints the same whichever answered. Long
operations show a progress bar on stderr, fed by the operation itself
offline and by the daemon's ``progress`` notifications online.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from node import render
from node.cli import EXIT_ERROR, F, cli, fail, json_option, parse_cid, settings
from node.cli_backend import RecordQuery, with_author_name
from node.cli_collab import draw_lineage
from node.operations import DEFAULT_LICENSE, WorkFields, check_work
from node.rpc_params import MAX_LINEAGE_DEPTH, MAX_LINEAGE_RECORDS
from node.rpc_params_collab import DEFAULT_GRAPH_NODES, MAX_GRAPH_NODES
from protocol.cid import Cid
from protocol.identity import public_key_of
from protocol.records import Parent, RecordType


def contribution_options(command: F) -> F:
    for option in reversed(
        [
            click.option("--title", help="Title [default: the file name]."),
            click.option("--description", default="", help="Free text."),
            click.option(
                "--license",
                "license_id",
                default=DEFAULT_LICENSE,
                show_default=True,
                help="SPDX license id.",
            ),
            click.option("--tag", "tags", multiple=True, help="A tag (repeatable)."),
            click.option("--media-type", help="MIME type [default: guessed from the name]."),
            click.option("--collab", help="Id of the collab this answers."),
        ]
    ):
        command = option(command)
    return command


def publish_file(
    path: Path,
    *,
    parents: tuple[Parent, ...],
    title: str | None,
    description: str,
    license_id: str,
    tags: tuple[str, ...],
    media_type: str | None,
    collab: str | None,
    upstream_bps: int | None,
) -> None:
    """Import ``path``, sign a contribution for it, store and pin it, print the ids."""
    options = settings()
    with options.backend() as node:
        if not path.is_file():
            raise (
                click.UsageError(f"{path}: not a file")
                if path.exists()
                else FileNotFoundError(2, "No such file", str(path))
            )
        work = WorkFields(
            title=title,
            description=description,
            license=license_id,
            tags=tags,
            media_type=media_type,
            collab=Cid.parse(collab) if collab else None,
            parents=parents,
            upstream_bps=upstream_bps,
        )
        check_work(work, path.name)  # a bad field fails before the file is read
        with render.progress_report(f"adding {path.name}", quiet=options.json) as report:
            published = node.publish(path, work, report)
    if options.json:
        render.print_json(
            {"id": str(published.record), "content": str(published.content), "size": published.size}
        )
        return
    render.stdout.print(f"record  {published.record}", markup=False)
    render.stdout.print(f"content {published.content}  ({published.size} bytes)", markup=False)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@contribution_options
@json_option
def add(file: Path, **fields: Any) -> None:
    """Import FILE and publish it as a new work."""
    publish_file(file, parents=(), upstream_bps=None, **fields)


def parse_parent(text: str) -> Parent:
    """``RECORD_ID`` or ``RECORD_ID:WEIGHT``."""
    record_id, _, weight = text.partition(":")
    if weight and not weight.isdigit():
        raise click.UsageError(f"bad parent weight in {text!r}: expected RECORD_ID[:WEIGHT]")
    return Parent(Cid.parse(record_id), int(weight) if weight else None)


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="PARENT_ID[:WEIGHT]... FILE")
@contribution_options
@click.option(
    "--upstream-bps",
    type=click.IntRange(0, 10_000),
    default=None,
    help="Basis points of credit passed to the parents [default: 5000].",
)
@json_option
def remix(args: tuple[str, ...], **fields: Any) -> None:
    """Publish FILE as a remix of one or more works (optionally weighted)."""
    if len(args) < 2:
        raise click.UsageError("remix needs at least one PARENT_ID and a FILE")
    parents = tuple(parse_parent(text) for text in args[:-1])
    publish_file(Path(args[-1]), parents=parents, **fields)


@cli.command()
@click.argument("record_id")
@json_option
def show(record_id: str) -> None:
    """Show a record: its fields, signature status and content."""
    options = settings()
    with options.backend() as node:
        detail = node.record(parse_cid(record_id))
        author = str(detail.record["author"])
        names = node.author_names([author])
    if options.json:
        remixed_by = [str(child) for child in detail.remixed_by]
        render.print_json({**with_author_name(detail.record, names), "remixed_by": remixed_by})
        return
    render.show_record_view(detail.record, len(detail.remixed_by), names.get(author))


@cli.command()
@click.argument("cid")
def cat(cid: str) -> None:
    """Write the content of CID (or of a record id) to stdout, verified."""
    with settings().backend() as node:
        out = sys.stdout.buffer
        node.write_content(parse_cid(cid), out)
        out.flush()


@cli.command()
@click.argument("cid")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where.")
@click.option(
    "--pin/--no-pin",
    default=True,
    show_default=True,
    help="Keep content fetched from peers (and provide it to others).",
)
@json_option
def get(cid: str, output: Path, pin: bool) -> None:
    """Write the content of CID (or of a record id) to a file, verified and atomically.

    With a daemon running, what is not in the local store is fetched from peers first.
    """
    options = settings()
    with options.backend() as node:
        wanted = parse_cid(cid)
        with render.progress_report(f"getting {output.name}", quiet=options.json) as report:
            retrieved = node.get(wanted, output, report, pin=pin)
    fetched = retrieved.fetched
    if options.json:
        render.print_json(
            {
                "content": str(retrieved.content),
                "path": str(output),
                "size": retrieved.size,
                "fetched": fetched,
            }
        )
        return
    if fetched is not None:
        peers = len(fetched.get("bytes_by_peer") or {})
        render.stdout.print(
            f"fetched {fetched['bytes_fetched']} bytes in {fetched['blocks_fetched']} blocks"
            f" from {peers} peer(s) in {fetched['elapsed']} s"
            f" ({fetched['blocks_present']} blocks were already here)",
            markup=False,
        )
    render.stdout.print(
        f"wrote {retrieved.size} bytes of {retrieved.content} to {output}", markup=False
    )


def not_empty(context: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    if value == "":
        raise click.BadParameter("must not be empty")
    return value


@cli.command(name="ls")
@click.option("--author", help="Author id (PeerID), or 'me'.")
@click.option("--tag", callback=not_empty, help="Only records with this tag.")
@click.option("--media-type", callback=not_empty, help="MIME type, or 'image/*' for a whole kind.")
@click.option(
    "--type", "record_type", type=click.Choice([t.value for t in RecordType]), help="Record type."
)
@click.option("--title", callback=not_empty, help="Text the title contains.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@json_option
def list_command(
    author: str | None,
    tag: str | None,
    media_type: str | None,
    record_type: str | None,
    title: str | None,
    limit: int,
) -> None:
    """List records in the store, newest first."""
    options = settings()
    with options.backend() as node:
        if author is not None and author != "me":
            public_key_of(author)  # InvalidAuthorId for anything but a PeerID
        query = RecordQuery(
            author=author,
            tag=tag,
            media_type=media_type,
            record_type=RecordType(record_type) if record_type else None,
            title=title,
            limit=limit,
        )
        records = node.records(query)
        names = node.author_names(str(r["author"]) for r in records)
    if options.json:
        render.print_json([with_author_name(record, names) for record in records])
    elif records:
        render.print_record_views(records, names)
    else:
        render.stderr.print("no records match", markup=False)


@cli.command()
@click.argument("record_id")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["tree", "json", "dot", "svg"]),
    default="tree",
    show_default=True,
    help="tree: a text tree; json: every record (as --json); dot/svg: a drawing.",
)
@click.option("--depth", type=click.IntRange(1, MAX_LINEAGE_DEPTH), default=50, show_default=True)
@click.option(
    "--production",
    "production_id",
    help="With dot/svg: show this production's credit flow.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With dot/svg: write the drawing to this file [default: stdout].",
)
@click.option(
    "--max-nodes",
    type=click.IntRange(2, MAX_GRAPH_NODES),
    default=DEFAULT_GRAPH_NODES,
    show_default=True,
    help="With dot/svg: fail rather than draw more records.",
)
@json_option
def lineage(
    record_id: str,
    output_format: str,
    depth: int,
    production_id: str | None,
    output: Path | None,
    max_nodes: int,
) -> None:
    """Show what a record remixes (ancestors) and what remixes it (descendants).

    --format json (or --json) lists every generation (up to 1000), whatever
    --depth says. --format svg or dot draws the DAG around a contribution or a
    production, with the credit flow of a production: `lineage PRODUCTION_ID
    --format svg -o credits.svg`.
    """
    options = settings()
    if output_format in ("dot", "svg"):
        draw_lineage(record_id, output_format, production_id, output, depth, max_nodes)
        return
    if production_id is not None or output is not None:
        raise click.UsageError("--production and -o go with --format dot or svg")
    as_json = options.json or output_format == "json"
    with options.backend() as node:
        graph = node.lineage(parse_cid(record_id), MAX_LINEAGE_DEPTH if as_json else depth)
        authors = (str(view["author"]) for view in graph.records.values())
        names = node.author_names(authors)
    if as_json:
        render.print_json(graph.to_json(names))
    else:
        render.stdout.print(render.lineage_tree(graph, depth, names))
    if graph.truncated:
        render.stderr.print(
            f"note: the lineage is larger than {MAX_LINEAGE_RECORDS} records each way;"
            " the rest is not shown",
            markup=False,
        )


@cli.command()
@click.option("--repair", is_flag=True, help="Remove what is corrupt and fix the index.")
@json_option
def fsck(repair: bool) -> None:
    """Verify every block against its CID and every record's signature."""
    options = settings()
    with (
        options.backend() as node,
        render.progress_report("checking", quiet=options.json) as report_progress,
    ):
        report = node.fsck(repair, report_progress)
    problems = {
        "corrupt_blocks": report.corrupt_blocks,
        "missing_blocks": report.missing_blocks,
        "stray_files": report.stray_files,
        "bad_records": report.bad_records,
    }
    if options.json:
        render.print_json(
            {
                "clean": report.clean,
                "blocks_checked": report.blocks_checked,
                "records_checked": report.records_checked,
                "repaired": report.repaired,
                "unindexed_blocks": report.unindexed_blocks,
                **problems,
            }
        )
    else:
        for kind, names in problems.items():
            for name in names:
                render.stdout.print(f"{kind.replace('_', ' ')[:-1]}: {name}", markup=False)
        if report.unindexed_blocks and not repair:
            render.stdout.print(
                f"note: {len(report.unindexed_blocks)} valid block(s) not yet indexed"
                " (left by an interrupted command; --repair indexes them)",
                markup=False,
            )
        verdict = "clean" if report.clean else f"{report.problems} problem(s)"
        if report.repaired and not report.clean:
            verdict += ", repaired"
        render.stdout.print(
            f"checked {report.blocks_checked} blocks and {report.records_checked} records: "
            f"{verdict}",
            markup=False,
        )
    if not report.clean and not repair:
        sys.exit(EXIT_ERROR)


@cli.command(name="export")
@click.argument("record_id")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="The .car file."
)
@json_option
def export_command(record_id: str, output: Path) -> None:
    """Export a record, its ancestors' records and all their content as a CARv1."""
    options = settings()
    with options.backend() as node:
        root = parse_cid(record_id)
        with render.progress_report(f"exporting {output.name}", quiet=options.json) as report:
            blocks = node.export(root, output, report)
    if options.json:
        render.print_json({"root": str(root), "path": str(output), "blocks": blocks})
    else:
        render.stdout.print(f"wrote {blocks} blocks to {output}", markup=False)


@cli.command(name="import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def import_command(file: Path) -> None:
    """Import a CARv1 archive, verifying every block and record."""
    options = settings()
    with (
        options.backend() as node,
        render.progress_report(f"importing {file.name}", quiet=options.json) as report,
    ):
        imported = node.import_car(file, report)
    if options.json:
        render.print_json(
            {
                "roots": [str(root) for root in imported.roots],
                "records": imported.records,
                "blocks": imported.blocks,
                "incomplete": [str(root) for root in imported.incomplete],
            }
        )
    else:
        render.stdout.print(
            f"imported {imported.blocks} blocks ({imported.records} records)", markup=False
        )
    if imported.incomplete:
        fail(
            f"{file} is truncated: the content {imported.incomplete[0]} is incomplete"
            f" ({len(imported.incomplete)} work(s) affected; the rest was imported)"
        )
