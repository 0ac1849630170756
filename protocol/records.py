"""Records: the signed documents artists publish (DESIGN.md invariant 3).

This module owns how the five record types (profile, contribution, collab,
production, ack) travel: their canonical msgpack encoding (the field schema),
their Ed25519 signatures, their ids and their JSON view. ``docs/protocol.md``
("Records") specifies the format byte by byte; its test vectors are checked
by ``tests/test_records.py``.

The bodies themselves, their field limits and their checks are
``protocol.record_bodies``; this module re-exports them, so importers find
every record name here.

Invariants:

* A body's constructor validates it completely, so a ``SignedRecord`` only
  ever holds a valid body.
* There is exactly one encoding per value. ``decode_record`` accepts bytes
  only when they are, byte for byte, what ``sign_record`` produces for the
  decoded value, so a record's bytes (and so its id) cannot be malleated.
* Optional fields are omitted when they hold their default (``None``, ``""``,
  ``()``); encoding a default explicitly is non-canonical.
* Every failure of ``decode_record`` is an ``InvalidRecord`` with a stable
  ``reason``; nothing else escapes it.

Sans-IO: no clock (``created_ms`` is an argument), no randomness (Ed25519 is
deterministic), no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from functools import partial
from typing import Any, Final, NamedTuple

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.cid import BINARY_SIZE, RAW, Cid
from protocol.errors import InvalidCid
from protocol.identity import PUBLIC_KEY_SIZE, author_id, public_key_bytes
from protocol.record_bodies import (
    DEFAULT_UPSTREAM_BPS,
    MAX_BIO_CHARS,
    MAX_CREDITS,
    MAX_DESCRIPTION_CHARS,
    MAX_LICENSE_CHARS,
    MAX_MEDIA_TYPE_CHARS,
    MAX_NAME_CHARS,
    MAX_PARENTS,
    MAX_REASON_CHARS,
    MAX_ROLE_CHARS,
    MAX_SAFE_INTEGER,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TITLE_CHARS,
    MAX_WEIGHT,
    TOTAL_BPS,
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
    check_int,
)

__all__ = [
    "DEFAULT_UPSTREAM_BPS",
    "MAX_BIO_CHARS",
    "MAX_CREDITS",
    "MAX_DESCRIPTION_CHARS",
    "MAX_LICENSE_CHARS",
    "MAX_MEDIA_TYPE_CHARS",
    "MAX_NAME_CHARS",
    "MAX_PARENTS",
    "MAX_REASON_CHARS",
    "MAX_RECORD_SIZE",
    "MAX_ROLE_CHARS",
    "MAX_SAFE_INTEGER",
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "MAX_TITLE_CHARS",
    "MAX_WEIGHT",
    "RECORD_VERSION",
    "SIGNATURE_SIZE",
    "SIGNING_PREFIX",
    "TOTAL_BPS",
    "Ack",
    "Body",
    "Collab",
    "Contribution",
    "Credit",
    "InvalidRecord",
    "Parent",
    "Production",
    "Profile",
    "RecordType",
    "SignedRecord",
    "body_to_json",
    "decode_record",
    "load_stored_record",
    "sign_record",
    "to_json",
    "verify_record_bytes",
]

RECORD_VERSION: Final = 1
MAX_RECORD_SIZE: Final = 64 * 1024
SIGNING_PREFIX: Final = b"remixnet/record/v1\x00"
SIGNATURE_SIZE: Final = 64

_TYPE_OF_BODY: Final[dict[type, RecordType]] = {
    Profile: RecordType.PROFILE,
    Contribution: RecordType.CONTRIBUTION,
    Collab: RecordType.COLLAB,
    Production: RecordType.PRODUCTION,
    Ack: RecordType.ACK,
}
_BODY_OF_TYPE: Final[dict[str, type]] = {str(t): cls for cls, t in _TYPE_OF_BODY.items()}


# --- the field schema: msgpack keys, value kinds, defaults -------------------


class _Kind(NamedTuple):
    decode: Callable[[object, str], object]  # msgpack value, key -> Python value
    encode: Callable[[Any], object]  # Python value -> msgpack value


class _Field(NamedTuple):
    key: str  # msgpack map key
    name: str  # dataclass attribute
    decode: Callable[[object, str], object]
    encode: Callable[[Any], object]
    default: object  # _REQUIRED for a required field


_REQUIRED: Final = object()


def _decode_scalar(expected: type) -> Callable[[object, str], object]:
    def decode(value: object, key: str) -> object:
        if type(value) is not expected:  # exact: a msgpack bool must not pass for an int
            raise InvalidRecord("wrong-type", f"{key!r} must be {expected.__name__}")
        return value

    return decode


def _identity(value: object) -> object:
    return value


def _decode_cid(value: object, key: str) -> Cid:
    if type(value) is not bytes:
        raise InvalidRecord("wrong-type", f"{key!r} must be a binary CID")
    if len(value) != BINARY_SIZE or value[0] != 1:  # Cid.from_bytes also takes CIDv0
        raise InvalidRecord("invalid-value", f"{key!r} is not a binary CIDv1 sha2-256")
    try:
        return Cid.from_bytes(value)
    except InvalidCid as error:
        raise InvalidRecord("invalid-value", f"{key!r}: {error}") from None


def _decode_list(item: _Kind) -> Callable[[object, str], object]:
    def decode(value: object, key: str) -> tuple[object, ...]:
        if type(value) is not list:
            raise InvalidRecord("wrong-type", f"{key!r} must be an array")
        return tuple([item.decode(element, key) for element in value])

    return decode


def _encode_list(item: _Kind) -> Callable[[Any], object]:
    encode = item.encode
    return lambda values: [encode(value) for value in values]


_STR = _Kind(_decode_scalar(str), _identity)
_INT = _Kind(_decode_scalar(int), _identity)
_BOOL = _Kind(_decode_scalar(bool), _identity)
_CID = _Kind(_decode_cid, Cid.to_bytes)
_STR_LIST = _Kind(_decode_list(_STR), list)


def _encode_map(value: object) -> dict[str, object]:
    """The msgpack map of a body or nested struct, keys in canonical order."""
    encoded: dict[str, object] = {}
    for key, name, _, encode, default in _SCHEMAS[type(value)]:
        item = getattr(value, name)
        if item != default:
            encoded[key] = encode(item)
    return encoded


def _decode_struct(cls: type, value: object, where: str) -> Any:
    """The ``cls`` (body, ``Parent`` or ``Credit``) encoded by the msgpack map ``value``."""
    if type(value) is not dict:
        raise InvalidRecord("wrong-type", f"{where!r} must be a map")
    by_key = _FIELDS_BY_KEY[cls]
    arguments: dict[str, object] = {}
    for key, item in value.items():
        f = by_key.get(key)
        if f is None:
            raise InvalidRecord("extra-field", f"{where!r} has unknown key {key!r}")
        decoded = f.decode(item, key)
        if decoded == f.default:
            raise InvalidRecord("non-canonical", f"{key!r} explicitly encodes its default")
        arguments[f.name] = decoded
    for f in _REQUIRED_FIELDS[cls]:
        if f.name not in arguments:
            raise InvalidRecord("missing-field", f"{where!r} lacks {f.key!r}")
    return cls(**arguments)


def _list_of(cls: type) -> _Kind:
    """The kind of an array of nested maps (``Parent``, ``Credit``)."""
    struct = _Kind(partial(_decode_struct, cls), _encode_map)
    return _Kind(_decode_list(struct), _encode_list(struct))


_SCHEMA_KEYS: Final[dict[type, tuple[tuple[str, str, _Kind], ...]]] = {
    Profile: (("n", "name", _STR), ("bio", "bio", _STR), ("av", "avatar", _CID)),
    Parent: (("id", "record_id", _CID), ("w", "weight", _INT)),
    Contribution: (
        ("ti", "title", _STR),
        ("c", "content", _CID),
        ("sz", "size", _INT),
        ("mt", "media_type", _STR),
        ("l", "license", _STR),
        ("d", "description", _STR),
        ("tg", "tags", _STR_LIST),
        ("p", "parents", _list_of(Parent)),
        ("up", "upstream_bps", _INT),
        ("cb", "collab", _CID),
    ),
    Collab: (("ti", "title", _STR), ("d", "brief", _STR), ("dl", "deadline_ms", _INT)),
    Credit: (("c", "contribution", _CID), ("r", "role", _STR), ("sh", "share_bps", _INT)),
    Production: (
        ("ti", "title", _STR),
        ("cr", "credits", _list_of(Credit)),
        ("cb", "collab", _CID),
        ("d", "description", _STR),
    ),
    Ack: (("p", "production", _CID), ("ok", "accept", _BOOL), ("r", "reason", _STR)),
}


def _schema(cls: type, keys: tuple[tuple[str, str, _Kind], ...]) -> tuple[_Field, ...]:
    defaults = {f.name: (_REQUIRED if f.default is MISSING else f.default) for f in fields(cls)}
    assert set(defaults) == {name for _, name, _ in keys}, cls
    # Sorted by key: encoding a schema in order writes a canonical map. str order
    # is code point order, which is UTF-8 byte order.
    schema = (_Field(k, name, kind.decode, kind.encode, defaults[name]) for k, name, kind in keys)
    return tuple(sorted(schema, key=lambda f: f.key))


_SCHEMAS: Final = {cls: _schema(cls, keys) for cls, keys in _SCHEMA_KEYS.items()}
_FIELDS_BY_KEY: Final = {cls: {f.key: f for f in schema} for cls, schema in _SCHEMAS.items()}
_REQUIRED_FIELDS: Final = {
    cls: tuple(f for f in schema if f.default is _REQUIRED) for cls, schema in _SCHEMAS.items()
}


# --- signed records ----------------------------------------------------------


def _packb(value: object) -> bytes:
    """msgpack with shortest forms and str/bin distinct; a fresh Packer, so thread-safe."""
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """A body signed by its author. Build with ``sign_record`` or ``decode_record``."""

    body: Body
    author: bytes  # raw 32-byte Ed25519 public key
    created_ms: int  # unix time in milliseconds
    signature: bytes  # 64 bytes
    encoded: bytes  # the canonical signed bytes: what is stored and sent
    _id: Cid = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_id", Cid.for_raw(self.encoded))

    @property
    def id(self) -> Cid:
        """The record id: CIDv1, raw codec, sha2-256 of ``encoded``."""
        return self._id

    @property
    def author_id(self) -> str:
        """The author's PeerID (``12D3KooW…``)."""
        return author_id(self.author)

    @property
    def type(self) -> RecordType:
        return _TYPE_OF_BODY[type(self.body)]


