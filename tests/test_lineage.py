"""The credit split (protocol/lineage.py): hand-computed cases, properties, bad productions.

Hand-computed splits follow DESIGN.md "Credits" literally; the properties
compare the split with an independent recursive definition in ``Fraction``s
over random remix DAGs, and check that arrival order and the store the records
sit in change nothing.
"""

from __future__ import annotations

import math
import random
import tempfile
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.datadir import DataDir
from node.productions import record_lookup
from node.store import Store
from protocol.cid import Cid
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.exact import _log2, largest_remainder
from protocol.identity import private_key_from_seed, public_key_bytes
from protocol.lineage import (
    CreditSplit,
    InvalidProduction,
    UnresolvedReason,
    check_production,
    split_credits,
    split_production,
    split_to_json,
)
from protocol.records import (
    Collab,
    Contribution,
    Credit,
    Parent,
    Production,
    Profile,
    SignedRecord,
    sign_record,
)
from tests.lineage_oracle import oracle_split_credits

KEYS = [private_key_from_seed(bytes([n + 1]) * 32) for n in range(10)]
AUTHORS = [public_key_bytes(key) for key in KEYS]
_counter = iter(range(1_000_000))


def work(
    author: int,
    *parents: SignedRecord | Cid,
    weights: tuple[int, ...] | None = None,
    upstream: int | None = None,
    title: str = "work",
) -> SignedRecord:
    """A signed contribution by ``AUTHORS[author]`` remixing ``parents``."""
    ids = [p if isinstance(p, Cid) else p.id for p in parents]
    body = Contribution(
        title=title,
        content=Cid.for_raw(b"content %d" % next(_counter)),
        size=1,
        media_type="text/plain",
        license="CC-BY-SA-4.0",
        parents=tuple(
            Parent(record_id, weights[n] if weights else None) for n, record_id in enumerate(ids)
        ),
        upstream_bps=upstream,
    )
    return sign_record(body, private_key=KEYS[author], created_ms=1_700_000_000_000)


def records(*signed: SignedRecord) -> dict[Cid, SignedRecord]:
    return {record.id: record for record in signed}


def bps_of(split: CreditSplit) -> dict[bytes | Cid, int]:
    shares: dict[bytes | Cid, int] = {share.author: share.bps for share in split.authors}
    shares.update({entry.record_id: entry.bps for entry in split.unresolved})
    return shares


def exact_of(split: CreditSplit) -> dict[bytes | Cid, Fraction]:
    shares: dict[bytes | Cid, Fraction] = {s.author: s.exact_bps for s in split.authors}
    shares.update({entry.record_id: entry.exact_bps for entry in split.unresolved})
    return shares


# -- hand-computed splits --------------------------------------------------------------


def test_chain_halves_credit_at_each_remix() -> None:
    poem = work(0)
    drawing = work(1, poem)
    film = work(2, drawing)
    split = split_credits([(film.id, 10_000)], records(poem, drawing, film))
    assert bps_of(split) == {AUTHORS[2]: 5000, AUTHORS[1]: 2500, AUTHORS[0]: 2500}
    assert [share.author for share in split.authors] == [AUTHORS[2], *sorted(AUTHORS[:2])]
    assert split.total_bps == 10_000
    assert split.received_bps(poem.id) == 2500
    assert split.kept_bps(drawing.id) == 2500
    assert {(f.remix, f.parent): f.exact_bps for f in split.flows} == {
        (film.id, drawing.id): 5000,
        (drawing.id, poem.id): 2500,
    }


def test_diamond_credits_the_common_ancestor_through_both_paths() -> None:
    poem = work(0)
    drawing = work(1, poem)
    song = work(2, poem)
    film = work(3, drawing, song)
    split = split_credits({film.id: 10_000}, records(poem, drawing, song, film))
    assert bps_of(split) == {AUTHORS[3]: 5000, AUTHORS[1]: 1250, AUTHORS[2]: 1250, AUTHORS[0]: 2500}
    assert split.received_bps(poem.id) == 2500  # 1250 up each side
    poem_share = split.share_of(AUTHORS[0])
    assert poem_share is not None
    assert [(p.contribution, p.bps) for p in poem_share.through] == [(poem.id, 2500)]


