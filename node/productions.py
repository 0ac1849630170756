"""Collabs, productions, acks and credit reports over a store (issue 7, one node).

Blocking functions over a ``Store``, shared by the offline CLI and the
daemon's RPC methods (both through ``node.rpc_methods_collab``): run them in a
worker thread under trio. They return plain values and raise typed errors
(``NotFound``, ``InvalidProduction`` and the other ``ProtocolError``
subclasses); nothing here prints.

The credit split itself is ``protocol.lineage``; this module feeds it the
records this store holds. What the store lacks is reported by the split as
unresolved; fetching it from peers is the daemon's (``credits.get`` with
``fetch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from node.database import now_ms
from node.datadir import Identity
from node.store import NotFound, RecordFilter, Store
from protocol.cid import Cid
from protocol.lineage import (
    CreditSplit,
    InvalidProduction,
    check_production,
    check_shares,
    split_production,
)
from protocol.records import (
    Ack,
    Collab,
    Contribution,
    Credit,
    Production,
    Profile,
    RecordType,
    SignedRecord,
    sign_record,
)

# Listing queries are bounded; these bounds are far above what one node holds
# for one collab or one author's acks.
MAX_LISTED: Final = 100_000


def record_lookup(store: Store) -> Callable[[Cid], SignedRecord | None]:
    """The store as a ``protocol.lineage`` lookup: the record, or None when not held."""

    def get(record_id: Cid) -> SignedRecord | None:
        try:
            return store.get_record(record_id)
        except NotFound:
            return None

    return get


def profile_name(store: Store, author: bytes) -> str | None:
    """The name in the newest profile this store holds for ``author``, if any."""
    profiles = store.list_records(
        RecordFilter(author=author, record_type=RecordType.PROFILE, limit=1)
    )
    if profiles and isinstance(profiles[0].body, Profile):
        return profiles[0].body.name
    return None


def _sign_and_store(
    store: Store, identity: Identity, body: Collab | Production | Ack
) -> SignedRecord:
    record = sign_record(body, private_key=identity.private_key, created_ms=now_ms())
    store.put_record(record)
    return record


# -- collabs ---------------------------------------------------------------


def open_collab(
    store: Store, identity: Identity, *, title: str, brief: str, deadline_ms: int | None
) -> SignedRecord:
    """Sign and store a collab directed by ``identity``. Raises ``InvalidRecord``."""
    return _sign_and_store(store, identity, Collab(title, brief, deadline_ms))


def require_type(store: Store, record_id: Cid, record_type: RecordType) -> SignedRecord:
    """The record ``record_id``, which must be of ``record_type``.

    Raises ``NotFound`` when it is not held and ``InvalidProduction``
    (``not-a-<type>``) when it is another type of record.
    """
    record = store.get_record(record_id)
    if record.type != record_type:
        raise InvalidProduction(f"not-a-{record_type}", f"{record_id} is a {record.type}")
    return record


@dataclass(frozen=True, slots=True)
class Answer:
    """A contribution answering a collab, with the remixes of it that this store holds."""

    record: SignedRecord
    remixes: list[SignedRecord]


@dataclass(frozen=True, slots=True)
class CollabView:
    collab: SignedRecord
    contributions: list[Answer]  # oldest first
    productions: list[SignedRecord]  # oldest first


def collab_view(store: Store, collab_id: Cid) -> CollabView:
    """A collab, the contributions answering it (with their remixes) and its productions."""
    collab = require_type(store, collab_id, RecordType.COLLAB)
    answering = store.list_records(
        RecordFilter(collab=collab_id, record_type=RecordType.CONTRIBUTION, limit=MAX_LISTED)
    )
    productions = store.list_records(
        RecordFilter(collab=collab_id, record_type=RecordType.PRODUCTION, limit=MAX_LISTED)
    )
    get = record_lookup(store)
    answers = [
        Answer(record, [r for r in map(get, store.children_of(record.id)) if r is not None])
        for record in reversed(answering)
    ]
    return CollabView(collab, answers, list(reversed(productions)))


def list_collabs(store: Store, limit: int) -> list[SignedRecord]:
    """Collabs in this store, newest first."""
    return store.list_records(RecordFilter(record_type=RecordType.COLLAB, limit=limit))


# -- productions -------------------------------------------------------------


def create_production(
    store: Store,
    identity: Identity,
    *,
    title: str,
    credits: Iterable[Credit],
    collab: Cid | None,
    description: str = "",
) -> SignedRecord:
    """Sign and store a production after the strict checks of ``check_production``.

    Every credited contribution (and the collab, if any) must be in this store,
    the shares must sum to 10 000 and, for a collab, ``identity`` must be its
    director. Raises ``InvalidProduction`` or ``InvalidRecord``.
    """
    credits = tuple(credits)
    # Checked before the body is built: these errors say more than its own.
    check_shares((credit.contribution, credit.share_bps) for credit in credits)
    body = Production(title=title, credits=credits, collab=collab, description=description)
    check_production(body, identity.public_key, record_lookup(store), strict=True)
    return _sign_and_store(store, identity, body)


def production_record(store: Store, production_id: Cid) -> SignedRecord:
    """The production ``production_id``. Raises ``NotFound`` or ``InvalidProduction``."""
    return require_type(store, production_id, RecordType.PRODUCTION)


def production_split(store: Store, production_id: Cid) -> CreditSplit:
    """The credit split of a production over the records this store holds."""
    return split_production(production_record(store, production_id), record_lookup(store))


# -- acks ------------------------------------------------------------------------


def latest_acks(
    store: Store, production_id: Cid, authors: Iterable[bytes]
) -> dict[bytes, SignedRecord]:
    """Each author's latest ack of the production (by ``created_ms``, then record id)."""
    latest: dict[bytes, SignedRecord] = {}
    for author in authors:
        acks = [
            record
            for record in store.list_records(
                RecordFilter(author=author, record_type=RecordType.ACK, limit=MAX_LISTED)
            )
            if isinstance(record.body, Ack) and record.body.production == production_id
        ]
        if acks:
            latest[author] = max(acks, key=lambda r: (r.created_ms, r.id.to_bytes()))
    return latest