def _layout(record_type: str, author: bytes, created_ms: int, body: bytes) -> tuple[bytes, bytes]:
    """The top-level map around its signature: (entries before "s", entries after "s").

    Keys a, b, s, t, ts, v are in canonical order; the unsigned map is
    ``0x85 + head + tail`` and the signed one ``0x86 + head + "s" entry + tail``.
    """
    head = b"\xa1a\xc4\x20" + author + b"\xa1b" + body
    tail = b"\xa1t" + _packb(record_type) + b"\xa2ts" + _packb(created_ms) + b"\xa1v\x01"
    return head, tail


def sign_record(body: Body, *, private_key: Ed25519PrivateKey, created_ms: int) -> SignedRecord:
    """Sign ``body`` as the owner of ``private_key`` at ``created_ms``.

    Raises ``InvalidRecord``: ``invalid-value`` for a bad ``created_ms``,
    ``too-large`` when the record would exceed ``MAX_RECORD_SIZE`` (only a
    production with very many credits can).
    """
    record_type = _TYPE_OF_BODY.get(type(body))
    if record_type is None:
        raise InvalidRecord("wrong-type", f"not a record body: {type(body).__name__}")
    check_int(created_ms, "created_ms", 0, MAX_SAFE_INTEGER)
    author = public_key_bytes(private_key)
    head, tail = _layout(record_type, author, created_ms, _packb(_encode_map(body)))
    signature = private_key.sign(SIGNING_PREFIX + b"\x85" + head + tail)
    encoded = b"\x86" + head + b"\xa1s\xc4\x40" + signature + tail
    if len(encoded) > MAX_RECORD_SIZE:
        raise InvalidRecord("too-large", f"{len(encoded)} bytes > {MAX_RECORD_SIZE}")
    return SignedRecord(body, author, created_ms, signature, encoded)