def test_an_author_credited_through_several_contributions() -> None:
    poem = work(0)
    left = work(1, poem, title="left")
    right = work(1, poem, title="right")
    film = work(2, left, right, upstream=8000)
    split = split_credits({film.id: 10_000}, records(poem, left, right, film))
    # film keeps 2000 and passes 4000 to each side; each side keeps 2000 and passes 2000.
    assert bps_of(split) == {AUTHORS[2]: 2000, AUTHORS[1]: 4000, AUTHORS[0]: 4000}
    share = split.share_of(AUTHORS[1])
    assert share is not None
    assert sorted((p.contribution, p.bps) for p in share.through) == sorted(
        [(left.id, 2000), (right.id, 2000)]
    )


def test_declared_parent_weights_split_the_upstream_share() -> None:
    poem = work(0)
    sketch = work(1)
    film = work(2, poem, sketch, weights=(3, 1), upstream=4000)
    split = split_credits({film.id: 10_000}, records(poem, sketch, film))
    assert bps_of(split) == {AUTHORS[2]: 6000, AUTHORS[0]: 3000, AUTHORS[1]: 1000}


def test_wide_fan_in_rounds_by_largest_remainder_to_exactly_10000() -> None:
    parents = [work(n) for n in range(7)]
    remix = work(7, *parents)
    split = split_credits({remix.id: 10_000}, records(*parents, remix))
    # Each parent gets 5000/7 = 714.28…: rounding each to nearest gives 7 * 714 + 5000 = 9998.
    assert all(share.exact_bps == Fraction(5000, 7) for share in split.authors[1:])
    assert sum(round(share.exact_bps) for share in split.authors) == 9998
    assert split.total_bps == 10_000
    # Equal remainders: the two missing units go to the smallest public keys.
    favoured = sorted(AUTHORS[:7])[:2]
    assert bps_of(split) == {
        AUTHORS[7]: 5000,
        **{author: (715 if author in favoured else 714) for author in AUTHORS[:7]},
    }


def test_rounding_never_overshoots_10000() -> None:
    parents = [work(n) for n in range(6)]
    remix = work(7, *parents, upstream=10_000)
    split = split_credits({remix.id: 10_000}, records(*parents, remix))
    # 10000/6 = 1666.67 each: rounding each to nearest would give 6 * 1667 = 10002.
    assert sum(round(share.exact_bps) for share in split.authors) == 10_002
    favoured = sorted(AUTHORS[:6])[:4]
    assert bps_of(split) == {a: (1667 if a in favoured else 1666) for a in AUTHORS[:6]}
    assert split.share_of(AUTHORS[7]) is None  # passes everything on: not listed


def test_upstream_zero_keeps_everything_and_never_visits_the_parents() -> None:
    poem = work(0)
    remix = work(1, poem, upstream=0)
    asked: list[Cid] = []
    known = records(poem, remix)

    def lookup(record_id: Cid) -> SignedRecord | None:
        asked.append(record_id)
        return known.get(record_id)

    split = split_credits({remix.id: 10_000}, lookup)
    assert bps_of(split) == {AUTHORS[1]: 10_000}
    assert asked == [remix.id]
    assert split.flows == ()


def test_credit_reaching_a_missing_record_is_reported_unresolved() -> None:
    poem = work(0)
    remix = work(1, poem)
    split = split_credits({remix.id: 10_000}, records(remix))  # the poem has not arrived
    assert bps_of(split) == {AUTHORS[1]: 5000, poem.id: 5000}
    assert split.unresolved[0].reason is UnresolvedReason.MISSING
    assert split_to_json(split)["unresolved"] == [
        {"record": str(poem.id), "reason": "missing", "bps": 5000, "exact_bps": "5000"}
    ]


