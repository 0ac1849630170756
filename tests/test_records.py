"""Records: round trips, canonical form, signatures, decoder robustness, test vectors.

The test vectors live in docs/protocol.md and are parsed from it here, so the
specification and the code cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocol.cid import DAG_PB, RAW, Cid
from protocol.errors import RemoteProtocolError
from protocol.identity import author_id, private_key_from_seed, public_key_bytes
from protocol.records import (
    MAX_BIO_CHARS,
    MAX_CREDITS,
    MAX_DESCRIPTION_CHARS,
    MAX_LICENSE_CHARS,
    MAX_MEDIA_TYPE_CHARS,
    MAX_NAME_CHARS,
    MAX_PARENTS,
    MAX_RECORD_SIZE,
    MAX_ROLE_CHARS,
    MAX_SAFE_INTEGER,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TITLE_CHARS,
    MAX_WEIGHT,
    SIGNING_PREFIX,
    Ack,
    Body,
    Collab,
    Contribution,
    Credit,
    InvalidRecord,
    Parent,
    Production,
    Profile,
    RecordType,
    SignedRecord,
    decode_record,
    sign_record,
    to_json,
    verify_record_bytes,
)

PROTOCOL_MD = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
SEED = bytes(range(32))
KEY = private_key_from_seed(SEED)
OTHER_KEY = private_key_from_seed(bytes(range(32, 64)))
CREATED_MS = 1_700_000_000_000
# Ed25519 group order: a signature's S must be below it (RFC 8032 5.1.7).
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493


CID = Cid.for_raw(b"x")
DAG = Cid.for_dag_pb(b"x")


def contribution(**changes: Any) -> Contribution:
    fields: dict[str, Any] = {
        "title": "t",
        "content": CID,
        "size": 1,
        "media_type": "text/plain",
        "license": "MIT",
    }
    return Contribution(**(fields | changes))


def record_id(label: bytes) -> Cid:
    return Cid.for_raw(label)


def sample_bodies() -> dict[str, Body]:
    """One body of each type with every optional field set."""
    return {
        "profile": Profile(name="Ada", bio="Composer.", avatar=Cid.for_raw(b"avatar")),
        "contribution": Contribution(
            title="Night Drive (remix)",
            content=Cid.for_dag_pb(b"content"),
            size=1234,
            media_type="audio/flac",
            license="CC-BY-SA-4.0",
            description="Slower.",
            tags=("ambient", "remix"),
            parents=(Parent(record_id(b"p1"), 3), Parent(record_id(b"p2"), 1)),
            upstream_bps=4000,
            collab=record_id(b"collab"),
        ),
        "collab": Collab(title="Winter", brief="Field recordings.", deadline_ms=1_800_000_000_000),
        "production": Production(
            title="Winter, the album",
            credits=(
                Credit(record_id(b"c1"), "music", 6000),
                Credit(record_id(b"c2"), "art", 4000),
            ),
            collab=record_id(b"collab"),
            description="Ten tracks.",
        ),
        "ack": Ack(production=record_id(b"production"), accept=False, reason="Wrong split."),
    }


def sample(name: str = "ack") -> SignedRecord:
    return sign_record(sample_bodies()[name], private_key=KEY, created_ms=CREATED_MS)


def reason_of(data: bytes) -> str:
    with pytest.raises(InvalidRecord) as caught:
        decode_record(data)
    return caught.value.reason


def unpack(data: bytes) -> dict[str, Any]:
    top: dict[str, Any] = msgpack.unpackb(data, raw=False)
    return top


def canonical_pack(value: object) -> bytes:
    """Pack with every map's keys sorted: canonical apart from what a test changes."""

    def sort(item: object) -> object:
        if isinstance(item, dict):
            return {key: sort(item[key]) for key in sorted(item)}
        if isinstance(item, list):
            return [sort(element) for element in item]
        return item

    packed: bytes = msgpack.packb(sort(value), use_bin_type=True)
    return packed


def pack_map(pairs: list[tuple[str, bytes]]) -> bytes:
    """A msgpack map from (key, already-packed value) pairs, in the order given."""
    assert len(pairs) < 16
    out = bytes([0x80 | len(pairs)])
    for key, value in pairs:
        out += msgpack.packb(key) + value
    return out