def acknowledge(
    store: Store, identity: Identity, production_id: Cid, *, accept: bool, reason: str
) -> SignedRecord:
    """Sign and store ``identity``'s ack of a production it is credited in.

    Raises ``NotFound`` (unknown production), ``InvalidProduction``
    (``not-a-production``, or ``not-credited`` when the split computed here
    gives ``identity`` nothing) or ``InvalidRecord`` (a dispute without a
    reason).
    """
    body = Ack(production_id, accept, reason)  # validates the reason first
    split = production_split(store, production_id)
    if split.share_of(identity.public_key) is None:
        raise InvalidProduction(
            "not-credited",
            f"{identity.author_id} gets no credit in production {production_id}"
            " (as computed from the records in this store)",
        )
    return _sign_and_store(store, identity, body)


# -- the credit report -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreditReport:
    """A production's split with what a reader needs beside it: names, titles, acks."""

    production: SignedRecord
    split: CreditSplit
    names: dict[bytes, str]  # author key -> profile name, for authors with a profile here
    titles: dict[Cid, str]  # contribution id -> title, for contributions held here
    acks: dict[bytes, SignedRecord]  # author key -> latest ack


def credit_report(store: Store, production_id: Cid) -> CreditReport:
    """Everything ``remixnet credits`` shows. Raises ``NotFound`` or ``InvalidProduction``."""
    production = production_record(store, production_id)
    split = split_production(production, record_lookup(store))
    authors = [share.author for share in split.authors]
    names = {author: name for author in authors if (name := profile_name(store, author))}
    titles: dict[Cid, str] = {}
    get = record_lookup(store)
    for share in split.authors:
        for part in share.through:
            record = get(part.contribution)
            if record is not None and isinstance(record.body, Contribution):
                titles[part.contribution] = record.body.title
    return CreditReport(
        production, split, names, titles, latest_acks(store, production_id, authors)
    )


def ack_status(ack: SignedRecord | None) -> tuple[str, str]:
    """(``accepted`` | ``disputed`` | ``pending``, reason) for an author's latest ack."""
    if ack is None or not isinstance(ack.body, Ack):
        return "pending", ""
    return ("accepted" if ack.body.accept else "disputed"), ack.body.reason