def test_a_parent_that_is_not_a_contribution_is_unresolved_not_dropped() -> None:
    profile = sign_record(Profile("Ana"), private_key=KEYS[0], created_ms=1)
    remix = work(1, profile)
    split = split_credits({remix.id: 10_000}, records(profile, remix))
    assert bps_of(split) == {AUTHORS[1]: 5000, profile.id: 5000}
    assert split.unresolved[0].reason is UnresolvedReason.NOT_A_CONTRIBUTION


def test_a_credited_contribution_that_is_missing_is_unresolved() -> None:
    held = work(0)
    absent = work(1)
    split = split_credits([(held.id, 6000), (absent.id, 4000)], records(held))
    assert bps_of(split) == {AUTHORS[0]: 6000, absent.id: 4000}


def test_credit_of_a_credited_contribution_that_another_remixes_adds_up() -> None:
    poem = work(0)
    song = work(1, poem)
    split = split_credits([(poem.id, 4000), (song.id, 6000)], records(poem, song))
    assert bps_of(split) == {AUTHORS[0]: 7000, AUTHORS[1]: 3000}


def test_rounding_ties_go_to_authors_before_unresolved_records() -> None:
    held = work(0)
    missing = [work(1, title="gone a").id, work(1, title="gone b").id]
    remix = work(2, held, *missing, upstream=10_000)
    split = split_credits({remix.id: 10_000}, records(held, remix))
    # Three equal thirds, 3333.33 each: the one extra unit goes to the author.
    assert bps_of(split) == {AUTHORS[0]: 3334, missing[0]: 3333, missing[1]: 3333}


def test_through_shares_add_up_to_the_author_share() -> None:
    base = work(0)
    layers = [base]
    for n in range(6):
        layers.append(work(n % 2, layers[-1], upstream=3333))
    split = split_credits({layers[-1].id: 10_000}, records(*layers))
    assert split.total_bps == 10_000
    for share in split.authors:
        assert sum(part.bps for part in share.through) == share.bps
        assert sum(part.exact_bps for part in share.through) == share.exact_bps


# -- bad productions -------------------------------------------------------------------------


def test_bad_shares_are_rejected_with_a_reason() -> None:
    poem, song = work(0), work(1)
    known = records(poem, song)
    cases: list[tuple[list[tuple[Cid, int]], str, str]] = [
        ([(poem.id, 6000), (song.id, 3000)], "shares-do-not-sum", "sum to 9000"),
        ([(poem.id, 5000), (poem.id, 5000)], "duplicate-contribution", str(poem.id)),
        ([], "no-credits", "at least one"),
        ([(poem.id, 10_000), (song.id, 0)], "bad-share", "1..10000"),
    ]
    for shares, reason, detail in cases:
        with pytest.raises(InvalidProduction) as raised:
            split_credits(shares, known)
        assert raised.value.reason == reason
        assert detail in str(raised.value)
        assert isinstance(raised.value, RemoteProtocolError)


def test_a_credited_record_that_is_not_a_contribution_is_rejected() -> None:
    profile = sign_record(Profile("Ana"), private_key=KEYS[0], created_ms=1)
    with pytest.raises(InvalidProduction, match="not-a-contribution"):
        split_credits({profile.id: 10_000}, records(profile))


def production_by(
    key: int, *credits: tuple[SignedRecord, int], collab: Cid | None = None
) -> SignedRecord:
    body = Production(
        title="The album",
        credits=tuple(Credit(record.id, "music", share) for record, share in credits),
        collab=collab,
    )
    return sign_record(body, private_key=KEYS[key], created_ms=1_700_000_000_000)


def test_only_the_collab_director_may_sign_its_productions() -> None:
    collab = sign_record(Collab("Winter"), private_key=KEYS[0], created_ms=1)
    song = work(1)
    by_director = production_by(0, (song, 10_000), collab=collab.id)
    assert bps_of(split_production(by_director, records(collab, song))) == {AUTHORS[1]: 10_000}
    by_someone_else = production_by(1, (song, 10_000), collab=collab.id)
    with pytest.raises(InvalidProduction) as raised:
        split_production(by_someone_else, records(collab, song))
    assert raised.value.reason == "not-the-director"
    assert collab.author_id in str(raised.value)


