"""What a fetch tells its caller: progress while it runs, its result, why it failed.

``node.fetch`` produces these; the network service, replication, the RPC
methods and the CLI consume them, without needing the fetcher itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from protocol.cid import Cid
from protocol.errors import INTEGRITY_CODE, NOT_FOUND_CODE


@dataclass(frozen=True, slots=True)
class FetchProgress:
    """A snapshot for a progress bar; ``total_bytes`` is the file size once the root is known."""

    root: Cid
    blocks_fetched: int
    bytes_fetched: int
    blocks_present: int
    bytes_present: int
    total_bytes: int | None
    rate: float  # bytes per second fetched over the last seconds
    peers: int  # providers being fetched from now
    elapsed: float


@dataclass(frozen=True, slots=True)
class FetchResult:
    root: Cid
    blocks_fetched: int
    bytes_fetched: int
    blocks_present: int  # already stored: not requested
    bytes_present: int  # file bytes in leaves already stored
    duplicate_blocks: int  # received twice (end game); not stored twice
    total_bytes: int | None
    elapsed: float
    bytes_by_peer: dict[str, int]
    banned_peers: tuple[str, ...]  # providers that sent a block not matching its CID
    pinned: bool = False

    def to_json(self) -> dict[str, object]:
        """The result as JSON values (for the control socket and ``--json``)."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {
            **fields,
            "root": str(self.root),
            "elapsed": round(self.elapsed, 3),
            "bytes_by_peer": dict(self.bytes_by_peer),
            "banned_peers": list(self.banned_peers),
        }


class FetchError(Exception):
    """A fetch that cannot complete; ``reason``: no-providers, unavailable, invalid-dag,
    storage-full (the storage quota is reached even after garbage collection)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.rpc_code = INTEGRITY_CODE if reason == "invalid-dag" else NOT_FOUND_CODE
        super().__init__(f"{reason}: {detail}" if detail else reason)


ProgressCallback = Callable[[FetchProgress], None]
