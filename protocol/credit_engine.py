"""The exact engine of the credit split: walk, pass credit, sum, round.

This module owns how ``protocol.lineage.split_credits`` computes a split once
its shares are checked: ``compute_split`` walks the remix DAG from the
credited contributions, passes credit from each remix to its parents in exact
integers, sums what each author kept and rounds by largest remainder. The
rules it implements and the determinism they guarantee are stated in
``protocol.lineage``; the types it builds live in ``protocol.credit_types``.

Cost: each record reached is fetched once and each edge followed once (paths
are never enumerated: diamonds make their number exponential). Exact values
are integers over denominators built from ``10000 * sum(weights)`` along the
paths (``protocol.exact``), so a split is linear in the size of the DAG times
the size of those numbers, without a gcd per addition as ``Fraction`` would
do. Every step multiplies a long number by a short one (an edge's share times
the scale to the parent's denominator, powers of two as shifts), never two
long ones; per-author sums add terms smallest denominator first for the same
reason; rounding orders remainders by approximate logarithms and compares
exactly only values too close to tell apart; and products that only some
callers need (``Flow.numerator``, ``ContributionShare.numerator``,
``CreditSplit.kept``) are multiplied out when asked. Parents of a
contribution with ``upstream_bps == 0`` receive nothing and are not visited.

Sans-IO: records come in through ``get``; nothing here reads a disk or a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from protocol.cid import Cid
from protocol.credit_types import (
    AuthorShare,
    ContributionShare,
    CreditSplit,
    Flow,
    InvalidProduction,
    UnresolvedReason,
    UnresolvedShare,
    fetch_record,
)
from protocol.errors import LocalProtocolError
from protocol.exact import (
    Exponents,
    combine,
    exponents_of,
    largest_remainder,
    odd_scale,
    power_product,
    raise_to,
)
from protocol.records import TOTAL_BPS, Contribution, SignedRecord


@dataclass(slots=True)
class _Edge:
    """Credit passing from a remix to one parent: ``numerator / denominator`` of it, reduced."""

    parent: _Node
    numerator: int
    denominator: int
    step: Exponents = field(default_factory=dict)  # exponents of remix den * edge den


@dataclass(slots=True)
class _Node:
    """Working state of one record reached by the split."""

    record_id: Cid
    key: bytes = b""  # the binary record id: the canonical order of records
    body: Contribution | None = None  # None: unresolved
    author: bytes = b""
    waiting_on: int = 0  # remixes reached that have not passed their part yet
    share: int = 0  # bps credited to it directly by the production
    exponents: Exponents = field(default_factory=dict)  # of its denominator
    numerator: int = 0  # received = numerator / denominator
    denominator: int = 0  # set when its remixes have all passed their part
    # A remix's denominator and the small factor that make this denominator.
    via_denominator: int = 0
    via_factor: int = 0
    edges: list[_Edge] = field(default_factory=list)  # empty unless it passes credit on
    kept_fraction: tuple[int, int] = (0, 1)  # reduced (10000 - upstream) / 10000


def compute_split(
    credited: tuple[tuple[Cid, int], ...], get: Callable[[Cid], SignedRecord | None]
) -> CreditSplit:
    """The split of ``credited`` (shares already checked by ``check_shares``).

    Raises ``InvalidProduction`` (``not-a-contribution``) when a credited
    record held here is not a contribution; ``LocalProtocolError`` when
    ``get`` returns a record other than the one asked for.
    """
    nodes, unresolved = _walk(credited, get)
    order = _topological_order(nodes, credited)
    _denominator_exponents(order)
    _pass_credit(order)
    return _assemble(credited, nodes, unresolved)


def _walk(
    credited: tuple[tuple[Cid, int], ...], get: Callable[[Cid], SignedRecord | None]
) -> tuple[dict[Cid, _Node], dict[Cid, UnresolvedReason]]:
    """Fetch every record credit reaches, once, counting the remixes that reach each."""
    nodes = {
        record_id: _Node(record_id, record_id.to_bytes(), share=share)
        for record_id, share in credited
    }
    unresolved: dict[Cid, UnresolvedReason] = {}
    stack = list(nodes.values())
    while stack:
        node = stack.pop()
        record = fetch_record(get, node.record_id)
        if record is None or not isinstance(record.body, Contribution):
            if record is not None and node.share:
                raise InvalidProduction(
                    "not-a-contribution",
                    f"{node.record_id} is a {record.type}, not a contribution",
                )
            unresolved[node.record_id] = (
                UnresolvedReason.MISSING if record is None else UnresolvedReason.NOT_A_CONTRIBUTION
            )
            continue
        body = node.body = record.body
        node.author = record.author
        for parent_id, numerator, denominator in _edge_factors(body):
            parent = nodes.get(parent_id)
            if parent is None:
                parent = nodes[parent_id] = _Node(parent_id, parent_id.to_bytes())
                stack.append(parent)
            parent.waiting_on += 1
            node.edges.append(_Edge(parent, numerator, denominator))
    return nodes, unresolved


def _edge_factors(body: Contribution) -> list[tuple[Cid, int, int]]:
    """(parent, numerator, denominator) of the reduced share passed to each parent.

    Empty when ``upstream_bps`` is 0: the parents receive nothing through it.
    """
    upstream = body.effective_upstream_bps
    if upstream == 0:
        return []
    total_weight = sum(parent.weight or 1 for parent in body.parents)
    factors = []
    for parent in body.parents:
        numerator = upstream * (parent.weight or 1)
        denominator = TOTAL_BPS * total_weight
        common = math.gcd(numerator, denominator)
        factors.append((parent.record_id, numerator // common, denominator // common))
    return factors


def _topological_order(
    nodes: dict[Cid, _Node], credited: tuple[tuple[Cid, int], ...]
) -> list[_Node]:
    """Remixes before what they remix (Kahn). Any such order gives the same sums."""
    remaining = {node.record_id: node.waiting_on for node in nodes.values()}
    ready = [nodes[record_id] for record_id, _ in credited if remaining[record_id] == 0]
    order: list[_Node] = []
    while ready:
        node = ready.pop()
        order.append(node)
        for edge in node.edges:
            parent_id = edge.parent.record_id
            remaining[parent_id] -= 1
            if remaining[parent_id] == 0:
                ready.append(edge.parent)
    if len(order) != len(nodes):  # impossible with verified records: ids are hashes
        raise LocalProtocolError("cycle", "the records given form a cycle")
    return order


def _denominator_exponents(order: list[_Node]) -> None:
    """The denominator of each record's credit, as prime exponents (an lcm over its paths).

    Along the edge from a remix C to its parent P, credit is multiplied by
    ``upstream_bps * weight(P) / (10000 * W)`` (W: C's total parent weight),
    reduced. A record's denominator is the least common multiple, over the
    edges reaching it, of the remix's denominator times that edge's, so every
    part it receives is an integer multiple of one over it.
    """
    for node in order:
        for edge in node.edges:
            edge.step = combine(node.exponents, exponents_of(edge.denominator))
            raise_to(edge.parent.exponents, edge.step)


def _pass_credit(order: list[_Node]) -> None:
    """Move each record's credit to its parents, in integers over the denominators.

    One multiplication of a (long) numerator by a small factor and one
    addition per edge: the edge's share and the scale to the parent's
    denominator are multiplied together first, while they are still small.
    A record's denominator is built once, from the remix that reached it with
    the smallest scale (on a chain, the remix just below it: a long number
    times a small one, not times the many digits a distant remix needs).
    """
    for node in order:
        if node.via_denominator:  # = remix denominator * edge denominator * scale
            node.denominator = node.via_denominator * node.via_factor
            node.via_denominator = 0
        else:  # no remix passed it anything: its exponents are empty
            node.denominator = 1
        if node.share:
            node.numerator += node.share * node.denominator
        numerator = node.numerator
        for edge in node.edges:
            target = edge.parent
            odd, shift = odd_scale(target.exponents, edge.step)
            factor = (edge.denominator * odd) << shift
            if not target.via_denominator or factor < target.via_factor:
                target.via_denominator = node.denominator
                target.via_factor = factor
            if numerator:
                part = numerator * (edge.numerator * odd)
                target.numerator += part << shift if shift else part


def _flows(ordered: list[_Node]) -> tuple[Flow, ...]:
    """Every edge credit passed along, ordered by the binary ids of (remix, parent)."""
    return tuple(
        Flow(
            node.record_id,
            edge.parent.record_id,
            node.numerator,
            edge.numerator,
            node.denominator,
            edge.denominator,
        )
        for node in ordered
        for edge in sorted(node.edges, key=lambda edge: edge.parent.key)
    )


def _kept_factor(body: Contribution) -> tuple[int, int]:
    """(numerator, denominator) of the reduced share a contribution keeps."""
    kept = TOTAL_BPS - body.effective_upstream_bps
    common = math.gcd(kept, TOTAL_BPS)
    return kept // common, TOTAL_BPS // common


class _KeptCredit(Mapping[Cid, tuple[int, int]]):
    """What each contribution kept, (numerator, denominator), multiplied out when asked.

    Each value is as long as what the contribution received: on a deep DAG,
    building them all would double the memory of a split for nothing.
    """

    __slots__ = ("_fractions", "_received")

    def __init__(
        self, received: Mapping[Cid, tuple[int, int]], fractions: Mapping[Cid, tuple[int, int]]
    ) -> None:
        self._received = received
        self._fractions = fractions

    def __getitem__(self, record_id: Cid) -> tuple[int, int]:
        kept_numerator, kept_denominator = self._fractions[record_id]
        numerator, denominator = self._received[record_id]
        return numerator * kept_numerator, denominator * kept_denominator

    def __iter__(self) -> Iterator[Cid]:
        return iter(self._fractions)

    def __len__(self) -> int:
        return len(self._fractions)


def _assemble(
    credited: tuple[tuple[Cid, int], ...],
    nodes: dict[Cid, _Node],
    unresolved: dict[Cid, UnresolvedReason],
) -> CreditSplit:
    """Sum per author, round, and order everything canonically."""
    ordered = sorted(nodes.values(), key=lambda node: node.key)
    kept_fractions: dict[Cid, tuple[int, int]] = {}
    by_author: dict[bytes, list[_Node]] = {}  # each list in binary id order
    for node in ordered:
        if node.body is None:
            continue
        node.kept_fraction = _kept_factor(node.body)
        if node.kept_fraction[0] == 0:
            continue  # it passes everything upstream
        kept_fractions[node.record_id] = node.kept_fraction
        by_author.setdefault(node.author, []).append(node)

    author_keys = sorted(by_author)
    author_totals = [_sum_kept(by_author[key]) for key in author_keys]
    unresolved_ids = sorted(unresolved, key=Cid.to_bytes)
    unresolved_totals = [
        (nodes[record_id].numerator, nodes[record_id].denominator) for record_id in unresolved_ids
    ]
    # Tie order: authors (by public key) before unresolved records (by binary id).
    rounded = largest_remainder([*author_totals, *unresolved_totals], TOTAL_BPS)

    author_shares: list[AuthorShare] = []
    for key, (numerator, denominator), bps in zip(
        author_keys, author_totals, rounded, strict=False
    ):
        parts = by_author[key]
        part_bps = largest_remainder(
            [(node.numerator, node.denominator) for node in parts],
            bps,
            [node.kept_fraction for node in parts],
        )
        through = sorted(
            zip(parts, part_bps, strict=True), key=lambda part: (-part[1], part[0].key)
        )
        shares = tuple(
            ContributionShare(
                node.record_id, share, node.numerator, node.denominator, node.kept_fraction
            )
            for node, share in through
        )
        author_shares.append(AuthorShare(key, bps, shares, numerator, denominator))
    author_shares.sort(key=lambda share: (-share.bps, share.author))

    unresolved_shares = sorted(
        (
            UnresolvedShare(record_id, unresolved[record_id], bps, numerator, denominator)
            for record_id, (numerator, denominator), bps in zip(
                unresolved_ids, unresolved_totals, rounded[len(author_keys) :], strict=True
            )
        ),
        key=lambda u: (-u.bps, u.record_id.to_bytes()),
    )
    received = {node.record_id: (node.numerator, node.denominator) for node in ordered}
    return CreditSplit(
        credited=credited,
        authors=tuple(author_shares),
        unresolved=tuple(unresolved_shares),
        flows=_flows(ordered),
        received=received,
        kept=_KeptCredit(received, kept_fractions),
        author_of={node.record_id: node.author for node in ordered if node.body is not None},
    )


def _sum_kept(parts: list[_Node]) -> tuple[int, int]:
    """The exact sum of what ``parts`` kept, over a common denominator (their lcm).

    Terms are added smallest denominator first so that each step scales the
    running sum by a small factor (denominators along a chain divide each
    other; a balanced tree of sums measured slower). The result does not
    depend on the order. A term is ``received * kept_fraction``: the small
    kept numerator is folded into the term's (small) scale, so no term is
    multiplied out on its own.
    """
    terms = sorted(
        parts,
        key=lambda node: (
            node.denominator.bit_length() + node.kept_fraction[1].bit_length(),
            node.key,
        ),
    )
    first = terms[0]
    total = first.numerator * first.kept_fraction[0]
    total_exponents = combine(first.exponents, exponents_of(first.kept_fraction[1]))
    for node in terms[1:]:
        kept_numerator, kept_denominator = node.kept_fraction
        term_exponents = combine(node.exponents, exponents_of(kept_denominator))
        common = _lcm(total_exponents, term_exponents)
        odd, shift = odd_scale(common, total_exponents)
        if odd != 1:
            total *= odd
        if shift:
            total <<= shift
        odd, shift = odd_scale(common, term_exponents)
        term = node.numerator * (odd * kept_numerator)
        total += term << shift if shift else term
        total_exponents = common
    # Every denominator here is the product of its prime powers (see
    # ``_denominator_exponents``), so the lcm is built once, at the end.
    return total, power_product(total_exponents, {})


def _lcm(first: Exponents, second: Exponents) -> Exponents:
    merged = dict(first)
    raise_to(merged, second)
    return merged
