"""The credit split as protocol/lineage.py computed it before issue 7 (a test oracle).

Kept verbatim (but for imports and the ``Flow`` it builds, which takes the product
of the two numerators) so that tests/test_lineage.py can check that the faster
split gives exactly the same result on random DAGs. Not used by the node.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from protocol.cid import Cid
from protocol.errors import LocalProtocolError
from protocol.lineage import (
    AuthorShare,
    ContributionShare,
    CreditSplit,
    Flow,
    InvalidProduction,
    RecordLookup,
    UnresolvedReason,
    UnresolvedShare,
    check_shares,
)
from protocol.records import TOTAL_BPS, Contribution, SignedRecord

Exponents: TypeAlias = dict[int, int]
"""A positive integer as its prime factorisation: prime -> exponent."""

_APPROXIMATION_BITS: Final = 64


@functools.lru_cache(maxsize=4096)
def _factorisation(number: int) -> tuple[tuple[int, int], ...]:
    factors: list[tuple[int, int]] = []
    divisor = 2
    while divisor * divisor <= number:
        if number % divisor == 0:
            exponent = 0
            while number % divisor == 0:
                number //= divisor
                exponent += 1
            factors.append((divisor, exponent))
        divisor += 1 if divisor == 2 else 2
    if number > 1:
        factors.append((number, 1))
    return tuple(factors)


def exponents_of(number: int) -> Exponents:
    """The prime factorisation of a positive integer (trial division, cached).

    The numbers factored are ``10000 * W`` with W at most 64 parents times a
    weight of 10^6, so trial division stops below 10^4.
    """
    if number < 1:
        raise LocalProtocolError("not-positive", str(number))
    return dict(_factorisation(number))


def combine(first: Mapping[int, int], second: Mapping[int, int]) -> Exponents:
    """The exponents of the product of two numbers."""
    product = dict(first)
    for prime, exponent in second.items():
        product[prime] = product.get(prime, 0) + exponent
    return product


def raise_to(target: Exponents, other: Mapping[int, int]) -> None:
    """Make ``target`` the exponents of lcm(target, other), in place."""
    for prime, exponent in other.items():
        if target.get(prime, 0) < exponent:
            target[prime] = exponent


@functools.lru_cache(maxsize=4096)
def _power(prime: int, exponent: int) -> int:
    power: int = prime**exponent
    return power


def power_product(larger: Mapping[int, int], smaller: Mapping[int, int]) -> int:
    """The integer ``larger / smaller`` for factorisations where ``smaller`` divides ``larger``.

    That ``smaller`` divides ``larger`` is the caller's promise (not checked:
    this is the inner loop of the split).
    """
    result = 1
    for prime, exponent in larger.items():
        difference = exponent - smaller.get(prime, 0)
        if difference:
            result *= _power(prime, difference)
    return result


def _magnitude(numerator: int, denominator: int) -> tuple[int, int]:
    """A key that orders non-negative fractions, exact to 64 significant bits.

    ``(k, m)`` with ``k = floor(log2(x))`` and ``m = floor(x * 2**(63 - k))``
    (so ``2**63 <= m < 2**64``); 0 maps below everything. If ``x > y`` then
    ``key(x) >= key(y)``: keys that differ order the values, equal keys need
    an exact comparison. Costs shifts and one division: linear in the size.
    """
    if numerator == 0:
        return (-(1 << 62), 0)
    exponent = numerator.bit_length() - denominator.bit_length()
    # x is in [2**(exponent - 1), 2**(exponent + 1)): settle which half.
    if exponent >= 0:
        below = numerator < (denominator << exponent)
    else:
        below = (numerator << -exponent) < denominator
    k = exponent - 1 if below else exponent
    shift = _APPROXIMATION_BITS - 1 - k
    if shift >= 0:
        return k, (numerator << shift) // denominator
    return k, numerator // (denominator << -shift)


def largest_remainder(values: Sequence[tuple[int, int]], total: int) -> list[int]:
    """Round exact non-negative ``numerator / denominator`` values to integers summing to ``total``.

    Each value is rounded down; the units still missing go one each to the
    values with the largest remainders, exact ties to the earliest in
    ``values`` (the caller orders them by its tie-break key). Raises
    ``LocalProtocolError`` unless ``sum(floor(v)) <= total <= sum(floor(v)) +
    len(values)`` (always so when the values sum to ``total`` exactly).
    """
    floors = [numerator // denominator for numerator, denominator in values]
    missing = total - sum(floors)
    if not 0 <= missing <= len(values):
        raise LocalProtocolError("unroundable", f"cannot round to {total}: {missing} units off")
    if missing == 0:
        return floors
    remainders = [
        (numerator - floor * denominator, denominator)
        for (numerator, denominator), floor in zip(values, floors, strict=True)
    ]
    # A 64-bit floating key orders almost everything; exact cross-multiplication
    # settles keys that are equal.
    keys = [_magnitude(r, d) for r, d in remainders]

    def larger_first(first: int, second: int) -> int:
        if keys[first] != keys[second]:
            return -1 if keys[first] > keys[second] else 1
        (r1, d1), (r2, d2) = remainders[first], remainders[second]
        difference = r1 * d2 - r2 * d1
        if difference:
            return -1 if difference > 0 else 1
        return -1 if first < second else (1 if first > second else 0)

    order = sorted(range(len(values)), key=functools.cmp_to_key(larger_first))
    for index in order[:missing]:
        floors[index] += 1
    return floors


def _getter(lookup: RecordLookup) -> Callable[[Cid], SignedRecord | None]:
    if isinstance(lookup, Mapping):
        return lookup.get
    return lookup


def _fetch(get: Callable[[Cid], SignedRecord | None], record_id: Cid) -> SignedRecord | None:
    record = get(record_id)
    if record is not None and record.id != record_id:
        raise LocalProtocolError("wrong-record", f"lookup of {record_id} returned {record.id}")
    return record


def oracle_split_credits(shares: Sequence[tuple[Cid, int]], lookup: RecordLookup) -> CreditSplit:
    """The split of ``shares`` as the old algorithm computed it."""
    credited = check_shares(shares)
    nodes, unresolved = _walk(credited, _getter(lookup))
    order = _topological_order(nodes, credited)
    _denominator_exponents(order)
    flows = _pass_credit(order)
    return _assemble(credited, nodes, unresolved, flows)


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
    body: Contribution | None = None  # None: unresolved
    author: bytes = b""
    waiting_on: int = 0  # remixes reached that have not passed their part yet
    share: int = 0  # bps credited to it directly by the production
    exponents: Exponents = field(default_factory=dict)  # of its denominator
    numerator: int = 0  # received = numerator / denominator
    denominator: int = 0  # 0 until the first part reaches it
    edges: list[_Edge] = field(default_factory=list)  # empty unless it passes credit on


def _walk(
    credited: tuple[tuple[Cid, int], ...], get: Callable[[Cid], SignedRecord | None]
) -> tuple[dict[Cid, _Node], dict[Cid, UnresolvedReason]]:
    """Fetch every record credit reaches, once, counting the remixes that reach each."""
    nodes = {record_id: _Node(record_id, share=share) for record_id, share in credited}
    unresolved: dict[Cid, UnresolvedReason] = {}
    stack = list(nodes.values())
    while stack:
        node = stack.pop()
        record = _fetch(get, node.record_id)
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
                parent = nodes[parent_id] = _Node(parent_id)
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


def _pass_credit(order: list[_Node]) -> list[Flow]:
    """Move each record's credit to its parents, in integers over the denominators."""
    flows: list[Flow] = []
    for node in order:
        if node.denominator == 0:  # no remix passed it anything: its exponents are empty
            node.denominator = 1
        node.numerator += node.share * node.denominator
        for edge in node.edges:
            target = edge.parent
            part = node.numerator * edge.numerator  # over node.denominator * edge.denominator
            flows.append(
                Flow(node.record_id, target.record_id, part, 1, node.denominator, edge.denominator)
            )
            scale = power_product(target.exponents, edge.step)
            if target.denominator == 0:
                target.denominator = node.denominator * edge.denominator * scale
            target.numerator += part * scale if scale != 1 else part
    return flows


