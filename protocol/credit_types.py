"""The vocabulary of a credit split: how records come in, what goes wrong, what comes out.

This module owns the types ``protocol.lineage`` (the checks and the public
entry points) and ``protocol.credit_engine`` (the exact computation) share:

* ``RecordLookup``, and ``record_getter``/``fetch_record``, through which a
  split reads records (a mapping or a function: sans-IO, nothing here reads a
  disk or a clock); a lookup that answers with another record than the one
  asked for is our own bug (``LocalProtocolError``);
* ``InvalidProduction`` and ``UnresolvedReason``, what a split reports;
* the result, ``CreditSplit``, and its parts (``AuthorShare``,
  ``ContributionShare``, ``UnresolvedShare``, ``Flow``).

Invariants: results are frozen; every exact value is an unreduced
(numerator, denominator) pair fixed by the records reached, not by their
arrival order; the rounded shares of a ``CreditSplit`` sum to ``TOTAL_BPS``.
Import these names from ``protocol.lineage``, which re-exports them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypeAlias

from protocol.cid import Cid
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.identity import author_id
from protocol.records import SignedRecord

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


def record_getter(lookup: RecordLookup) -> Callable[[Cid], SignedRecord | None]:
    """``lookup`` as a function: ``get(record_id) -> record or None``."""
    if isinstance(lookup, Mapping):
        return lookup.get
    return lookup


def fetch_record(get: Callable[[Cid], SignedRecord | None], record_id: Cid) -> SignedRecord | None:
    """The record ``record_id`` from ``get``, or None when it is not held.

    Raises ``LocalProtocolError`` (``wrong-record``) when ``get`` returns another record.
    """
    record = get(record_id)
    if record is not None and record.id != record_id:
        raise LocalProtocolError("wrong-record", f"lookup of {record_id} returned {record.id}")
    return record
