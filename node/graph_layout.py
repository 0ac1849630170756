"""Layered drawing of a DAG (Sugiyama style), for ``remixnet graph``.

This module owns where boxes and edges go; ``node.lineage_render`` owns what
they say. Steps, each the textbook one:

1. layers by longest path: a node sits one layer below its lowest parent, so
   every edge points down;
2. an edge that spans several layers gets a dummy point in each layer it
   crosses, so it can bend around boxes and take part in ordering;
3. the order inside each layer: barycentre sweeps (down then up, a dozen
   times), keeping the order with the fewest crossings seen;
4. x coordinates: boxes packed in that order, then pulled a few times toward
   the mean x of their neighbours without overlapping.

Deterministic: the same nodes and edges, given in the same order, give the
same drawing. Pure: no I/O. Quadratic at worst in the size of a layer, which
is fine for graphs a person can read (``remixnet graph`` caps their size).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

SWEEPS: Final = 12
PULLS: Final = 8


@dataclass(frozen=True, slots=True)
class Spacing:
    node_width: float
    node_height: float
    horizontal_gap: float = 36.0
    vertical_gap: float = 72.0
    dummy_width: float = 16.0


@dataclass(frozen=True, slots=True)
class Layout(Generic[K]):
    """Box centres (x) and tops (y) of the nodes, and the bend points of each edge."""

    positions: dict[K, tuple[float, float]]
    layers: dict[K, int]
    # (parent, child) -> points from the parent's bottom centre to the child's top centre
    routes: dict[tuple[K, K], list[tuple[float, float]]]
    width: float
    height: float
    crossings: int


@dataclass(slots=True)
class _Slot:
    """A box or a dummy point in one layer."""

    key: object  # a node key, or a (parent, child, layer) tuple for a dummy
    width: float
    x: float = 0.0
    ups: list[_Slot] = field(default_factory=list)  # neighbours one layer up
    downs: list[_Slot] = field(default_factory=list)  # neighbours one layer down


def longest_path_layers(nodes: Sequence[K], edges: Sequence[tuple[K, K]]) -> dict[K, int]:
    """Layer of each node: 0 for a node without parents, else 1 + its parents' maximum."""
    parents: dict[K, list[K]] = {node: [] for node in nodes}
    children: dict[K, list[K]] = {node: [] for node in nodes}
    for parent, child in edges:
        parents[child].append(parent)
        children[parent].append(child)
    waiting = {node: len(parents[node]) for node in nodes}
    ready = [node for node in nodes if waiting[node] == 0]
    layers: dict[K, int] = {}
    while ready:
        node = ready.pop(0)
        layers[node] = max((layers[p] + 1 for p in parents[node]), default=0)
        for child in children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if len(layers) != len(nodes):
        raise ValueError("the graph has a cycle")
    return layers


def layout_dag(nodes: Sequence[K], edges: Sequence[tuple[K, K]], spacing: Spacing) -> Layout[K]:
    """Lay out a DAG top to bottom: parents above children. ``edges`` are (parent, child)."""
    layers = longest_path_layers(nodes, edges)
    depth = max(layers.values(), default=-1) + 1
    rows: list[list[_Slot]] = [[] for _ in range(depth)]
    slot_of: dict[K, _Slot] = {}
    for node in nodes:
        slot = _Slot(node, spacing.node_width)
        slot_of[node] = slot
        rows[layers[node]].append(slot)
    chains: dict[tuple[K, K], list[_Slot]] = {}
    for parent, child in edges:
        chain = [slot_of[parent]]
        for layer in range(layers[parent] + 1, layers[child]):
            dummy = _Slot((parent, child, layer), spacing.dummy_width)
            rows[layer].append(dummy)
            chain.append(dummy)
        chain.append(slot_of[child])
        for upper, lower in pairwise(chain):
            upper.downs.append(lower)
            lower.ups.append(upper)
        chains[(parent, child)] = chain

    crossings = _order(rows)
    _place(rows, spacing)

    left = min((slot.x - slot.width / 2 for row in rows for slot in row), default=0.0)
    right = max((slot.x + slot.width / 2 for row in rows for slot in row), default=0.0)
    row_height = spacing.node_height + spacing.vertical_gap
    positions = {node: (slot.x - left, layers[node] * row_height) for node, slot in slot_of.items()}
    routes: dict[tuple[K, K], list[tuple[float, float]]] = {}
    for (parent, child), chain in chains.items():
        x0, y0 = positions[parent]
        points = [(x0, y0 + spacing.node_height)]
        for offset, dummy in enumerate(chain[1:-1], start=layers[parent] + 1):
            top = offset * row_height
            points += [(dummy.x - left, top), (dummy.x - left, top + spacing.node_height)]
        points.append(positions[child])
        routes[(parent, child)] = points
    height = depth * row_height - spacing.vertical_gap if depth else 0.0
    return Layout(positions, layers, routes, right - left, height, crossings)