def test_a_production_naming_a_non_collab_as_collab_is_rejected() -> None:
    song = work(1)
    with pytest.raises(InvalidProduction, match="not-a-collab"):
        split_production(production_by(0, (song, 10_000), collab=song.id), records(song))


def test_strict_checks_require_everything_to_be_held() -> None:
    song = work(1)
    collab = sign_record(Collab("Winter"), private_key=KEYS[0], created_ms=1)
    body = production_by(0, (song, 10_000), collab=collab.id).body
    assert isinstance(body, Production)
    check_production(body, AUTHORS[0], records(song, collab), strict=True)
    with pytest.raises(InvalidProduction, match="unknown-collab"):
        check_production(body, AUTHORS[0], records(song), strict=True)
    with pytest.raises(InvalidProduction, match="unknown-contribution"):
        check_production(body, AUTHORS[0], records(collab), strict=True)
    check_production(body, AUTHORS[0], {}, strict=False)  # a received production: fine


def test_split_production_of_another_record_type_is_rejected() -> None:
    song = work(1)
    with pytest.raises(InvalidProduction, match="not-a-production"):
        split_production(song, records(song))


def test_a_lookup_returning_the_wrong_record_is_a_local_error() -> None:
    song, other = work(1), work(2)
    with pytest.raises(LocalProtocolError, match="wrong-record"):
        split_credits({song.id: 10_000}, {song.id: other})


# -- exact helpers -------------------------------------------------------------------------


def test_largest_remainder_breaks_exact_ties_by_position() -> None:
    third = (10_000, 3)
    assert largest_remainder([third, third, third], 10_000) == [3334, 3333, 3333]
    assert largest_remainder([(1, 3), (2, 3)], 1) == [0, 1]
    with pytest.raises(LocalProtocolError):
        largest_remainder([(1, 1)], 5)


@given(st.fractions(min_value=0, max_value=10**6, max_denominator=10**40), st.integers(0, 4000))
def test_approximate_log2_is_within_its_error_bound(x: Fraction, scale_bits: int) -> None:
    if x == 0:
        return
    # A value with long numbers: x scaled down by 2**scale_bits, then written
    # over a denominator thousands of bits long.
    padding = 3**scale_bits
    numerator, denominator = x.numerator * padding, x.denominator * padding << scale_bits
    exact = math.log2(x.numerator) - math.log2(x.denominator) - scale_bits
    assert abs(_log2(numerator, denominator) - exact) < 2**-30


def reference_largest_remainder(values: list[Fraction], total: int) -> list[int]:
    floors = [math.floor(value) for value in values]
    order = sorted(range(len(values)), key=lambda i: (-(values[i] - floors[i]), i))
    for index in order[: total - sum(floors)]:
        floors[index] += 1
    return floors


@st.composite
def close_values(draw: st.DrawFn) -> tuple[list[Fraction], int]:
    """Values summing to an integer, with long denominators and near and exact ties."""
    base = draw(st.fractions(min_value=0, max_value=50, max_denominator=10**6))
    tiny = Fraction(1, 7 ** draw(st.integers(20, 400)))
    values = [
        max(
            Fraction(0),
            base + draw(st.sampled_from([0, 1, -1, 2])) * tiny + draw(st.integers(0, 3)),
        )
        for _ in range(draw(st.integers(1, 12)))
    ]
    short = math.ceil(sum(values)) - Fraction(sum(values))
    values.append(Fraction(short + draw(st.integers(0, 2))))
    return values, int(sum(values))


@given(close_values())
def test_largest_remainder_orders_near_ties_exactly(case: tuple[list[Fraction], int]) -> None:
    values, total = case
    pairs = [(value.numerator * 11**30, value.denominator * 11**30) for value in values]
    assert largest_remainder(pairs, total) == reference_largest_remainder(values, total)
    # The same values as long pairs times small fractions (how an author's parts come).
    factors = [(3, 7) if index % 2 else (1, 1) for index in range(len(values))]
    unscaled = [
        (numerator * b, denominator * a)
        for (numerator, denominator), (a, b) in zip(pairs, factors, strict=True)
    ]
    expected = reference_largest_remainder(values, total)
    assert largest_remainder(unscaled, total, factors) == expected


