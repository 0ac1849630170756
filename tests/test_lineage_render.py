"""Drawing the remix DAG: the layered layout and the escaping of user text in SVG and DOT."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from node.graph_layout import Spacing, layout_dag
from node.lineage_render import GraphEdge, GraphNode, LineageGraph, to_dot, to_svg, xml_text
from protocol.cid import Cid

SPACING = Spacing(node_width=100, node_height=40)


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int]]]:
    count = draw(st.integers(1, 25))
    edges = [
        (parent, child)
        for child in range(1, count)
        for parent in draw(st.sets(st.integers(0, child - 1), max_size=3))
    ]
    return list(range(count)), edges


@given(dags())
def test_layout_puts_parents_above_children_and_never_overlaps_boxes(
    dag: tuple[list[int], list[tuple[int, int]]],
) -> None:
    nodes, edges = dag
    layout = layout_dag(nodes, edges, SPACING)
    for parent, child in edges:
        assert layout.positions[parent][1] < layout.positions[child][1]
        route = layout.routes[(parent, child)]
        assert route[0][1] == layout.positions[parent][1] + SPACING.node_height
        assert route[-1] == layout.positions[child]
    by_row: dict[float, list[float]] = {}
    for x, y in layout.positions.values():
        by_row.setdefault(y, []).append(x)
    for xs in by_row.values():
        xs.sort()
        assert all(b - a >= SPACING.node_width - 1e-6 for a, b in pairwise(xs))
    half = SPACING.node_width / 2
    for x, _ in layout.positions.values():
        assert x - half >= -1e-6
        assert x + half <= layout.width + 1e-6


def test_barycentre_ordering_removes_avoidable_crossings() -> None:
    # Given in crossed order: a -> d and b -> c; a straight drawing exists.
    layout = layout_dag(["a", "b", "c", "d"], [("a", "d"), ("b", "c")], SPACING)
    assert layout.crossings == 0
    xs = {node: x for node, (x, _) in layout.positions.items()}
    assert (xs["a"] < xs["b"]) == (xs["d"] < xs["c"])


def test_hostile_text_is_escaped_in_svg_and_dot() -> None:
    hostile = 'Evil</text><script>alert("x")</script> & \uffff \\" end'
    first, second = Cid.for_raw(b"one"), Cid.for_raw(b"two")
    graph = LineageGraph(
        caption=hostile,
        legend=hostile,
        nodes=(
            GraphNode(first, "contribution", hostile, hostile, "text/plain", ""),
            GraphNode(second, "missing", "gone", "", "not in this store", ""),
        ),
        edges=(GraphEdge(second, first, hostile),),
    )
    root = ElementTree.fromstring(to_svg(graph).encode())
    assert root.find("{http://www.w3.org/2000/svg}script") is None
    texts = [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]
    assert hostile.replace("\uffff", "\ufffd") in texts  # the caption: unabridged, inert
    dot = to_dot(graph)
    assert '\\"x\\"' in dot
    assert '\\\\\\" end' in dot  # a backslash and a quote stay text
    assert dot.count(" -> ") == 1


def test_xml_text_replaces_what_xml_cannot_hold() -> None:
    assert xml_text("a\x00b\ufffe<") == "a\ufffdb\ufffd&lt;"