def packed_pairs(top: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [(key, canonical_pack(top[key])) for key in sorted(top)]


def forge(top: dict[str, Any], key: Any = KEY) -> bytes:
    """A record map signed as a (possibly malicious) author would sign it."""
    unsigned = {k: v for k, v in top.items() if k != "s"}
    signature = key.sign(SIGNING_PREFIX + canonical_pack(unsigned))
    return canonical_pack({**unsigned, "s": signature})


def assert_canonical(data: bytes) -> None:
    """Check the canonical rules independently of protocol.records' encoder."""

    def check(item: object) -> None:
        if isinstance(item, list) and item and isinstance(item[0], tuple):  # a map
            keys = [key.encode() for key, _ in item]
            assert keys == sorted(set(keys)), keys
            for _, value in item:
                check(value)
        elif isinstance(item, list):
            for element in item:
                check(element)
        else:
            assert type(item) in (str, bytes, int, bool), item

    check(msgpack.unpackb(data, raw=False, object_pairs_hook=list))
    assert msgpack.packb(unpack(data), use_bin_type=True) == data  # shortest forms


# --- strategies ---------------------------------------------------------------

LINE_CHARS = st.characters(exclude_categories=("Cc", "Cs"))
TEXT_CHARS = st.characters(exclude_categories=("Cc", "Cs"), include_characters="\t\n")


def lines(max_chars: int) -> st.SearchStrategy[str]:
    return st.text(LINE_CHARS, min_size=1, max_size=max_chars).filter(
        lambda text: text[0] != " " and text[-1] != " "
    )


def texts(max_chars: int) -> st.SearchStrategy[str]:
    return st.text(TEXT_CHARS, max_size=max_chars)


digests = st.binary(min_size=32, max_size=32)
record_ids = digests.map(lambda digest: Cid(RAW, digest))
content_ids = st.builds(Cid, st.sampled_from([RAW, DAG_PB]), digests)
safe_ints = st.integers(0, MAX_SAFE_INTEGER)
media_types = st.from_regex(r"\A[a-z0-9][a-z0-9.+-]{0,20}/[a-z0-9][a-z0-9!#$&^_.+-]{0,30}\Z")
licenses = st.sampled_from(
    ["CC-BY-4.0", "CC0-1.0", "MIT", "LicenseRef-mine", "(MIT OR CC-BY-4.0)", "GPL-2.0+ WITH X"]
)

profiles = st.builds(
    Profile, name=lines(MAX_NAME_CHARS), bio=texts(60), avatar=st.none() | content_ids
)
collabs = st.builds(
    Collab, title=lines(MAX_TITLE_CHARS), brief=texts(60), deadline_ms=st.none() | safe_ints
)
acks = st.builds(Ack, production=record_ids, accept=st.just(True), reason=texts(60)) | st.builds(
    Ack, production=record_ids, accept=st.just(False), reason=texts(60).filter(str.strip)
)


@st.composite
def contributions(draw: st.DrawFn) -> Contribution:
    ids = draw(st.lists(record_ids, unique=True, max_size=6))
    weights = draw(st.none() | st.just(True))
    parents = tuple(
        Parent(parent, draw(st.integers(1, MAX_WEIGHT)) if weights else None) for parent in ids
    )
    upstream = st.none() | (st.integers(0, 10_000) if parents else st.just(0))
    return Contribution(
        title=draw(lines(40)),
        content=draw(content_ids),
        size=draw(safe_ints),
        media_type=draw(media_types),
        license=draw(licenses),
        description=draw(texts(60)),
        tags=tuple(draw(st.lists(lines(20), unique=True, max_size=5))),
        parents=parents,
        upstream_bps=draw(upstream),
        collab=draw(st.none() | record_ids),
    )


@st.composite
def productions(draw: st.DrawFn) -> Production:
    cuts = sorted(draw(st.sets(st.integers(1, 9_999), max_size=12)))
    shares = [b - a for a, b in zip([0, *cuts], [*cuts, 10_000], strict=True)]
    ids = draw(st.lists(record_ids, unique=True, min_size=len(shares), max_size=len(shares)))
    credits = tuple(
        Credit(cid, draw(lines(20)), share) for cid, share in zip(ids, shares, strict=True)
    )
    return Production(
        title=draw(lines(40)),
        credits=credits,
        collab=draw(st.none() | record_ids),
        description=draw(texts(60)),
    )


bodies: st.SearchStrategy[Body] = st.one_of(profiles, contributions(), collabs, productions(), acks)


# --- round trips ----------------------------------------------------------------


@given(body=bodies, created_ms=safe_ints, key=st.sampled_from([KEY, OTHER_KEY]))
def test_decode_inverts_sign(body: Body, created_ms: int, key: Any) -> None:
    record = sign_record(body, private_key=key, created_ms=created_ms)
    decoded = decode_record(record.encoded)
    assert decoded == record
    assert decoded.body == body
    assert decoded.id == Cid.for_raw(record.encoded)
    assert decoded.author == public_key_bytes(key)
    assert_canonical(record.encoded)
    json.dumps(to_json(decoded))  # JSON-serialisable


@pytest.mark.parametrize("name", sorted(sample_bodies()))
def test_signed_record_properties(name: str) -> None:
    record = sample(name)
    assert record.type == RecordType(name)
    assert record.author_id == author_id(public_key_bytes(KEY))
    assert record.author_id.startswith("12D3KooW")
    assert record.id.codec == RAW
    assert len(record.signature) == 64
    assert record.created_ms == CREATED_MS
    assert verify_record_bytes(record.encoded, expected_id=record.id) == record


def test_verify_record_bytes_rejects_other_id() -> None:
    record = sample()
    with pytest.raises(InvalidRecord) as caught:
        verify_record_bytes(record.encoded, expected_id=sample("profile").id)
    assert caught.value.reason == "wrong-id"


def test_to_json_view() -> None:
    record = sample("contribution")
    view = to_json(record)
    assert view["id"] == str(record.id)
    assert view["type"] == "contribution"
    assert view["author"] == record.author_id
    assert view["created_ms"] == CREATED_MS
    assert view["content"] == str(Cid.for_dag_pb(b"content"))
    assert view["tags"] == ["ambient", "remix"]
    assert view["parents"] == [
        {"id": str(record_id(b"p1")), "weight": 3},
        {"id": str(record_id(b"p2")), "weight": 1},
    ]
    assert view["upstream_bps"] == view["effective_upstream_bps"] == 4000
    production = to_json(sample("production"))
    assert production["credits"] == [
        {"contribution": str(record_id(b"c1")), "role": "music", "share_bps": 6000},
        {"contribution": str(record_id(b"c2")), "role": "art", "share_bps": 4000},
    ]


def test_effective_upstream_bps_defaults() -> None:
    assert contribution().effective_upstream_bps == 0
    assert contribution(upstream_bps=0).effective_upstream_bps == 0
    assert contribution(parents=(Parent(CID),)).effective_upstream_bps == 5000
    assert contribution(parents=(Parent(CID),), upstream_bps=1).effective_upstream_bps == 1


def test_largest_valid_contribution_fits() -> None:
    wide = "\U0001f3b5"  # 4 bytes in UTF-8
    body = Contribution(
        title=wide * MAX_TITLE_CHARS,
        content=Cid.for_raw(b"x"),
        size=MAX_SAFE_INTEGER,
        media_type="a/" + "b" * (MAX_MEDIA_TYPE_CHARS - 2),
        license="L" * MAX_LICENSE_CHARS,
        description=wide * MAX_DESCRIPTION_CHARS,
        tags=tuple(f"{i:02}" + wide * (MAX_TAG_CHARS - 2) for i in range(MAX_TAGS)),
        parents=tuple(Parent(record_id(b"%d" % i), MAX_WEIGHT) for i in range(MAX_PARENTS)),
        upstream_bps=10_000,
        collab=record_id(b"collab"),
    )
    record = sign_record(body, private_key=KEY, created_ms=MAX_SAFE_INTEGER)
    assert len(record.encoded) <= MAX_RECORD_SIZE
    assert decode_record(record.encoded) == record


def test_production_too_large_to_sign() -> None:
    credits = tuple(
        Credit(record_id(b"%d" % i), "r" * MAX_ROLE_CHARS, 10) for i in range(MAX_CREDITS)
    )
    body = Production(title="Big", credits=credits)
    with pytest.raises(InvalidRecord) as caught:
        sign_record(body, private_key=KEY, created_ms=CREATED_MS)
    assert caught.value.reason == "too-large"


def test_decode_respects_max_size() -> None:
    record = sample()
    assert decode_record(record.encoded, max_size=len(record.encoded)) == record
    with pytest.raises(InvalidRecord) as caught:
        decode_record(record.encoded, max_size=len(record.encoded) - 1)
    assert caught.value.reason == "too-large"
    assert reason_of(record.encoded + bytes(MAX_RECORD_SIZE)) == "too-large"


def test_invalid_record_is_a_remote_protocol_error() -> None:
    assert issubclass(InvalidRecord, RemoteProtocolError)


# --- canonical form ----------------------------------------------------------------


def test_unsorted_top_level_keys_are_non_canonical() -> None:
    top = unpack(sample().encoded)
    reordered = msgpack.packb(dict(reversed(top.items())), use_bin_type=True)
    assert reason_of(reordered) == "non-canonical"


def test_unsorted_body_keys_are_non_canonical() -> None:
    top = unpack(sample("contribution").encoded)
    pairs = packed_pairs(top)
    body = top["b"]
    unsorted_body = msgpack.packb(dict(reversed(body.items())), use_bin_type=True)
    pairs[1] = ("b", unsorted_body)
    assert reason_of(pack_map(pairs)) == "non-canonical"


def test_canonical_pack_helper_reproduces_valid_records() -> None:
    # The hand-built encodings below are only meaningful if this holds.
    for name in sample_bodies():
        data = sample(name).encoded
        assert pack_map(packed_pairs(unpack(data))) == data


@pytest.mark.parametrize(
    ("key", "replace"),
    [
        pytest.param("ts", lambda value: b"\xd3" + value[1:], id="int64-for-uint64"),
        pytest.param("v", lambda value: b"\xcc\x01", id="uint8-for-fixint"),
        pytest.param("v", lambda value: b"\xd0\x01", id="int8-for-fixint"),
        pytest.param("t", lambda value: b"\xd9" + bytes([len(value) - 1]) + value[1:], id="str8"),
        pytest.param(
            "t", lambda value: b"\xda\x00" + bytes([len(value) - 1]) + value[1:], id="str16"
        ),
        pytest.param("a", lambda value: b"\xc5\x00\x20" + value[2:], id="bin16"),
        pytest.param("s", lambda value: b"\xc6\x00\x00\x00\x40" + value[2:], id="bin32"),
        pytest.param(
            "b", lambda value: b"\xde\x00" + bytes([value[0] & 0x0F]) + value[1:], id="map16"
        ),
    ],
)
def test_non_shortest_forms_are_non_canonical(key: str, replace: Callable[[bytes], bytes]) -> None:
    data = sample().encoded
    pairs = [(k, replace(v) if k == key else v) for k, v in packed_pairs(unpack(data))]
    assert reason_of(pack_map(pairs)) == "non-canonical"


def test_small_created_ms_uses_shortest_int() -> None:
    for created_ms in (0, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32):
        record = sign_record(sample_bodies()["ack"], private_key=KEY, created_ms=created_ms)
        assert_canonical(record.encoded)
        assert decode_record(record.encoded).created_ms == created_ms
        as_uint64 = [
            (k, b"\xcf" + created_ms.to_bytes(8, "big") if k == "ts" else v)
            for k, v in packed_pairs(unpack(record.encoded))
        ]
        if created_ms < 2**32:
            assert reason_of(pack_map(as_uint64)) == "non-canonical"
        else:  # uint 64 is the shortest form here
            assert pack_map(as_uint64) == record.encoded


def test_duplicate_keys_are_non_canonical() -> None:
    pairs = packed_pairs(unpack(sample().encoded))
    assert reason_of(pack_map([*pairs, ("v", b"\x01")])) == "non-canonical"
    body = unpack(sample().encoded)["b"]
    body_pairs = [(k, canonical_pack(body[k])) for k in sorted(body)]
    with_duplicate = pack_map([*body_pairs[:1], *body_pairs])
    assert reason_of(pack_map([(k, with_duplicate if k == "b" else v) for k, v in pairs])) == (
        "non-canonical"
    )


@pytest.mark.parametrize(
    ("name", "key", "default"),
    [
        ("profile", "bio", ""),
        ("contribution", "d", ""),
        ("contribution", "tg", []),
        ("contribution", "p", []),
        ("collab", "d", ""),
        ("production", "d", ""),
        ("ack", "r", ""),
    ],
)
def test_explicit_defaults_are_non_canonical(name: str, key: str, default: object) -> None:
    top = unpack(sample(name).encoded)
    if key == "p":  # parents also carry upstream_bps; drop both to stay valid
        del top["b"]["up"]
    top["b"][key] = default
    if name == "ack":
        top["b"]["ok"] = True
    assert reason_of(forge(top)) == "non-canonical"


@pytest.mark.parametrize(
    ("name", "key"),
    [("profile", "av"), ("contribution", "up"), ("contribution", "cb"), ("collab", "dl")],
)
def test_nil_is_not_an_encoding_of_none(name: str, key: str) -> None:
    top = unpack(sample(name).encoded)
    top["b"][key] = None
    assert reason_of(forge(top)) == "wrong-type"


def test_declared_upstream_survives_even_when_equal_to_default() -> None:
    # None (omitted) and an explicit 5000 are different values: each has one encoding.
    parents = (Parent(record_id(b"p")),)
    for upstream in (None, 5000):
        body = Contribution(
            "t", Cid.for_raw(b"c"), 1, "a/b", "MIT", parents=parents, upstream_bps=upstream
        )
        record = sign_record(body, private_key=KEY, created_ms=1)
        assert decode_record(record.encoded).body == body
        assert ("up" in unpack(record.encoded)["b"]) == (upstream is not None)


# --- signatures ------------------------------------------------------------------------


def test_bad_signature() -> None:
    top = unpack(sample().encoded)
    top["s"] = bytes(64)
    assert reason_of(canonical_pack(top)) == "bad-signature"


def test_wrong_author() -> None:
    top = unpack(sample().encoded)
    top["a"] = public_key_bytes(OTHER_KEY)
    assert reason_of(canonical_pack(top)) == "bad-signature"


def test_signature_over_other_domain_is_rejected() -> None:
    top = unpack(sample().encoded)
    unsigned = canonical_pack({k: v for k, v in top.items() if k != "s"})
    top["s"] = KEY.sign(unsigned)  # no domain prefix
    assert reason_of(canonical_pack(top)) == "bad-signature"


def test_malleated_signature_scalar_is_rejected() -> None:
    # S + L verifies in a lax implementation and would give the record a second id.
    top = unpack(sample().encoded)
    scalar = int.from_bytes(top["s"][32:], "little") + ED25519_ORDER
    top["s"] = top["s"][:32] + scalar.to_bytes(32, "little")
    assert reason_of(canonical_pack(top)) == "bad-signature"


def test_signature_covers_time_and_body() -> None:
    top = unpack(sample("contribution").encoded)
    assert reason_of(canonical_pack({**top, "ts": CREATED_MS + 1})) == "bad-signature"
    body = {**top["b"], "sz": 1235}
    assert reason_of(canonical_pack({**top, "b": body})) == "bad-signature"


# --- schema -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda top: top.update(v=2), "unknown-version"),
        (lambda top: top.update(v=0), "unknown-version"),
        (lambda top: top.update(v="1"), "wrong-type"),
        (lambda top: top.pop("v"), "missing-field"),
        (lambda top: top.update(t="poem"), "unknown-type"),
        (lambda top: top.update(t=b"ack"), "wrong-type"),
        (lambda top: top.pop("ts"), "missing-field"),
        (lambda top: top.pop("b"), "missing-field"),
        (lambda top: top.update(x=1), "extra-field"),
        (lambda top: top.update(ts=1.5), "wrong-type"),
        (lambda top: top.update(ts=True), "wrong-type"),
        (lambda top: top.update(ts=-1), "invalid-value"),
        (lambda top: top.update(ts=2**53), "invalid-value"),
        (lambda top: top.update(a=b"\x01" * 31), "invalid-value"),
        (lambda top: top.update(a="key"), "wrong-type"),
        (lambda top: top.update(b=[]), "wrong-type"),
        (lambda top: top["b"].pop("p"), "missing-field"),
        (lambda top: top["b"].pop("ok"), "missing-field"),
        (lambda top: top["b"].update(zz=1), "extra-field"),
        (lambda top: top["b"].update(ok=0), "wrong-type"),
        (lambda top: top["b"].update(r=b"bytes"), "wrong-type"),
        (lambda top: top["b"].update(p=str(record_id(b"x"))), "wrong-type"),
        (lambda top: top["b"].update(p=Cid.for_dag_pb(b"x").to_bytes()), "invalid-value"),
        (lambda top: top["b"].update(p=b"\x12\x20" + bytes(32)), "invalid-value"),  # CIDv0
        (lambda top: top["b"].update(p=b"\x01\x71\x12\x20" + bytes(32)), "invalid-value"),
        (lambda top: top["b"].update(p=b"\x01\x55\x13\x20" + bytes(32)), "invalid-value"),
        (lambda top: top["b"].update(r="x" * 2001), "oversized-field"),
        (lambda top: top["b"].update(r="\x1b[31m"), "invalid-value"),
    ],
)
def test_schema_violations(change: Callable[[dict[str, Any]], object], reason: str) -> None:
    top = unpack(sample().encoded)
    change(top)
    assert reason_of(forge(top)) == reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda body: body.update(ti="x" * (MAX_TITLE_CHARS + 1)), "oversized-field"),
        (lambda body: body.update(tg=[f"t{i}" for i in range(MAX_TAGS + 1)]), "oversized-field"),
        (lambda body: body.update(tg=["x" * (MAX_TAG_CHARS + 1)]), "oversized-field"),
        (lambda body: body.update(tg=["a", "a"]), "invalid-value"),
        (lambda body: body.update(tg=[1]), "wrong-type"),
        (lambda body: body.update(tg="ambient"), "wrong-type"),
        (lambda body: body.update(mt="Audio/FLAC"), "invalid-value"),
        (lambda body: body.update(l="MIT license!"), "invalid-value"),
        (lambda body: body.update(sz=-1), "invalid-value"),
        (lambda body: body.update(up=10_001), "invalid-value"),
        (lambda body: body["p"][0].update(w=0), "invalid-value"),
        (lambda body: body["p"][0].pop("w"), "invalid-value"),  # weights: all or none
        (lambda body: body["p"][0].pop("id"), "missing-field"),
        (lambda body: body["p"][0].update(x=1), "extra-field"),
        (lambda body: body["p"].append(body["p"][0]), "invalid-value"),  # duplicate parent
        (lambda body: body["p"].append([]), "wrong-type"),
    ],
)
def test_contribution_schema_violations(
    change: Callable[[dict[str, Any]], object], reason: str
) -> None:
    top = unpack(sample("contribution").encoded)
    change(top["b"])
    assert reason_of(forge(top)) == reason


