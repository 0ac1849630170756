"""Terminal output of the CLI: progress bars, tables, trees, JSON.

Everything for humans goes through ``rich``; ``--json`` output is one JSON
document on stdout. Progress bars go to stderr and only when it is a terminal,
so pipes and scripts see clean output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.tree import Tree

from protocol.cid import Cid
from protocol.records import SignedRecord, to_json

if TYPE_CHECKING:
    from node.cli_backend import LineageGraph

# Piped output is not cut to 80 columns: scripts get whole ids and titles.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 100_000)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        disable=quiet or not stderr.is_terminal,
    )


@contextmanager
def progress_bar(
    description: str, total: int | None, *, quiet: bool
) -> Iterator[Callable[[int], None]]:
    """A byte-count progress bar on stderr; yields ``advance(n_bytes)``.

    Hidden when ``quiet`` (``--json``) or when stderr is not a terminal. The
    callback is thread-safe (rich locks), so a worker thread may call it.
    """
    with _progress(quiet) as progress:
        task = progress.add_task(description, total=total)

        def advance(done: int) -> None:
            progress.advance(task, done)

        yield advance


@contextmanager
def progress_report(
    description: str, *, quiet: bool
) -> Iterator[Callable[[int, int | None], None]]:
    """Like ``progress_bar``, but yields ``report(done, total)`` with cumulative counts.

    That is the shape of the daemon's ``progress`` notifications; ``total``
    None leaves the total as it was (unknown at first).
    """
    with _progress(quiet) as progress:
        task = progress.add_task(description, total=None)

        def report(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield report


def record_title(record: SignedRecord) -> str:
    return view_title(to_json(record))


def view_title(view: Mapping[str, Any]) -> str:
    """A record view's title (or a profile's name), else its type."""
    for key in ("title", "name"):
        value = view.get(key)
        if isinstance(value, str):
            return value
    return str(view.get("type"))


def short_author(author_id: str) -> str:
    """``12D3KooW…ab12cd``: enough to tell artists apart in a listing."""
    return f"{author_id[:8]}…{author_id[-6:]}"


def author_label(author_id: str, name: object, *, short: bool = True) -> str:
    """``Ada (12D3KooW…ab12cd)`` when the author's profile name is known, else the id.

    ``short`` shortens the id (listings); the full id is for fields to copy.
    """
    shown = short_author(author_id) if short else author_id
    return f"{name} ({shown})" if isinstance(name, str) and name else shown


def print_records(records: list[SignedRecord]) -> None:
    """One line per record, like ``git log --oneline``: full id first, to copy."""
    print_record_views([to_json(record) for record in records])


def print_record_views(
    views: list[Mapping[str, Any]], names: Mapping[str, str] | None = None
) -> None:
    """``print_records`` for record views (``to_json``, or what the daemon sends).

    The author column shows the profile name from ``names`` (author id -> name)
    or the view's own ``author_name`` when known.
    """
    rows = [
        (
            str(view["id"]),
            str(view["type"]),
            str(view["media_type"]) if view["type"] == "contribution" else "-",
            author_label(str(view["author"]), _name_of(view, names)),
            view_title(view),
        )
        for view in views
    ]
    # Padded by terminal cells: names may hold wide (CJK) characters.
    widths = [max(cell_len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        fixed = "  ".join(
            cell + " " * (width - cell_len(cell)) for cell, width in zip(row, widths, strict=False)
        )
        stdout.print(f"{fixed}  {row[4]}", markup=False)


def _name_of(view: Mapping[str, Any], names: Mapping[str, str] | None) -> object:
    if names is not None and str(view["author"]) in names:
        return names[str(view["author"])]
    return view.get("author_name")


def show_record(record: SignedRecord, remixed_by: int) -> None:
    """Print a record's fields as ``key  value`` lines, leaving out empty ones."""
    show_record_view(to_json(record), remixed_by)


def show_record_view(
    record: Mapping[str, Any], remixed_by: int, author_name: str | None = None
) -> None:
    """``show_record`` for a record view (a verified record's ``to_json``).

    With ``author_name`` (the author's profile name) the author reads ``Ada (12D3KooW…)``.
    """
    view = {**record, "signature": "valid", "remixed_by": f"{remixed_by} record(s)"}
    view["author"] = author_label(str(record["author"]), author_name, short=False)
    shown = {key: value for key, value in view.items() if value not in (None, "", [])}
    width = max(len(key) for key in shown)
    for key, value in shown.items():
        if isinstance(value, list):
            rendered = ", ".join(
                json.dumps(item, sort_keys=True) if isinstance(item, dict) else str(item)
                for item in value
            )
        else:
            rendered = str(value)
        stdout.print(f"{key:<{width}}  {rendered}", markup=False)


def lineage_tree(graph: LineageGraph, depth: int, names: Mapping[str, str] | None = None) -> Tree:
    """Ancestors (what it remixes) and descendants (its remixes) of ``graph.root``.

    ``names`` maps author ids to profile names, shown as ``by Ada (12D3KooW…)``.
    """

    def label(record_id: Cid) -> str:
        view = graph.records.get(record_id)
        if view is None:
            return f"{record_id} [dim](not in this store)[/dim]"
        title = _escape(view_title(view))
        author = _escape(author_label(str(view["author"]), _name_of(view, names)))
        return f"[bold]{title}[/bold] {record_id} [dim]by {author}[/dim]"

    root = graph.root
    tree = Tree(label(root))
    ancestors = tree.add("[cyan]remixes[/cyan]")
    _grow(ancestors, root, graph.parents_of, label, depth, set())
    descendants = tree.add("[magenta]remixed by[/magenta]")
    _grow(descendants, root, graph.children_of, label, depth, set())
    for branch in (ancestors, descendants):
        if not branch.children:
            branch.add("[dim](nothing)[/dim]")
    return tree


def _grow(
    branch: Tree,
    start: Cid,
    neighbours: Callable[[Cid], list[Cid]],
    label: Callable[[Cid], str],
    depth: int,
    expanded: set[Cid],
) -> None:
    if depth <= 0:
        return
    for neighbour in neighbours(start):
        if neighbour in expanded:
            branch.add(label(neighbour) + " [dim](shown above)[/dim]")
            continue
        expanded.add(neighbour)
        _grow(branch.add(label(neighbour)), neighbour, neighbours, label, depth - 1, expanded)


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