# -- properties over random DAGs -----------------------------------------------------------


@st.composite
def remix_dags(draw: st.DrawFn) -> tuple[list[SignedRecord], list[tuple[Cid, int]], set[int]]:
    """Signed contributions (earlier ones remixed by later ones), shares, and indices missing."""
    count = draw(st.integers(1, 12))
    signed: list[SignedRecord] = []
    for index in range(count):
        parents: list[int] = []
        weights: tuple[int, ...] | None = None
        upstream: int | None = None
        if index:
            parents = draw(st.lists(st.sampled_from(range(index)), max_size=3, unique=True))
        if parents:
            weighted: bool = draw(st.booleans())
            if weighted:
                weights = tuple(draw(st.integers(1, 5)) for _ in parents)
            upstream = draw(st.none() | st.sampled_from([0, 1, 3333, 5000, 7777, 10_000]))
        signed.append(
            work(
                draw(st.integers(0, 3)),
                *[signed[p] for p in parents],
                weights=weights,
                upstream=upstream,
                title=f"work {index}",
            )
        )
    credited = draw(st.lists(st.sampled_from(range(count)), min_size=1, max_size=4, unique=True))
    cuts = sorted(
        draw(
            st.lists(
                st.integers(1, 9_999),
                min_size=len(credited) - 1,
                max_size=len(credited) - 1,
                unique=True,
            )
        )
    )
    bounds = [0, *cuts, 10_000]
    shares = [(signed[i].id, bounds[n + 1] - bounds[n]) for n, i in enumerate(credited)]
    missing = draw(st.sets(st.sampled_from(range(count)), max_size=count // 3))
    return signed, shares, missing


def reference_split(
    shares: list[tuple[Cid, int]], known: dict[Cid, SignedRecord]
) -> dict[bytes | Cid, Fraction]:
    """DESIGN.md "Credits" written as a recursion over what one basis point at a record becomes."""
    memo: dict[Cid, dict[bytes | Cid, Fraction]] = {}

    def unit(record_id: Cid) -> dict[bytes | Cid, Fraction]:
        if record_id in memo:
            return memo[record_id]
        record = known.get(record_id)
        if record is None or not isinstance(record.body, Contribution):
            result: dict[bytes | Cid, Fraction] = {record_id: Fraction(1)}
        else:
            body = record.body
            upstream = Fraction(body.effective_upstream_bps, 10_000)
            result = {record.author: 1 - upstream}
            total = sum(p.weight or 1 for p in body.parents)
            for parent in body.parents:
                for key, value in unit(parent.record_id).items():
                    part = upstream * Fraction(parent.weight or 1, total) * value
                    result[key] = result.get(key, Fraction(0)) + part
        memo[record_id] = result
        return result

    totals: dict[bytes | Cid, Fraction] = {}
    for record_id, share in shares:
        for key, value in unit(record_id).items():
            totals[key] = totals.get(key, Fraction(0)) + share * value
    return {key: value for key, value in totals.items() if value}


@settings(max_examples=150, deadline=None)
@given(remix_dags(), st.randoms(use_true_random=False))
def test_split_matches_the_definition_sums_to_10000_and_ignores_arrival_order(
    dag: tuple[list[SignedRecord], list[tuple[Cid, int]], set[int]], shuffler: random.Random
) -> None:
    signed, shares, missing = dag
    held = [record for index, record in enumerate(signed) if index not in missing]
    split = split_credits(shares, records(*held))

    assert exact_of(split) == reference_split(shares, records(*held))
    assert split.total_bps == 10_000
    assert sum(exact_of(split).values()) == 10_000
    for key, exact in exact_of(split).items():
        assert bps_of(split)[key] in (
            exact.numerator // exact.denominator,
            -(-exact.numerator // exact.denominator),
        )
    for share in split.authors:
        assert sum(part.bps for part in share.through) == share.bps

    shuffled = list(held)
    shuffler.shuffle(shuffled)
    in_other_order = records(*shuffled)
    assert split_credits(shares, in_other_order) == split
    assert split_credits(shares, in_other_order.get) == split
    assert split_credits(list(reversed(shares)), in_other_order).authors == split.authors


def store_in(directory: Path, arrivals: list[SignedRecord]) -> Store:
    data_dir = DataDir(directory)
    data_dir.init(seed=bytes(32))
    store = Store(data_dir)
    for record in arrivals:
        store.put_record(record)
    return store


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(remix_dags(), st.randoms(use_true_random=False))
def test_two_stores_holding_the_same_records_give_the_same_split(
    dag: tuple[list[SignedRecord], list[tuple[Cid, int]], set[int]], shuffler: random.Random
) -> None:
    signed, shares, missing = dag
    held = [record for index, record in enumerate(signed) if index not in missing]
    other_order = list(held)
    shuffler.shuffle(other_order)
    with (
        tempfile.TemporaryDirectory() as directory,
        store_in(Path(directory) / "one", held) as one,
        store_in(Path(directory) / "two", other_order) as two,
    ):
        first = split_credits(shares, record_lookup(one))
        second = split_credits(shares, record_lookup(two))
    assert first == second
    assert split_to_json(first) == split_to_json(second)
    assert first.total_bps == 10_000


def test_a_deep_chain_stays_exact() -> None:
    """200 generations of odd upstream shares: denominators of hundreds of digits, still exact."""
    chain = [work(0)]
    for n in range(200):
        chain.append(work(n % 4, chain[-1], upstream=3333 + n))
    split = split_credits({chain[-1].id: 10_000}, records(*chain))
    reference = reference_split([(chain[-1].id, 10_000)], records(*chain))
    assert exact_of(split) == reference
    assert split.total_bps == 10_000


# -- the split against the algorithm it replaced (issue 7) ---------------------------------


def comparable(split: CreditSplit) -> dict[str, object]:
    """Everything a split says, as exact values (the unreduced pairs may be built differently)."""
    return {
        "credited": split.credited,
        "authors": [
            (
                share.author,
                share.bps,
                share.exact_bps,
                [(part.contribution, part.bps, part.exact_bps) for part in share.through],
            )
            for share in split.authors
        ],
        "unresolved": [(u.record_id, u.reason, u.bps, u.exact_bps) for u in split.unresolved],
        "flows": [(f.remix, f.parent, f.exact_bps) for f in split.flows],
        "received": {record_id: split.received_bps(record_id) for record_id in split.received},
        "kept": {record_id: split.kept_bps(record_id) for record_id in split.kept},
        "author_of": dict(split.author_of),
    }


@settings(max_examples=150, deadline=None)
@given(remix_dags())
def test_split_gives_what_the_previous_algorithm_gave(
    dag: tuple[list[SignedRecord], list[tuple[Cid, int]], set[int]],
) -> None:
    signed, shares, missing = dag
    held = records(*[record for index, record in enumerate(signed) if index not in missing])
    assert comparable(split_credits(shares, held)) == comparable(oracle_split_credits(shares, held))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_a_deep_dag_with_skips_gives_what_the_previous_algorithm_gave(
    rng: random.Random,
) -> None:
    """The stress shape of scripts/bench_credits.py, 150 deep: long numbers, many near-ties."""
    chain: list[SignedRecord] = []
    for n in range(150):
        parents = chain[-1:] + rng.sample(chain[-20:-1], min(len(chain[-20:-1]), rng.randint(0, 2)))
        weights = tuple(rng.randint(1, 9) for _ in parents) if rng.random() < 0.3 else None
        upstream = rng.choice([1234, 3333, 4567, 7777]) if parents else None
        chain.append(work(n % 7, *parents, weights=weights, upstream=upstream, title=f"w{n}"))
    shares = [(record.id, 2000) for record in chain[-5:]]
    held = records(*chain)
    new = split_credits(shares, held)
    assert comparable(new) == comparable(oracle_split_credits(shares, held))
    assert new.total_bps == 10_000
