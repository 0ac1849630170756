"""The remix lineage and the credit split of a production (DESIGN.md "Credits").

This module owns the one function every node must compute identically: how a
production's credit flows up the remix DAG to the authors of the works it
uses. The rules, from DESIGN.md:

* A production lists contributions with shares in basis points summing to
  10 000 (``TOTAL_BPS``).
* A contribution with parents keeps ``10000 - upstream_bps`` of what reaches
  it for its author and passes ``upstream_bps`` to its parents, split by the
  parent weights it declares (equal when it declares none). A contribution
  without parents keeps everything.
* Everything is exact. Only the final per-author result is rounded to whole
  basis points, by largest remainder, so that the rounded split sums to
  exactly 10 000.
* Credit reaching a record this node does not hold (or a record that is not a
  contribution) is reported under that record id as *unresolved*: it is part
  of the 10 000, never dropped.

Determinism (the same inputs give the same split on every node, whatever the
order records arrived in) rests on three rules:

* exact sums do not depend on the order of their terms, and the DAG is walked
  in a topological order that only decides *when* a sum is complete;
* rounding ties (equal remainders) go first to authors, ordered by their raw
  32-byte public key, then to unresolved records, ordered by their binary
  record id; an author's rounded total is spread over the contributions it
  came through by largest remainder too, ties ordered by binary record id;
* every output sequence is sorted by a key that ignores arrival order.

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

Sans-IO: records come in through a lookup (a mapping or a function); nothing
here reads a disk or a clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypeAlias

from protocol.cid import Cid
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.exact import (
    Exponents,
    combine,
    exponents_of,
    largest_remainder,
    odd_scale,
    power_product,
    raise_to,
)
from protocol.identity import author_id
from protocol.records import TOTAL_BPS, Collab, Contribution, Production, SignedRecord

__all__ = [
    "TOTAL_BPS",
    "AuthorShare",
    "ContributionShare",
    "CreditSplit",
    "Flow",
    "InvalidProduction",
    "RecordLookup",
    "UnresolvedReason",
    "UnresolvedShare",
    "check_production",
    "check_shares",
    "split_credits",
    "split_production",
    "split_to_json",
]

RecordLookup: TypeAlias = Callable[[Cid], SignedRecord | None] | Mapping[Cid, SignedRecord]
"""Where records come from: ``get(record_id) -> record or None``, or a mapping by id."""


class InvalidProduction(RemoteProtocolError):
    """A production (or a list of shares) whose credit cannot be split.

    ``reason`` is one of:

    * ``no-credits``: it credits nothing;
    * ``bad-share``: a share is not an integer in 1..10000;
    * ``duplicate-contribution``: a contribution is credited twice;
    * ``shares-do-not-sum``: the shares do not add up to 10 000;
    * ``unknown-contribution``: (strict checks only) a credited contribution
      is not held here;
    * ``not-a-contribution``: a credited id is a record of another type;
    * ``not-a-production``: the record given as a production is not one;
    * ``unknown-collab``: (strict checks only) the named collab is not held here;
    * ``not-a-collab``: the record named as its collab is of another type;
    * ``not-the-director``: the production names a collab whose director (the
      collab's author) is not the production's author: only a collab's
      director may sign its productions;
    * ``not-credited``: (``node.productions.acknowledge``) an ack by an author
      the split gives nothing.
    """


class UnresolvedReason(enum.StrEnum):
    """Why credit reaching a record could not be passed on to an author."""

    MISSING = "missing"  # this node does not hold the record (yet)
    NOT_A_CONTRIBUTION = "not-a-contribution"  # a remix named a non-contribution as parent


# Exact values are kept as an unreduced (numerator, denominator) pair: reducing
# a fraction costs a gcd, quadratic in the size of the numbers, which deep DAGs
# make large. ``exact_bps`` reduces on demand. The pair itself is determined by
# the records reached (not by their arrival order), so equal inputs still give
# equal values field by field.


@dataclass(frozen=True, slots=True)
class ContributionShare:
    """Credit an author keeps through one of their contributions.

    Exactly ``received * kept_fraction``: the product is left to
    ``numerator`` and ``denominator``, as most callers never need it.
    """

    contribution: Cid
    bps: int  # rounded; an author's ``through`` sums to the author's ``bps``
    received_numerator: int = field(repr=False)
    received_denominator: int = field(repr=False)
    kept_fraction: tuple[int, int] = field(repr=False)  # reduced (10000 - upstream) / 10000

    @property
    def numerator(self) -> int:
        return self.received_numerator * self.kept_fraction[0]

    @property
    def denominator(self) -> int:
        return self.received_denominator * self.kept_fraction[1]

    @property
    def exact_bps(self) -> Fraction:
        return Fraction(self.numerator, self.denominator)


@dataclass(frozen=True, slots=True)
class AuthorShare:
    """One author's credit: rounded, exact, and the contributions it came through."""

    author: bytes  # raw Ed25519 public key
    bps: int
    through: tuple[ContributionShare, ...]  # largest first, then by record id
    numerator: int = field(repr=False)
    denominator: int = field(repr=False)

    @property
    def exact_bps(self) -> Fraction:
        return Fraction(self.numerator, self.denominator)

    @property
    def author_id(self) -> str:
        """The author's PeerID (``12D3KooW…``)."""
        return author_id(self.author)


@dataclass(frozen=True, slots=True)
class UnresolvedShare:
    """Credit that reached a record this node cannot pass on to an author."""

    record_id: Cid
    reason: UnresolvedReason
    bps: int
    numerator: int = field(repr=False)
    denominator: int = field(repr=False)

    @property
    def exact_bps(self) -> Fraction:
        return Fraction(self.numerator, self.denominator)


@dataclass(frozen=True, slots=True)
class Flow:
    """Credit passed from a remix to one of its parents.

    The exact amount is ``(remix_numerator * edge_numerator) / (remix_denominator
    * edge_denominator)``: what reached the remix times the reduced share of
    the edge. The products are left to ``numerator`` and ``denominator``, as
    most callers never need them (on deep DAGs each is thousands of digits).
    """

    remix: Cid
    parent: Cid
    remix_numerator: int = field(repr=False)
    edge_numerator: int = field(repr=False)
    remix_denominator: int = field(repr=False)
    edge_denominator: int = field(repr=False)

    @property
    def numerator(self) -> int:
        return self.remix_numerator * self.edge_numerator

    @property
    def denominator(self) -> int:
        return self.remix_denominator * self.edge_denominator

    @property
    def exact_bps(self) -> Fraction:
        return Fraction(self.numerator, self.denominator)

    @property
    def approximate_bps(self) -> float:
        return self.numerator / self.denominator


@dataclass(frozen=True, slots=True)
class CreditSplit:
    """The credit split of a production. Rounded shares sum to exactly ``TOTAL_BPS``.

    ``authors`` and ``unresolved`` are ordered by rounded share (largest
    first), then by public key or binary record id. Authors whose exact share
    is 0 (each of their contributions passes all it receives upstream) are not
    listed. ``flows`` are ordered by the binary ids of (remix, parent).
    """

    credited: tuple[tuple[Cid, int], ...]  # the production's shares, as given
    authors: tuple[AuthorShare, ...]
    unresolved: tuple[UnresolvedShare, ...]
    flows: tuple[Flow, ...]
    # Per record reached: (numerator, denominator) of all the credit that reached
    # it and, for a contribution, of what it kept; and each contribution's author.
    received: Mapping[Cid, tuple[int, int]] = field(repr=False, hash=False)
    kept: Mapping[Cid, tuple[int, int]] = field(repr=False, hash=False)
    author_of: Mapping[Cid, bytes] = field(repr=False, hash=False)

    @property
    def total_bps(self) -> int:
        return sum(share.bps for share in self.authors) + sum(u.bps for u in self.unresolved)

    def share_of(self, author: bytes) -> AuthorShare | None:
        """The share of the author with this public key, or None when they get nothing."""
        return next((share for share in self.authors if share.author == author), None)

    def received_bps(self, record_id: Cid) -> Fraction:
        """All the credit that reached ``record_id`` (0 when it was not reached)."""
        numerator, denominator = self.received.get(record_id, (0, 1))
        return Fraction(numerator, denominator)

    def kept_bps(self, record_id: Cid) -> Fraction:
        """What the contribution ``record_id`` kept for its author (0 when not reached)."""
        numerator, denominator = self.kept.get(record_id, (0, 1))
        return Fraction(numerator, denominator)


def _getter(lookup: RecordLookup) -> Callable[[Cid], SignedRecord | None]:
    if isinstance(lookup, Mapping):
        return lookup.get
    return lookup


def _fetch(get: Callable[[Cid], SignedRecord | None], record_id: Cid) -> SignedRecord | None:
    record = get(record_id)
    if record is not None and record.id != record_id:
        raise LocalProtocolError("wrong-record", f"lookup of {record_id} returned {record.id}")
    return record


def check_shares(shares: Iterable[tuple[Cid, int]]) -> tuple[tuple[Cid, int], ...]:
    """The (contribution id, bps) shares as a tuple, checked; raises ``InvalidProduction``.

    Reasons: ``no-credits``, ``bad-share``, ``duplicate-contribution``,
    ``shares-do-not-sum``.
    """
    checked = tuple(shares)
    if not checked:
        raise InvalidProduction("no-credits", "a production must credit at least one contribution")
    seen: set[Cid] = set()
    for record_id, share in checked:
        if type(share) is not int or not 1 <= share <= TOTAL_BPS:
            raise InvalidProduction(
                "bad-share", f"the share of {record_id} must be 1..{TOTAL_BPS} basis points"
            )
        if record_id in seen:
            raise InvalidProduction("duplicate-contribution", f"{record_id} is credited twice")
        seen.add(record_id)
    total = sum(share for _, share in checked)
    if total != TOTAL_BPS:
        raise InvalidProduction(
            "shares-do-not-sum", f"credit shares sum to {total} basis points, not {TOTAL_BPS}"
        )
    return checked


def check_production(
    production: Production, author: bytes, lookup: RecordLookup, *, strict: bool
) -> None:
    """Check a production against the records around it; raise ``InvalidProduction``.

    ``author`` is the production's (would-be) signer. Every credited record
    held here must be a contribution; the collab it names, when held here,
    must be a collab directed by ``author``. With ``strict`` (before signing a
    production of our own) the credited contributions and the collab must
    all be held here; without it (a production received from elsewhere) what
    is not held is let through, and the split reports it as unresolved.
    """
    get = _getter(lookup)
    check_shares((credit.contribution, credit.share_bps) for credit in production.credits)
    for credit in production.credits:
        record = _fetch(get, credit.contribution)
        if record is None:
            if strict:
                raise InvalidProduction(
                    "unknown-contribution", f"{credit.contribution} is not in this store"
                )
        elif not isinstance(record.body, Contribution):
            raise InvalidProduction(
                "not-a-contribution",
                f"{credit.contribution} is a {record.type}, not a contribution",
            )
    if production.collab is None:
        return
    collab = _fetch(get, production.collab)
    if collab is None:
        if strict:
            raise InvalidProduction("unknown-collab", f"{production.collab} is not in this store")
        return
    if not isinstance(collab.body, Collab):
        raise InvalidProduction(
            "not-a-collab", f"{production.collab} is a {collab.type}, not a collab"
        )
    if collab.author != author:
        raise InvalidProduction(
            "not-the-director",
            f"collab {production.collab} is directed by {collab.author_id};"
            f" only its director may sign its productions, not {author_id(author)}",
        )


def split_production(production: SignedRecord, lookup: RecordLookup) -> CreditSplit:
    """The credit split of a signed production (``split_credits`` of its credits).

    Raises ``InvalidProduction`` for a record that is not a production, or
    one that ``check_production`` (not strict) rejects.
    """
    body = production.body
    if not isinstance(body, Production):
        raise InvalidProduction("not-a-production", f"{production.id} is a {production.type}")
    check_production(body, production.author, lookup, strict=False)
    shares = [(credit.contribution, credit.share_bps) for credit in body.credits]
    return split_credits(shares, lookup)


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


def split_credits(
    shares: Iterable[tuple[Cid, int]] | Mapping[Cid, int], lookup: RecordLookup
) -> CreditSplit:
    """Split ``shares`` (contribution id, basis points) up the remix DAG among authors.

    Raises ``InvalidProduction`` when the shares are empty, not each in
    1..10000, name a contribution twice or do not sum to 10 000, or when a
    credited record held here is not a contribution; ``LocalProtocolError``
    when the lookup returns a record other than the one asked for.
    """
    credited = check_shares(shares.items() if isinstance(shares, Mapping) else shares)
    nodes, unresolved = _walk(credited, _getter(lookup))
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


def split_to_json(split: CreditSplit) -> dict[str, object]:
    """A JSON-friendly view: rounded and exact (``"n/d"`` text) shares, ids as text."""
    return {
        "total_bps": split.total_bps,
        "credited": [{"contribution": str(cid), "share_bps": bps} for cid, bps in split.credited],
        "authors": [
            {
                "author": share.author_id,
                "bps": share.bps,
                "exact_bps": str(share.exact_bps),
                "through": [
                    {
                        "contribution": str(part.contribution),
                        "bps": part.bps,
                        "exact_bps": str(part.exact_bps),
                    }
                    for part in share.through
                ],
            }
            for share in split.authors
        ],
        "unresolved": [
            {
                "record": str(entry.record_id),
                "reason": str(entry.reason),
                "bps": entry.bps,
                "exact_bps": str(entry.exact_bps),
            }
            for entry in split.unresolved
        ],
    }
