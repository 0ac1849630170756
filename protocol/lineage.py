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

Layout: this module holds the checks of a production
(``check_shares``, ``check_production``), the public entry points
(``split_credits``, ``split_production``) and the JSON view
(``split_to_json``); the exact computation, and what it costs, is
``protocol.credit_engine``; the result and error types are
``protocol.credit_types``, re-exported here, where callers import them.

Sans-IO: records come in through a lookup (a mapping or a function); nothing
here reads a disk or a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from protocol.cid import Cid
from protocol.credit_engine import compute_split
from protocol.credit_types import (
    AuthorShare,
    ContributionShare,
    CreditSplit,
    Flow,
    InvalidProduction,
    RecordLookup,
    UnresolvedReason,
    UnresolvedShare,
    fetch_record,
    record_getter,
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
    get = record_getter(lookup)
    check_shares((credit.contribution, credit.share_bps) for credit in production.credits)
    for credit in production.credits:
        record = fetch_record(get, credit.contribution)
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
    collab = fetch_record(get, production.collab)
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
    return compute_split(credited, record_getter(lookup))


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
