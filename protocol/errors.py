"""Error families of the protocol layer, after h11.

``RemoteProtocolError``: bytes that came from somebody else (a peer, a file, a
client) are bad. Drop them and, for a peer, penalise it.
``LocalProtocolError``: our own code misused the API; a bug.

Each error carries a short machine-readable ``reason`` (kebab-case, stable:
tests, logs and the JSON-RPC ``data`` field use it) and a JSON-RPC error code.
"""

from __future__ import annotations

# JSON-RPC application error codes (documented in docs/rpc.md once it lands).
INVALID_INPUT_CODE = -32001
NOT_FOUND_CODE = -32002
INTEGRITY_CODE = -32003


class ProtocolError(Exception):
    """Base class. ``reason`` is a stable kebab-case word; ``str()`` is for humans."""

    rpc_code: int = INVALID_INPUT_CODE

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class RemoteProtocolError(ProtocolError):
    """Input from outside (peer, file, client) is invalid."""


class LocalProtocolError(ProtocolError):
    """Our own caller misused the API."""


class InvalidCid(RemoteProtocolError):
    """A CID (binary or text) that cannot be parsed or is not supported."""


class BlockMismatch(RemoteProtocolError):
    """A block whose bytes do not hash to its CID."""

    rpc_code = INTEGRITY_CODE
