"""Renders the generated parts of ``docs/rpc.md`` from ``node.rpc_api``.

``docs/rpc.md`` is prose written by hand around three generated sections,
each between ``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED:
name -->``: the error codes, the methods and the events. ``python -m
node.rpc_docs --write`` regenerates them; without ``--write`` it exits 1 when
the file is stale (``tests/test_rpc_docs.py`` does the same check).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from node.rpc_api import ERRORS, EVENT_NOTIFICATION, EVENTS, METHODS
from node.rpc_schema import MethodSpec, ResultField

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "rpc.md"
_SECTION = re.compile(
    r"(<!-- BEGIN GENERATED: (?P<name>[a-z]+) -->\n)"
    r"(?P<body>.*?)"
    r"(<!-- END GENERATED: (?P=name) -->)",
    re.S,
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _fields_table(fields: Sequence[ResultField], heading: str) -> list[str]:
    lines = [f"| {heading} | type | description |", "|---|---|---|"]
    lines += [f"| `{f.name}` | {_cell(f.type)} | {_cell(f.doc)} |" for f in fields]
    return lines


def render_method(spec: MethodSpec[Any]) -> str:
    lines = [f"### `{spec.name}`", "", spec.summary, ""]
    infos = spec.param_infos()
    if infos:
        lines += ["| param | type | default | description |", "|---|---|---|---|"]
        for info in infos:
            default = "required" if info.required else f"`{_compact(info.default)}`"
            if isinstance(info.default, tuple):
                default = f"`{_compact(list(info.default))}`"
            lines.append(
                f"| `{info.name}` | {_cell(info.kind.name)} | {default} | {_cell(info.doc)} |"
            )
    else:
        lines.append("No params.")
    lines += ["", *_fields_table(spec.result, "result"), ""]
    if spec.errors:
        codes = ", ".join(f"`{code}`" for code in spec.errors)
        lines += [f"Errors besides the standard ones: {codes}.", ""]
    if spec.long_running:
        lines += [
            'Runs in a worker thread; with `"progress": true` the caller receives'
            " `progress` notifications.",
            "",
        ]
    if spec.notes:
        lines += [spec.notes, ""]
    request = {"jsonrpc": "2.0", "method": spec.name, "params": dict(spec.example.params), "id": 1}
    response = {"jsonrpc": "2.0", "result": dict(spec.example.result), "id": 1}
    lines += ["```", f"--> {_compact(request)}", f"<-- {_compact(response)}", "```", ""]
    return "\n".join(lines)


def render_methods() -> str:
    return "\n".join(render_method(spec) for spec in METHODS)


def render_errors() -> str:
    lines = ["| code | name | when | `data` |", "|---|---|---|---|"]
    lines += [
        f"| {error.code} | {error.name} | {_cell(error.meaning)} | {_cell(error.data)} |"
        for error in ERRORS
    ]
    return "\n".join(lines) + "\n"


def render_events() -> str:
    parts = []
    for event in EVENTS:
        example = {
            "jsonrpc": "2.0",
            "method": EVENT_NOTIFICATION,
            "params": {"subscription": 1, "event": event.name, "data": dict(event.example)},
        }
        parts += [
            f"### `{event.name}`",
            "",
            event.summary,
            "",
            *_fields_table(event.data, "data"),
            "",
            "```",
            f"<-- {_compact(example)}",
            "```",
            "",
        ]
    return "\n".join(parts)


RENDERERS: dict[str, Callable[[], str]] = {
    "errors": render_errors,
    "methods": render_methods,
    "events": render_events,
}


def regenerate(text: str) -> str:
    """``text`` with every generated section replaced by its current rendering."""
    found = {match["name"] for match in _SECTION.finditer(text)}
    missing = set(RENDERERS) - found
    if missing:
        raise ValueError(f"docs/rpc.md has no generated section {sorted(missing)[0]!r}")
    return _SECTION.sub(
        lambda match: match[1] + RENDERERS[match["name"]]() + match[4],
        text,
    )


def main(argv: list[str]) -> int:
    text = DOC_PATH.read_text(encoding="utf-8")
    updated = regenerate(text)
    if "--write" in argv:
        DOC_PATH.write_text(updated, encoding="utf-8")
        return 0
    if updated != text:
        sys.stderr.write(f"{DOC_PATH} is stale: run python -m node.rpc_docs --write\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