def _order(rows: list[list[_Slot]]) -> int:
    """Reorder each row by barycentre sweeps; keep the best order. Returns its crossings."""

    def index_all() -> None:
        for row in rows:
            for index, slot in enumerate(row):
                slot.x = float(index)

    def sweep(row: list[_Slot], up: bool) -> None:
        def barycentre(slot: _Slot) -> float:
            neighbours = slot.ups if up else slot.downs
            if not neighbours:
                return slot.x  # no neighbour that side: stay where it is
            return sum(n.x for n in neighbours) / len(neighbours)

        row.sort(key=lambda slot: (barycentre(slot), slot.x))  # stable on ties
        for index, slot in enumerate(row):
            slot.x = float(index)

    index_all()
    best = [list(row) for row in rows]
    best_crossings = _crossings(rows)
    for _ in range(SWEEPS):
        if best_crossings == 0:
            break
        for row in rows[1:]:
            sweep(row, up=True)
        for row in reversed(rows[:-1]):
            sweep(row, up=False)
        crossings = _crossings(rows)
        if crossings < best_crossings:
            best, best_crossings = [list(row) for row in rows], crossings
    rows[:] = best
    index_all()
    return best_crossings


def _crossings(rows: list[list[_Slot]]) -> int:
    """Edge crossings between consecutive rows (``slot.x`` holds the index in its row)."""
    total = 0
    for row in rows[:-1]:
        pairs = sorted((int(upper.x), int(lower.x)) for upper in row for lower in upper.downs)
        for i, (upper_first, lower_first) in enumerate(pairs):
            for upper_second, lower_second in pairs[i + 1 :]:
                if upper_second > upper_first and lower_second < lower_first:
                    total += 1
    return total


def _place(rows: list[list[_Slot]], spacing: Spacing) -> None:
    """x centres: packed in order, then pulled toward their neighbours' mean x."""
    for row in rows:
        x = 0.0
        for slot in row:
            slot.x = x + slot.width / 2
            x += slot.width + spacing.horizontal_gap
    widest = max((_row_width(row) for row in rows), default=0.0)
    for row in rows:  # centre each row under the widest
        shift = (widest - _row_width(row)) / 2
        for slot in row:
            slot.x += shift
    for iteration in range(PULLS):
        ordered = rows[1:] if iteration % 2 == 0 else list(reversed(rows[:-1]))
        for row in ordered:
            _pull(row, spacing, up=iteration % 2 == 0)


def _row_width(row: list[_Slot]) -> float:
    if not row:
        return 0.0
    return row[-1].x + row[-1].width / 2 - (row[0].x - row[0].width / 2)


def _pull(row: list[_Slot], spacing: Spacing, *, up: bool) -> None:
    """Move a row's slots toward their neighbours' mean x, keeping order and gaps."""
    desired = []
    for slot in row:
        neighbours = (slot.ups if up else slot.downs) or (slot.downs if up else slot.ups)
        desired.append(sum(n.x for n in neighbours) / len(neighbours) if neighbours else slot.x)
    placed: list[float] = []
    for index, slot in enumerate(row):
        x = desired[index]
        if placed:
            previous = row[index - 1]
            x = max(x, placed[-1] + (previous.width + slot.width) / 2 + spacing.horizontal_gap)
        placed.append(x)
    # Pushing right only drifts the row right; move it back by the mean excess.
    excess = sum(p - d for p, d in zip(placed, desired, strict=True)) / len(row) if row else 0.0
    for slot, x in zip(row, placed, strict=True):
        slot.x = x - excess