_TOP_LEVEL_KEYS: Final = frozenset({"a", "b", "s", "t", "ts", "v"})


def decode_record(data: bytes, *, max_size: int = MAX_RECORD_SIZE) -> SignedRecord:
    """Parse, check and verify a signed record.

    Returns a ``SignedRecord`` whose ``encoded`` is ``data``. Raises
    ``InvalidRecord`` (and nothing else) when ``data`` is larger than
    ``max_size``, not msgpack, not the canonical encoding of a valid record
    of a known type and version, or not signed by its author.
    """
    record_type, record = _parse(data, max_size)
    # One encoding per value: the input must be exactly what sign_record writes.
    head, tail = _layout(
        record_type, record.author, record.created_ms, _packb(_encode_map(record.body))
    )
    if data != b"\x86" + head + b"\xa1s\xc4\x40" + record.signature + tail:
        raise InvalidRecord("non-canonical", "bytes differ from the canonical encoding")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(record.author)
        public_key.verify(record.signature, SIGNING_PREFIX + b"\x85" + head + tail)
    except (InvalidSignature, ValueError):
        raise InvalidRecord("bad-signature") from None
    return record


def load_stored_record(data: bytes, record_id: bytes) -> SignedRecord:
    """A record read back from a store that ran ``decode_record`` on it before storing it.

    ``record_id`` is the id it was stored under (``Cid.to_bytes``). The bytes
    must still hash to it, which makes them exactly the bytes that were
    verified; then they are parsed without checking their canonical form and
    signature again, which is most of the cost of ``decode_record``. Raises
    ``InvalidRecord``: ``wrong-id`` when the bytes changed on disk, or any
    parse error. ``node.fsck`` still verifies every stored record in full.
    """
    _, record = _parse(data, MAX_RECORD_SIZE)
    if record.id.to_bytes() != record_id:
        raise InvalidRecord("wrong-id", f"stored bytes are not record {Cid.from_bytes(record_id)}")
    return record


