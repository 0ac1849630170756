"""Drawings of the remix DAG: Graphviz DOT text and a self-made SVG (``remixnet graph``).

This module owns what a drawing shows: ``build_graph`` picks the records
around a root from a store (ancestors and remixes of a contribution, or
everything a production's credit reaches) and, given a production, the credit
flow (what each contribution keeps, what each edge passes up). ``to_dot`` and
``to_svg`` render that model; ``node.graph_layout`` decides where things go.

Invariants: every piece of text that comes from a record (titles, names,
media types) is escaped for its output (XML for SVG, DOT strings for DOT) and
stripped of code points XML cannot hold, so the SVG is always well-formed
XML; the same store gives the same bytes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Final, Literal

from node.graph_layout import Layout, Spacing, layout_dag
from node.productions import production_split, profile_name, record_lookup
from node.render import short_author
from node.store import Store
from protocol.cid import Cid
from protocol.errors import RemoteProtocolError
from protocol.lineage import CreditSplit
from protocol.records import Contribution, Production, SignedRecord

NodeKind = Literal["contribution", "production", "missing", "other"]
MAX_NODES: Final = 400


class GraphTooLarge(RemoteProtocolError):
    """More records than a drawing can show legibly (the caller asked for too much)."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            "graph-too-large",
            f"more than {limit} records ({count} so far); draw less with --depth"
            " or allow more with --max-nodes",
        )


@dataclass(frozen=True, slots=True)
class GraphNode:
    record_id: Cid
    kind: NodeKind
    title: str
    author: str  # profile name, else the short author id; "" when unknown
    detail: str  # media type, "production", "not in this store"…
    credit: str  # the credit annotation, "" without a production
    root: bool = False


@dataclass(frozen=True, slots=True)
class GraphEdge:
    parent: Cid  # the work remixed (or a contribution a production uses)
    child: Cid  # the remix (or the production)
    label: str  # credit passed up this edge, "" without a production


@dataclass(frozen=True, slots=True)
class LineageGraph:
    caption: str
    legend: str
    nodes: tuple[GraphNode, ...]  # ordered by binary record id
    edges: tuple[GraphEdge, ...]  # ordered by (parent, child) binary ids


def format_bps(value: Fraction) -> str:
    """Basis points for a label: ``2500``, ``87.5``, ``≈1666.67`` or ``<0.01`` when not exact."""
    if value.denominator == 1:
        return str(value.numerator)
    if (value * 100).denominator == 1:
        return f"{float(value):.2f}".rstrip("0")
    if value < Fraction(1, 200):
        return "<0.01"
    return f"≈{float(value):.2f}"


def build_graph(
    store: Store,
    root: Cid,
    *,
    production: Cid | None = None,
    depth: int = 50,
    max_nodes: int = MAX_NODES,
) -> LineageGraph:
    """The records to draw around ``root`` and, with a production, its credit flow.

    A contribution root brings its ancestors and its remixes, ``depth``
    generations each way; a production root brings the production, the
    contributions it credits and their ancestors, and implies
    ``production=root``. Raises ``NotFound`` (unknown root or production),
    ``InvalidProduction`` and ``GraphTooLarge``.
    """
    get = record_lookup(store)
    root_record = store.get_record(root)
    if isinstance(root_record.body, Production) and production is None:
        production = root
    split = production_split(store, production) if production is not None else None

    records: dict[Cid, SignedRecord | None] = {root: root_record}
    edges: set[tuple[Cid, Cid]] = set()

    def admit(record_id: Cid) -> bool:
        if record_id in records:
            return False
        if len(records) >= max_nodes:
            raise GraphTooLarge(len(records) + 1, max_nodes)
        records[record_id] = get(record_id)
        return True

    def parents_of(record: SignedRecord | None) -> list[Cid]:
        if record is None:
            return []
        if isinstance(record.body, Contribution):
            return [parent.record_id for parent in record.body.parents]
        if isinstance(record.body, Production):
            return [credit.contribution for credit in record.body.credits]
        return []

    level = [root]
    for _ in range(depth):  # ancestors (and, for a production, what it credits)
        following = []
        for record_id in level:
            for parent in parents_of(records[record_id]):
                edges.add((parent, record_id))
                if admit(parent):
                    following.append(parent)
        level = following
    if not isinstance(root_record.body, Production):
        level = [root]
        for _ in range(depth):  # remixes
            following = []
            for record_id in level:
                for child in store.children_of(record_id):
                    edges.add((record_id, child))
                    if admit(child):
                        following.append(child)
            level = following
    if production is not None and production not in records:
        production_record = store.get_record(production)
        used = [cid for cid in parents_of(production_record) if cid in records]
        if used:
            admit(production)
            edges.update((cid, production) for cid in used)

    names: dict[bytes, str] = {}
    nodes = [
        _graph_node(store, record_id, record, split, names, root)
        for record_id, record in sorted(records.items(), key=lambda item: item[0].to_bytes())
    ]
    flows = {(flow.parent, flow.remix): flow.exact_bps for flow in split.flows} if split else {}
    credited = dict(split.credited) if split else {}
    graph_edges = []
    for parent, child in sorted(edges, key=lambda e: (e[0].to_bytes(), e[1].to_bytes())):
        label = ""
        if split is not None:
            if child == production:
                label = f"{credited.get(parent, 0)} bps"
            elif (parent, child) in flows:
                label = f"{format_bps(flows[(parent, child)])} bps"
        graph_edges.append(GraphEdge(parent, child, label))
    return LineageGraph(
        caption=_caption(root_record, store, production),
        legend=(
            "arrows: from a work to its remix · in a box: credit its author keeps, of what"
            " reached it · on an arrow: credit passed back along it (basis points of 10000)"
            if split is not None
            else "arrows: from a work to its remix"
        ),
        nodes=tuple(nodes),
        edges=tuple(graph_edges),
    )


