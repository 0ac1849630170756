"""Errors of the node layer that a user or a peer can cause, and finding them in groups."""

from __future__ import annotations

from typing import TypeVar

from protocol.cid import Cid
from protocol.errors import BlockMismatch


class NotFound(Exception):
    """Something the caller named (a record, a block) is not in this store."""

    def __init__(self, what: str, name: object) -> None:
        self.what = what
        self.name = name
        super().__init__(f"unknown {what} {name}")


class MissingBlock(NotFound):
    """A block this store does not have (yet): fetch it from a peer."""

    def __init__(self, cid: Cid) -> None:
        super().__init__("block", cid)
        self.cid = cid


class CorruptBlock(BlockMismatch):
    """A block file on disk does not match its CID (disk rot or tampering)."""


_E = TypeVar("_E", bound=BaseException)


def first_leaf(group: BaseExceptionGroup[_E]) -> _E:
    """The first exception in a group, however nested (what ``except*`` hands over)."""
    while True:
        first = group.exceptions[0]
        if not isinstance(first, BaseExceptionGroup):
            return first
        group = first