# --- body constructors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: Profile(name=""), "invalid-value"),
        (lambda: Profile(name=" Ada"), "invalid-value"),
        (lambda: Profile(name="Ada\n"), "invalid-value"),
        (lambda: Profile(name="x" * (MAX_NAME_CHARS + 1)), "oversized-field"),
        (lambda: Profile(name="Ada", bio="x" * (MAX_BIO_CHARS + 1)), "oversized-field"),
        (lambda: Profile(name="Ada", bio="\r\n"), "invalid-value"),
        (lambda: Profile(name="Ada", bio="\ud800"), "invalid-value"),
        (lambda: Profile(name="Ada", avatar="bafy"), "wrong-type"),  # type: ignore[arg-type]
        (lambda: Profile(name=b"Ada"), "wrong-type"),  # type: ignore[arg-type]
        (lambda: Parent(DAG), "invalid-value"),
        (lambda: Parent(CID, 0), "invalid-value"),
        (lambda: Parent(CID, MAX_WEIGHT + 1), "invalid-value"),
        (lambda: Parent(CID, True), "wrong-type"),
        (lambda: contribution(title="x" * (MAX_TITLE_CHARS + 1)), "oversized-field"),
        (lambda: contribution(size=-1), "invalid-value"),
        (lambda: contribution(size=MAX_SAFE_INTEGER + 1), "invalid-value"),
        (lambda: contribution(size=1.0), "wrong-type"),
        (lambda: contribution(media_type="text"), "invalid-value"),
        (lambda: contribution(media_type="text/plain; charset=utf-8"), "invalid-value"),
        (lambda: contribution(media_type="a/" + "b" * MAX_MEDIA_TYPE_CHARS), "oversized-field"),
        (lambda: contribution(license=""), "invalid-value"),
        (lambda: contribution(license="MIT  OR CC0-1.0"), "invalid-value"),
        (lambda: contribution(license="M" * (MAX_LICENSE_CHARS + 1)), "oversized-field"),
        (lambda: contribution(tags=["a"]), "wrong-type"),
        (lambda: contribution(tags=("a", "a")), "invalid-value"),
        (lambda: contribution(tags=("",)), "invalid-value"),
        (lambda: contribution(parents=(CID,)), "wrong-type"),
        (lambda: contribution(parents=(Parent(CID), Parent(CID))), "invalid-value"),
        (
            lambda: contribution(parents=(Parent(CID, 1), Parent(Cid.for_raw(b"y")))),
            "invalid-value",
        ),
        (lambda: contribution(upstream_bps=5000), "invalid-value"),  # no parents
        (lambda: contribution(parents=(Parent(CID),), upstream_bps=-1), "invalid-value"),
        (lambda: contribution(parents=(Parent(CID),), upstream_bps=10_001), "invalid-value"),
        (lambda: contribution(collab=DAG), "invalid-value"),
        (
            lambda: contribution(
                parents=tuple(Parent(Cid.for_raw(b"%d" % i)) for i in range(MAX_PARENTS + 1))
            ),
            "oversized-field",
        ),
        (lambda: Collab(title="c", deadline_ms=-1), "invalid-value"),
        (lambda: Collab(title="c", brief="x" * (MAX_DESCRIPTION_CHARS + 1)), "oversized-field"),
        (lambda: Credit(CID, "music", 0), "invalid-value"),
        (lambda: Credit(CID, "m" * (MAX_ROLE_CHARS + 1), 1), "oversized-field"),
        (lambda: Credit(DAG, "music", 1), "invalid-value"),
        (lambda: Production(title="p", credits=()), "invalid-value"),
        (lambda: Production(title="p", credits=(Credit(CID, "m", 9999),)), "invalid-value"),
        (
            lambda: Production(title="p", credits=(Credit(CID, "m", 5000), Credit(CID, "n", 5000))),
            "invalid-value",
        ),
        (lambda: Production("p", [Credit(CID, "m", 10_000)]), "wrong-type"),  # type: ignore[arg-type]
        (
            lambda: Production(
                title="p",
                credits=tuple(
                    Credit(Cid.for_raw(b"%d" % i), "m", 1) for i in range(MAX_CREDITS + 1)
                ),
            ),
            "oversized-field",
        ),
        (lambda: Ack(production=CID, accept=False), "invalid-value"),
        (lambda: Ack(production=CID, accept=False, reason=" \n"), "invalid-value"),
        (lambda: Ack(production=CID, accept=1), "wrong-type"),  # type: ignore[arg-type]
        (lambda: Ack(production=DAG, accept=True), "invalid-value"),
    ],
)
def test_body_constructors_validate(build: Callable[[], object], reason: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        build()
    assert caught.value.reason == reason


def test_sign_record_validates_arguments() -> None:
    with pytest.raises(InvalidRecord) as caught:
        sign_record(sample_bodies()["ack"], private_key=KEY, created_ms=-1)
    assert caught.value.reason == "invalid-value"
    with pytest.raises(InvalidRecord) as caught:
        sign_record(Parent(CID), private_key=KEY, created_ms=1)  # type: ignore[arg-type]
    assert caught.value.reason == "wrong-type"


# --- decoder robustness ------------------------------------------------------------------


def test_every_flipped_bit_is_rejected() -> None:
    data = sample().encoded
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(InvalidRecord):
            decode_record(bytes(flipped))


def test_every_truncation_and_extension_is_rejected() -> None:
    data = sample("contribution").encoded
    for end in range(len(data)):
        with pytest.raises(InvalidRecord):
            decode_record(data[:end])
    assert reason_of(data + b"\x00") == "not-msgpack"
    assert reason_of(data + data) == "not-msgpack"


def test_invalid_utf8_is_not_msgpack() -> None:
    top = unpack(sample().encoded)
    pairs = packed_pairs(top)
    assert reason_of(pack_map([(k, b"\xa3a\xffk" if k == "t" else v) for k, v in pairs])) == (
        "not-msgpack"
    )


@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_invalid_record_only(data: bytes) -> None:
    with pytest.raises(InvalidRecord):
        decode_record(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["a", "b", "s", "t", "ts", "v", "p", "ok", "r", "x"]),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@given(msgpack_values)
def test_arbitrary_msgpack_raises_invalid_record_only(value: object) -> None:
    with pytest.raises(InvalidRecord):
        decode_record(msgpack.packb(value, use_bin_type=True))


@settings(max_examples=300)
@given(
    name=st.sampled_from(sorted(sample_bodies())),
    position=st.integers(0, 10_000),
    insert=st.binary(max_size=4),
    delete=st.integers(0, 4),
)
def test_mutated_records_raise_invalid_record_only(
    name: str, position: int, insert: bytes, delete: int
) -> None:
    data = sample(name).encoded
    position %= len(data)
    mutated = data[:position] + insert + data[position + delete :]
    if mutated == data:
        assert decode_record(mutated) == sample(name)
    else:
        with pytest.raises(InvalidRecord):
            decode_record(mutated)


@given(body=bodies, entry=st.sampled_from(["a", "b", "t", "ts"]), value=msgpack_values)
def test_replaced_top_level_values_raise_invalid_record_only(
    body: Body, entry: str, value: object
) -> None:
    record = sign_record(body, private_key=KEY, created_ms=CREATED_MS)
    top = unpack(record.encoded)
    assume(type(value) is not type(top[entry]) or value != top[entry])
    # Any other valid creation time, re-signed by forge(), is simply another valid record.
    assume(not (entry == "ts" and type(value) is int and 0 <= value <= MAX_SAFE_INTEGER))
    top[entry] = value
    with pytest.raises(InvalidRecord):
        decode_record(forge(top))


# --- test vectors in docs/protocol.md ---------------------------------------------------


def parse_vectors(text: str) -> list[dict[str, str]]:
    """The ```vector blocks: ``key: value`` lines; indented lines continue a value."""
    vectors = []
    for block in re.findall(r"^```vector\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL):
        vector: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith("  "):
                vector[key] += line[2:] + "\n"
            else:
                key, _, value = line.partition(":")
                vector[key] = value.strip()
        vectors.append(vector)
    return vectors


VECTORS = parse_vectors(PROTOCOL_MD.read_text(encoding="utf-8"))


def test_protocol_md_has_vectors_for_every_type() -> None:
    types = {json.loads(vector["json"])["type"] for vector in VECTORS}
    assert types == {str(t) for t in RecordType}
    names = {vector["name"] for vector in VECTORS}
    assert {"profile", "contribution-remix", "ack"} <= names


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_protocol_md_vector(vector: dict[str, str]) -> None:
    encoded = bytes.fromhex(vector["encoded"])
    record = decode_record(encoded)
    key = private_key_from_seed(bytes.fromhex(vector["seed"]))
    assert str(record.id) == vector["id"]
    assert record.author_id == vector["author"]
    assert record.created_ms == int(vector["created_ms"])
    assert len(encoded) == int(vector["size"])
    assert to_json(record) == json.loads(vector["json"])
    resigned = sign_record(record.body, private_key=key, created_ms=record.created_ms)
    assert resigned.encoded == encoded
    # The signing input as the document defines it, built without protocol.records.
    signing_input = bytes.fromhex(vector["signing_input"])
    top = unpack(encoded)
    assert signing_input == SIGNING_PREFIX + canonical_pack(
        {k: v for k, v in top.items() if k != "s"}
    )
    key.public_key().verify(top["s"], signing_input)


def test_protocol_md_hexdump_is_the_ack_vector() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    (dump,) = re.findall(r"^```hexdump\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    dumped = bytes.fromhex("".join(line.partition("#")[0] for line in dump.splitlines()))
    (ack,) = (vector for vector in VECTORS if vector["name"] == "ack")
    assert dumped == bytes.fromhex(ack["encoded"])


def test_protocol_md_states_the_signing_prefix() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    assert SIGNING_PREFIX.hex() in text.replace(" ", "")