def _caption(root: SignedRecord, store: Store, production: Cid | None) -> str:
    title = getattr(root.body, "title", str(root.type))
    if production is None:
        return f"Lineage of “{title}”"
    production_title = getattr(store.get_record(production).body, "title", "")
    if production == root.id:
        return f"Credit flow of the production “{production_title}”"
    return f"Lineage of “{title}”, with the credit flow of “{production_title}”"


def _graph_node(
    store: Store,
    record_id: Cid,
    record: SignedRecord | None,
    split: CreditSplit | None,
    names: dict[bytes, str],
    root: Cid,
) -> GraphNode:
    is_root = record_id == root
    if record is None:
        credit = ""
        if split is not None and record_id in split.received:
            credit = f"unresolved: {format_bps(split.received_bps(record_id))} bps"
        return GraphNode(record_id, "missing", short_id(record_id), "", "not in this store", credit)
    if record.author not in names:
        names[record.author] = profile_name(store, record.author) or short_author(record.author_id)
    author = names[record.author]
    body = record.body
    if isinstance(body, Production):
        credit = "splits 10000 bps" if split is not None else ""
        return GraphNode(record_id, "production", body.title, author, "production", credit, is_root)
    if isinstance(body, Contribution):
        credit = ""
        if split is not None:
            if record_id in split.received:
                kept = split.kept_bps(record_id)
                received = split.received_bps(record_id)
                credit = f"keeps {format_bps(kept)} of {format_bps(received)} bps"
            else:
                credit = "no credit"
        return GraphNode(
            record_id, "contribution", body.title, author, body.media_type, credit, is_root
        )
    title = getattr(body, "title", getattr(body, "name", str(record.type)))
    return GraphNode(record_id, "other", title, author, str(record.type), "", is_root)


def short_id(record_id: Cid) -> str:
    text = str(record_id)
    return f"{text[:10]}…{text[-6:]}"


# -- DOT ----------------------------------------------------------------------------


def _dot_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped.replace(chr(13), "")}"'


_DOT_STYLE: Final = {
    "contribution": 'style="rounded", color="#4a5568"',
    "production": 'style="rounded,filled", fillcolor="#fff4e0", color="#c05621"',
    "missing": 'style="rounded,dashed", color="#a0aec0", fontcolor="#718096"',
    "other": 'style="rounded", color="#a0aec0"',
}


