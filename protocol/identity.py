"""Author identity: an Ed25519 public key, written as a libp2p PeerID.

A PeerID for an Ed25519 key is the base58btc identity multihash of the
protobuf-encoded libp2p ``PublicKey`` message ``{Type: Ed25519 (1), Data: key}``
(see the libp2p peer-id spec). It is computed here without libp2p so that
``protocol/`` stays free of it; ``tests/test_identity.py`` checks it against
py-libp2p.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from multiformats import multibase

from protocol.errors import RemoteProtocolError

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
# protobuf: field 1 (Type) varint 1 = Ed25519; field 2 (Data) length 32.
_PROTOBUF_PREFIX = bytes([0x08, 0x01, 0x12, PUBLIC_KEY_SIZE])
# identity multihash: code 0x00, length 36.
_MULTIHASH_PREFIX = bytes([0x00, len(_PROTOBUF_PREFIX) + PUBLIC_KEY_SIZE])


class InvalidAuthorId(RemoteProtocolError):
    """Text that is not the PeerID of an Ed25519 key."""


def author_id(public_key: bytes) -> str:
    """The PeerID (``12D3KooW…``) of a raw 32-byte Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidAuthorId("bad-public-key-length", str(len(public_key)))
    return _base58btc(_MULTIHASH_PREFIX + _PROTOBUF_PREFIX + public_key)


_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58btc(data: bytes) -> str:
    """Base58btc without the multibase prefix; by hand because multiformats takes ~2 ms."""
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(_BASE58_ALPHABET[digit])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(digits))


def public_key_of(author: str) -> bytes:
    """The raw Ed25519 public key inside a PeerID. Raises ``InvalidAuthorId``."""
    try:
        decoded: bytes = multibase.decode("z" + author.strip())
    except Exception as error:  # multibase raises several unrelated types
        raise InvalidAuthorId("bad-author-id", repr(author)[:80]) from error
    prefix = _MULTIHASH_PREFIX + _PROTOBUF_PREFIX
    if len(decoded) != len(prefix) + PUBLIC_KEY_SIZE or not decoded.startswith(prefix):
        raise InvalidAuthorId("not-an-ed25519-peer-id", repr(author)[:80])
    return decoded[len(prefix) :]


def private_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    """The Ed25519 signing key for a 32-byte seed (the key file's content)."""
    if len(seed) != SEED_SIZE:
        raise InvalidAuthorId("bad-seed-length", str(len(seed)))
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of a signing key."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