def _parse(data: bytes, max_size: int) -> tuple[str, SignedRecord]:
    """The record type and the record in ``data``, its fields checked, not its form or signature."""
    if len(data) > max_size:
        raise InvalidRecord("too-large", f"{len(data)} bytes > {max_size}")
    try:
        top = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as error:  # msgpack raises several ValueError subclasses and others
        raise InvalidRecord("not-msgpack", str(error)[:80]) from None
    if type(top) is not dict:
        raise InvalidRecord("wrong-type", "a record must be a map")
    # The version is checked first: another version may have other fields.
    if "v" not in top:
        raise InvalidRecord("missing-field", "'v'")
    version = top["v"]
    if type(version) is not int:
        raise InvalidRecord("wrong-type", "'v' must be int")
    if version != RECORD_VERSION:
        raise InvalidRecord("unknown-version", str(version))
    if top.keys() != _TOP_LEVEL_KEYS:
        if extra := top.keys() - _TOP_LEVEL_KEYS:
            raise InvalidRecord("extra-field", ", ".join(sorted(map(repr, extra))))
        raise InvalidRecord("missing-field", ", ".join(sorted(_TOP_LEVEL_KEYS - top.keys())))
    record_type = top["t"]
    if type(record_type) is not str:
        raise InvalidRecord("wrong-type", "'t' must be str")
    body_class = _BODY_OF_TYPE.get(record_type)
    if body_class is None:
        raise InvalidRecord("unknown-type", repr(record_type)[:80])
    author, signature, created_ms = top["a"], top["s"], top["ts"]
    if type(author) is not bytes or type(signature) is not bytes:
        raise InvalidRecord("wrong-type", "'a' and 's' must be bin")
    if len(author) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        raise InvalidRecord("invalid-value", "'a' must be 32 bytes and 's' 64 bytes")
    check_int(created_ms, "'ts'", 0, MAX_SAFE_INTEGER)
    body: Body = _decode_struct(body_class, top["b"], "b")
    return record_type, SignedRecord(body, author, created_ms, signature, bytes(data))


def verify_record_bytes(
    data: bytes, *, expected_id: Cid | None = None, max_size: int = MAX_RECORD_SIZE
) -> SignedRecord:
    """``decode_record``, first checking that ``data`` is the record ``expected_id``.

    Use it for records fetched by id. Raises ``InvalidRecord`` (``wrong-id``
    or any reason of ``decode_record``).
    """
    if expected_id is not None and not (expected_id.codec == RAW and expected_id.matches(data)):
        raise InvalidRecord("wrong-id", f"bytes are not record {expected_id}")
    return decode_record(data, max_size=max_size)


# --- JSON view -----------------------------------------------------------------


def _json_value(value: object) -> object:
    if isinstance(value, Cid):
        return str(value)
    if isinstance(value, Parent):
        return {"id": str(value.record_id), "weight": value.weight}
    if isinstance(value, Credit):
        return {
            "contribution": str(value.contribution),
            "role": value.role,
            "share_bps": value.share_bps,
        }
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    return value


def body_to_json(body: Body) -> dict[str, object]:
    """The body's fields by attribute name, all present (``None`` → null), CIDs as text."""
    view = {f.name: _json_value(getattr(body, f.name)) for f in fields(body)}
    if isinstance(body, Contribution):
        view["effective_upstream_bps"] = body.effective_upstream_bps
    return view


def to_json(record: SignedRecord) -> dict[str, object]:
    """A JSON-friendly view: id, type, author (PeerID), created_ms, then the body fields."""
    return {
        "id": str(record.id),
        "type": str(record.type),
        "author": record.author_id,
        "created_ms": record.created_ms,
        **body_to_json(record.body),
    }