def to_dot(graph: LineageGraph) -> str:
    """Graphviz DOT text: ``dot -Tsvg`` or ``dot -Tpng`` draws it."""
    lines = [
        "digraph lineage {",
        "  graph [rankdir=TB, labelloc=t, fontname=Helvetica,"
        f" label={_dot_string(graph.caption)}];",
        "  node [shape=box, fontname=Helvetica, fontsize=11];",
        '  edge [fontname=Helvetica, fontsize=10, color="#4a5568", fontcolor="#b45309"];',
    ]
    for node in graph.nodes:
        label = "\n".join(
            part for part in (node.title, _by(node.author), node.detail, node.credit) if part
        )
        style = _DOT_STYLE[node.kind] + (", penwidth=2" if node.root else "")
        tooltip = _dot_string(str(node.record_id))
        lines.append(
            f"  {_dot_string(str(node.record_id))} [label={_dot_string(label)}, {style},"
            f" tooltip={tooltip}];"
        )
    for edge in graph.edges:
        attributes = f" [label={_dot_string(edge.label)}]" if edge.label else ""
        lines.append(
            f"  {_dot_string(str(edge.parent))} -> {_dot_string(str(edge.child))}{attributes};"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _by(author: str) -> str:
    return f"by {author}" if author else ""


# -- SVG ----------------------------------------------------------------------------

# XML 1.0 cannot hold C0 controls other than tab/newline/CR, surrogates, U+FFFE/U+FFFF.
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_FONT: Final = "Helvetica, Arial, sans-serif"
BOX_WIDTH: Final = 240.0
LINE_HEIGHT: Final = 16.0
PADDING: Final = 10.0
MARGIN: Final = 24.0
_COLOURS: Final = {
    # kind: (fill, stroke, dash)
    "contribution": ("#ffffff", "#4a5568", ""),
    "production": ("#fff4e0", "#c05621", ""),
    "missing": ("#f7fafc", "#a0aec0", "5,4"),
    "other": ("#ffffff", "#a0aec0", ""),
}


def xml_text(text: str) -> str:
    """``text`` safe inside an XML element or a double-quoted attribute."""
    clean = _NOT_XML.sub("\ufffd", text)
    return (
        clean.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def text_width(text: str, font_size: float) -> float:
    """An estimate of the drawn width: wide (CJK) characters 1 em, others 0.6 em."""
    return sum(
        font_size if unicodedata.east_asian_width(char) in "WF" else 0.6 * font_size
        for char in text
    )


def fit(text: str, width: float, font_size: float) -> str:
    """``text``, cut with an ellipsis so that it fits in ``width``."""
    if text_width(text, font_size) <= width:
        return text
    cut = text
    while cut and text_width(cut + "…", font_size) > width:
        cut = cut[:-1]
    return cut.rstrip() + "…"


def to_svg(graph: LineageGraph) -> str:
    """A standalone SVG drawing: layered, parents above their remixes."""
    annotated = any(node.credit for node in graph.nodes)
    lines_per_box = 4 if annotated else 3
    box_height = lines_per_box * LINE_HEIGHT + 2 * PADDING
    spacing = Spacing(node_width=BOX_WIDTH, node_height=box_height)
    layout: Layout[Cid] = layout_dag(
        [node.record_id for node in graph.nodes],
        [(edge.parent, edge.child) for edge in graph.edges],
        spacing,
    )
    header = 2 * LINE_HEIGHT + 12
    legend_width = text_width(graph.legend, 11) + 2 * MARGIN
    caption_width = text_width(graph.caption, 15) + 2 * MARGIN
    width = max(layout.width + 2 * MARGIN, legend_width, caption_width)
    height = layout.height + 2 * MARGIN + header
    left = (width - layout.width) / 2  # centre the drawing under the caption
    top = MARGIN + header

    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}"'
        f' viewBox="0 0 {width:.0f} {height:.0f}" font-family="{_FONT}">',
        f"<title>{xml_text(graph.caption)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5"'
        ' markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#4a5568"/></marker></defs>',
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 12}" font-size="15" font-weight="bold"'
        f' fill="#1a202c">{xml_text(graph.caption)}</text>',
        f'<text x="{MARGIN}" y="{MARGIN + 12 + LINE_HEIGHT + 4}" font-size="11"'
        f' fill="#4a5568">{xml_text(graph.legend)}</text>',
    ]
    out += _svg_edges(graph.edges, layout, left, top)
    for node in graph.nodes:
        x, y = layout.positions[node.record_id]
        out += _svg_box(node, left + x - BOX_WIDTH / 2, top + y, box_height)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _ports(
    edges: list[GraphEdge], routes: dict[tuple[Cid, Cid], list[tuple[float, float]]]
) -> None:
    """Spread the ends of the edges meeting at one box along its side, in the order they come.

    Moves the first and last point of each route in place, so that arrows
    into (and out of) the same box do not all meet in one spot.
    """
    outgoing: dict[Cid, list[GraphEdge]] = {}
    incoming: dict[Cid, list[GraphEdge]] = {}
    for edge in edges:
        outgoing.setdefault(edge.parent, []).append(edge)
        incoming.setdefault(edge.child, []).append(edge)

    def spread(group: list[GraphEdge], end: int, towards: int) -> None:
        group.sort(key=lambda e: routes[(e.parent, e.child)][towards][0])
        span = min(BOX_WIDTH * 0.6, (len(group) - 1) * 26.0)
        for index, edge in enumerate(group):
            route = routes[(edge.parent, edge.child)]
            offset = -span / 2 + span * index / (len(group) - 1) if len(group) > 1 else 0.0
            x, y = route[end]
            route[end] = (x + offset, y)

    for group in outgoing.values():
        spread(group, 0, 1)
    for group in incoming.values():
        spread(group, -1, -2)


