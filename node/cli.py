"""The ``remixnet`` command.

A thin layer: parse arguments, call the store or the transfer operations,
render the result. Commands that make sense offline (init, add, remix, show,
cat, get, ls, lineage, fsck, export, import) work on the data directory
directly. Every command takes ``--json``. Every error a user can cause is one
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from node import render
from node.datadir import DataDir, DataDirError, default_data_dir
from node.operations import DEFAULT_LICENSE, WorkFields, publish
from node.store import NotFound, RecordFilter, Store
from node.transfer import (
    export_car,
    get_file,
    import_car,
    lineage_records,
    resolve_content,
    write_stream,
)
from protocol.car import InvalidCar
from protocol.cid import Cid
from protocol.content import InvalidDag
from protocol.errors import BlockMismatch, InvalidCid, ProtocolError
from protocol.identity import InvalidAuthorId, public_key_of
from protocol.records import (
    Contribution,
    InvalidRecord,
    Parent,
    RecordType,
    to_json,
)

EXIT_ERROR = 1
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True)
class Settings:
    data_dir: DataDir
    json: bool = False

    def open_store(self) -> Store:
        return Store(self.data_dir)


def json_option(command: F) -> F:
    """Add ``--json`` (machine-readable output on stdout) to a command."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
    @functools.wraps(command)
    def wrapper(*args: Any, as_json: bool, **kwargs: Any) -> Any:
        click.get_current_context().find_object(Settings).json = as_json  # type: ignore[union-attr]
        return command(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    found = click.get_current_context().find_object(Settings)
    assert found is not None
    return found


def parse_cid(text: str) -> Cid:
    return Cid.parse(text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Node data directory [default: $REMIXNET_DATA_DIR or the platform's user data dir].",
)
@click.version_option(package_name="remixnet")
@click.pass_context
def cli(context: click.Context, data_dir: Path | None) -> None:
    """remixnet: publish, remix and credit works of art, peer to peer."""
    context.obj = Settings(DataDir(data_dir if data_dir is not None else default_data_dir()))


@cli.command()
@json_option
def init() -> None:
    """Create the data directory and the artist's identity (once)."""
    options = settings()
    identity, created = options.data_dir.init()
    with options.open_store():
        pass  # creates and migrates the database
    if options.json:
        render.print_json(
            {
                "author": identity.author_id,
                "data_dir": str(options.data_dir.root),
                "created": created,
            }
        )
        return
    verb = "initialised" if created else "already initialised"
    render.stdout.print(f"{verb} {options.data_dir.root}", markup=False)
    render.stdout.print(f"author id: {identity.author_id}", markup=False)


@cli.command(name="id")
@json_option
def identity_command() -> None:
    """Print this node's author id (its libp2p PeerID) and data directory."""
    options = settings()
    identity = options.data_dir.load_identity()
    if options.json:
        render.print_json({"author": identity.author_id, "data_dir": str(options.data_dir.root)})
    else:
        render.stdout.print(identity.author_id, markup=False)


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
    identity = options.data_dir.load_identity()
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
    with options.open_store() as store:
        size = path.stat().st_size
        with render.progress_bar(f"adding {path.name}", size, quiet=options.json) as advance:
            published = publish(store, identity, path, work, advance)
    record, added = published.record, published.added
    if options.json:
        render.print_json({"id": str(record.id), "content": str(added.root), "size": added.size})
        return
    render.stdout.print(f"record  {record.id}", markup=False)
    render.stdout.print(f"content {added.root}  ({added.size} bytes)", markup=False)


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
    with options.open_store() as store:
        record = store.get_record(parse_cid(record_id))
        children = store.children_of(record.id)
    view = to_json(record)
    if options.json:
        render.print_json({**view, "remixed_by": [str(child) for child in children]})
        return
    render.show_record(record, remixed_by=len(children))


@cli.command()
@click.argument("cid")
def cat(cid: str) -> None:
    """Write the content of CID (or of a record id) to stdout, verified."""
    options = settings()
    with options.open_store() as store:
        root, _ = resolve_content(store, parse_cid(cid))
        out = sys.stdout.buffer
        write_stream(store, root, out, lambda done: None)
        out.flush()


@cli.command()
@click.argument("cid")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where.")
@json_option
def get(cid: str, output: Path) -> None:
    """Write the content of CID (or of a record id) to a file, verified and atomically."""
    options = settings()
    with options.open_store() as store:
        root, record = resolve_content(store, parse_cid(cid))
        total = record.body.size if record and isinstance(record.body, Contribution) else None
        with render.progress_bar(f"writing {output.name}", total, quiet=options.json) as advance:
            size = get_file(store, root, output, advance)
    if options.json:
        render.print_json({"content": str(root), "path": str(output), "size": size})
    else:
        render.stdout.print(f"wrote {size} bytes of {root} to {output}", markup=False)


@cli.command(name="ls")
@click.option("--author", help="Author id (PeerID), or 'me'.")
@click.option("--tag", help="Only records with this tag.")
@click.option("--media-type", help="MIME type, or 'image/*' for a whole kind.")
@click.option(
    "--type", "record_type", type=click.Choice([t.value for t in RecordType]), help="Record type."
)
@click.option("--title", help="Text the title contains.")
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
    author_key: bytes | None = None
    if author == "me":
        author_key = options.data_dir.load_identity().public_key
    elif author is not None:
        author_key = public_key_of(author)
    criteria = RecordFilter(
        author=author_key,
        tag=tag,
        media_type=media_type,
        record_type=RecordType(record_type) if record_type else None,
        title_contains=title,
        limit=limit,
    )
    with options.open_store() as store:
        records = store.list_records(criteria)
    if options.json:
        render.print_json([to_json(record) for record in records])
    elif records:
        render.print_records(records)
    else:
        render.stderr.print("no records match", markup=False)


@cli.command()
@click.argument("record_id")
@click.option("--depth", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
def lineage(record_id: str, depth: int) -> None:
    """Show what a record remixes (ancestors) and what remixes it (descendants)."""
    options = settings()
    with options.open_store() as store:
        root = parse_cid(record_id)
        store.get_record(root)  # NotFound for an unknown id
        if options.json:
            render.print_json(lineage_json(store, root))
        else:
            render.stdout.print(render.lineage_tree(store, root, depth))


def lineage_json(store: Store, root: Cid) -> dict[str, object]:
    """Nodes (records held, with their parents) of the ancestry and descendants of ``root``."""
    ancestors = lineage_records(store, root)
    descendants: list[Cid] = []
    seen = {root}
    stack = [root]
    while stack:
        for child in store.children_of(stack.pop()):
            if child not in seen:
                seen.add(child)
                descendants.append(child)
                stack.append(child)
    return {
        "root": str(root),
        "ancestors": [to_json(record) for record in ancestors[1:]],
        "descendants": [to_json(store.get_record(child)) for child in descendants],
        "missing": sorted(
            {
                str(parent)
                for record in ancestors
                for parent, _ in store.parents_of(record.id)
                if not store.has_record(parent)
            }
        ),
    }


@cli.command()
@click.option("--repair", is_flag=True, help="Remove what is corrupt and fix the index.")
@json_option
def fsck(repair: bool) -> None:
    """Verify every block against its CID and every record's signature."""
    options = settings()
    with options.open_store() as store:
        total = store.statistics()["block_bytes"]
        with render.progress_bar("checking", total, quiet=options.json) as advance:
            report = store.fsck(repair=repair, on_progress=advance)
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
    with options.open_store() as store:
        root = parse_cid(record_id)
        with render.progress_bar(f"exporting {output.name}", None, quiet=options.json) as advance:
            blocks = export_car(store, root, output, advance)
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
    with options.open_store() as store:
        size = file.stat().st_size
        with render.progress_bar(f"importing {file.name}", size, quiet=options.json) as advance:
            imported = import_car(store, file, advance)
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


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn every user error into one line."""
    try:
        cli.main(args=argv, prog_name="remixnet", standalone_mode=False)
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except click.ClickException as error:
        fail(
            error.format_message(),
            EXIT_USAGE if isinstance(error, click.UsageError) else error.exit_code,
        )
    except click.exceptions.Exit as exit_request:
        sys.exit(exit_request.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()  # `remixnet cat … | head`: the reader left; nothing to report
        sys.exit(EXIT_ERROR)
    except (DataDirError, NotFound) as error:
        fail(str(error))
    except ProtocolError as error:
        fail(f"{describe(error)}: {error}")
    except OSError as error:
        fail(f"{error.filename}: {error.strerror}" if error.filename else str(error))


ERROR_LABELS: dict[type[ProtocolError], str] = {
    InvalidCid: "not a valid id",
    InvalidAuthorId: "not a valid author id",
    InvalidRecord: "invalid record",
    InvalidCar: "not a valid CAR file",
    InvalidDag: "invalid content",
    BlockMismatch: "integrity error",
}


def describe(error: ProtocolError) -> str:
    """A few words on what kind of input was wrong, for the one-line error."""
    for kind in type(error).__mro__:
        if kind in ERROR_LABELS:
            return ERROR_LABELS[kind]
    return "invalid input"


def fail(message: str, code: int = EXIT_ERROR) -> None:
    sys.stderr.write(f"remixnet: error: {message}\n")
    sys.exit(code)


from node import cli_daemon  # noqa: E402,F401  registers daemon, stop, status, rpc, events
