"""Content identifiers: CIDv1 with sha2-256, as IPFS makes them.

remixnet only ever *creates* CIDv1 sha2-256 CIDs with the ``raw`` (0x55) or
``dag-pb`` (0x70) codec; it parses any multibase text form (and CIDv0
``Qm…`` strings, which are dag-pb sha2-256) via the ``multiformats`` library.
The binary form is built by hand on the hot path (hashing every 256 KiB chunk)
because it is four fixed bytes and a digest.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from multiformats import CID as _MultiformatsCID

from protocol.errors import BlockMismatch, InvalidCid

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
DIGEST_SIZE = 32
CODEC_NAMES = {RAW: "raw", DAG_PB: "dag-pb"}
# Binary CIDv1 = version 0x01, codec varint (one byte for 0x55, 0x70 fits in one
# byte too), multihash code 0x12, digest length 0x20, digest.
_PREFIX = {
    RAW: bytes([0x01, RAW, SHA2_256, DIGEST_SIZE]),
    DAG_PB: bytes([0x01, DAG_PB, SHA2_256, DIGEST_SIZE]),
}
BINARY_SIZE = 4 + DIGEST_SIZE
_CIDV0_PREFIX = bytes([SHA2_256, DIGEST_SIZE])


@dataclass(frozen=True, slots=True, order=True)
class Cid:
    """A CIDv1 (codec raw or dag-pb, hash sha2-256). ``str()`` gives base32 ``b…``."""

    codec: int
    digest: bytes

    def __post_init__(self) -> None:
        if self.codec not in _PREFIX:
            raise InvalidCid("unsupported-codec", hex(self.codec))
        if len(self.digest) != DIGEST_SIZE:
            raise InvalidCid("bad-digest-length", str(len(self.digest)))

    @classmethod
    def for_raw(cls, data: bytes | memoryview) -> Cid:
        """The CID of ``data`` as a raw block."""
        return cls(RAW, hashlib.sha256(data).digest())

    @classmethod
    def for_dag_pb(cls, data: bytes | memoryview) -> Cid:
        """The CID of ``data`` as a dag-pb block."""
        return cls(DAG_PB, hashlib.sha256(data).digest())

    @classmethod
    def from_bytes(cls, data: bytes) -> Cid:
        """Parse a binary CID (v1, or a 34-byte v0 multihash). Raises ``InvalidCid``."""
        if len(data) == BINARY_SIZE and data[0] == 0x01 and data[2:4] == _CIDV0_PREFIX:
            return cls(data[1], bytes(data[4:]))
        if len(data) == DIGEST_SIZE + 2 and data[:2] == _CIDV0_PREFIX:
            return cls(DAG_PB, bytes(data[2:]))
        raise InvalidCid("bad-binary-cid", bytes(data[:8]).hex())

    @classmethod
    def parse(cls, text: str) -> Cid:
        """Parse a CID in any multibase text form (or CIDv0). Raises ``InvalidCid``."""
        try:
            parsed = _MultiformatsCID.decode(text.strip())
        except Exception as error:  # multiformats raises many unrelated types
            raise InvalidCid("bad-cid-text", repr(text)[:80]) from error
        if parsed.hashfun.code != SHA2_256:
            raise InvalidCid("unsupported-hash", parsed.hashfun.name)
        return cls(int(parsed.codec.code), bytes(parsed.raw_digest))

    def to_bytes(self) -> bytes:
        """The binary CIDv1."""
        return _PREFIX[self.codec] + self.digest

    def matches(self, data: bytes | memoryview) -> bool:
        """True when ``data`` hashes to this CID."""
        return hashlib.sha256(data).digest() == self.digest

    def verify(self, data: bytes | memoryview) -> None:
        """Raise ``BlockMismatch`` unless ``data`` hashes to this CID."""
        if not self.matches(data):
            raise BlockMismatch("block-mismatch", str(self))

    @property
    def codec_name(self) -> str:
        return CODEC_NAMES[self.codec]

    def __str__(self) -> str:
        # Multibase base32 ("b" + RFC 4648 lower case, unpadded), as multiformats writes it;
        # by hand because multiformats takes ~2 ms per CID (runtime type checks), which
        # made writing record ids the bottleneck of storing announcements.
        return "b" + base64.b32encode(self.to_bytes()).decode("ascii").rstrip("=").lower()

    def __repr__(self) -> str:
        return f"Cid({self})"