def _svg_edges(
    edges: Iterable[GraphEdge], layout: Layout[Cid], left: float, top: float
) -> list[str]:
    edges = list(edges)
    routes = {key: list(points) for key, points in layout.routes.items()}
    _ports(edges, routes)
    paths: list[str] = []
    labels: list[str] = []
    for edge in edges:
        points = [(left + x, top + y) for x, y in routes[(edge.parent, edge.child)]]
        commands = [f"M {points[0][0]:.1f} {points[0][1]:.1f}"]
        for (x0, y0), (x1, y1) in pairwise(points):
            middle = (y0 + y1) / 2
            commands.append(f"C {x0:.1f} {middle:.1f}, {x1:.1f} {middle:.1f}, {x1:.1f} {y1:.1f}")
        paths.append(
            f'<path d="{" ".join(commands)}" fill="none" stroke="#4a5568" stroke-width="1.3"'
            ' marker-end="url(#arrow)"/>'
        )
        if edge.label:
            # Halfway along the route's middle segment: clear of the boxes.
            index = (len(points) - 1) // 2
            (x0, y0), (x1, y1) = points[index], points[index + 1]
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            label_width = text_width(edge.label, 11) + 8
            labels.append(
                f'<rect x="{cx - label_width / 2:.1f}" y="{cy - 9:.1f}" width="{label_width:.1f}"'
                ' height="16" rx="3" fill="#fffaf0" stroke="#f6ad55" stroke-width="0.6"/>'
                f'<text x="{cx:.1f}" y="{cy + 3:.1f}" font-size="11" text-anchor="middle"'
                f' fill="#b45309">{xml_text(edge.label)}</text>'
            )
    return paths + labels  # labels over every edge


def _svg_box(node: GraphNode, x: float, y: float, height: float) -> list[str]:
    fill, stroke, dash = _COLOURS[node.kind]
    inner = BOX_WIDTH - 2 * PADDING
    dash_attribute = f' stroke-dasharray="{dash}"' if dash else ""
    stroke_width = 2.4 if node.root else 1.2
    out = [
        f'<g class="{node.kind}">',
        f"<title>{xml_text(node.title)} — {xml_text(str(node.record_id))}</title>",
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{BOX_WIDTH:.0f}" height="{height:.0f}" rx="7"'
        f' fill="{fill}" stroke="{stroke}" stroke-width="{stroke_width}"{dash_attribute}/>',
    ]
    lines = [
        (node.title, 13, "bold", "#1a202c"),
        (_by(node.author), 11, "normal", "#2d3748"),
        (node.detail, 11, "normal", "#718096"),
    ]
    if node.credit:
        lines.append((node.credit, 12, "bold", "#b45309"))
    for index, (text, size, weight, colour) in enumerate(line for line in lines if line[0]):
        baseline = y + PADDING + (index + 1) * LINE_HEIGHT - 4
        out.append(
            f'<text x="{x + PADDING:.1f}" y="{baseline:.1f}" font-size="{size}"'
            f' font-weight="{weight}" fill="{colour}">{xml_text(fit(text, inner, size))}</text>'
        )
    out.append("</g>")
    return out