def _kept_factor(body: Contribution) -> tuple[int, int]:
    """(numerator, denominator) of the reduced share a contribution keeps."""
    kept = TOTAL_BPS - body.effective_upstream_bps
    common = math.gcd(kept, TOTAL_BPS)
    return kept // common, TOTAL_BPS // common


def _assemble(
    credited: tuple[tuple[Cid, int], ...],
    nodes: dict[Cid, _Node],
    unresolved: dict[Cid, UnresolvedReason],
    flows: list[Flow],
) -> CreditSplit:
    """Sum per author, round, and order everything canonically."""
    kept: dict[Cid, tuple[int, int]] = {}
    kept_exponents: dict[Cid, Exponents] = {}
    by_author: dict[bytes, list[Cid]] = {}
    for record_id, node in nodes.items():
        if node.body is None:
            continue
        numerator, denominator = _kept_factor(node.body)
        if numerator == 0:
            continue  # it passes everything upstream
        kept[record_id] = (node.numerator * numerator, node.denominator * denominator)
        kept_exponents[record_id] = combine(node.exponents, exponents_of(denominator))
        by_author.setdefault(node.author, []).append(record_id)

    author_keys = sorted(by_author)
    author_totals = [_sum_exact(by_author[key], kept, kept_exponents) for key in author_keys]
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
        parts = sorted(by_author[key], key=Cid.to_bytes)
        part_bps = largest_remainder([kept[record_id] for record_id in parts], bps)
        through = sorted(
            (
                ContributionShare(record_id, share, *kept[record_id], (1, 1))
                for record_id, share in zip(parts, part_bps, strict=True)
            ),
            key=lambda c: (-c.bps, c.contribution.to_bytes()),
        )
        author_shares.append(AuthorShare(key, bps, tuple(through), numerator, denominator))
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
    flows.sort(key=lambda flow: (flow.remix.to_bytes(), flow.parent.to_bytes()))
    by_id = sorted(nodes, key=Cid.to_bytes)
    return CreditSplit(
        credited=credited,
        authors=tuple(author_shares),
        unresolved=tuple(unresolved_shares),
        flows=tuple(flows),
        received={i: (nodes[i].numerator, nodes[i].denominator) for i in by_id},
        kept={i: kept[i] for i in by_id if i in kept},
        author_of={i: nodes[i].author for i in by_id if nodes[i].body is not None},
    )


def _sum_exact(
    record_ids: list[Cid], values: dict[Cid, tuple[int, int]], exponents: dict[Cid, Exponents]
) -> tuple[int, int]:
    """The exact sum of ``values`` over a common denominator (their lcm).

    Terms are added smallest denominator first so that each step scales the
    running sum by a small factor (denominators along a chain divide each
    other; a balanced tree of sums measured slower). The result does not
    depend on the order.
    """
    terms = sorted(record_ids, key=lambda i: (values[i][1].bit_length(), i.to_bytes()))
    total, denominator = values[terms[0]]
    total_exponents = dict(exponents[terms[0]])
    for record_id in terms[1:]:
        numerator, _ = values[record_id]
        term_exponents = exponents[record_id]
        common = _lcm(total_exponents, term_exponents)
        scale_total = power_product(common, total_exponents)
        scale_term = power_product(common, term_exponents)
        total = (total * scale_total if scale_total != 1 else total) + (
            numerator * scale_term if scale_term != 1 else numerator
        )
        denominator *= scale_total
        total_exponents = common
    return total, denominator


def _lcm(first: Exponents, second: Exponents) -> Exponents:
    merged = dict(first)
    raise_to(merged, second)
    return merged
