"""The storage methods (``pins.add``, ``pins.rm``, ``store.gc``): params, specs, error code.

Served by ``node.storage_service``; kept apart from ``node.rpc_api`` (which
lists them in ``METHODS`` and the error in ``ERRORS``) only to keep that
module small. ``pins.list`` is defined there with the other store methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from node.rpc_schema import (
    NOT_FOUND,
    Boolean,
    CidText,
    ErrorSpec,
    Example,
    MethodSpec,
    ResultField,
    Text,
    param,
)
from protocol.cid import Cid

STORE_BUSY: Final = -32021
MAX_REASON_CHARS: Final = 200
MAX_PINS: Final = 100_000  # the most `pins.list` returns at once
_CONTENT = "bafybeia2yzhd3g5ux5mvxvtvd3hsh3bavwb6tjagtzj6ni2mfduc7s6rk4"
_RECORD = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"

STORE_BUSY_ERROR: Final = ErrorSpec(
    STORE_BUSY,
    "store busy",
    "Garbage collection could not have the store to itself in time: blocks are being"
    " written, or another process has the store open. Try again later.",
    "null",
)


@dataclass(frozen=True, slots=True)
class PinAddParams:
    cid: Cid = field(
        metadata=param(CidText(), "A content CID, or a record id (meaning its content).")
    )
    reason: str = field(
        default="pinned by hand",
        metadata=param(Text(MAX_REASON_CHARS, non_empty=True), "Why it is kept (shown by ls)."),
    )


@dataclass(frozen=True, slots=True)
class PinRmParams:
    cid: Cid = field(
        metadata=param(CidText(), "A pinned content CID, or a record id whose content is pinned.")
    )


@dataclass(frozen=True, slots=True)
class GcParams:
    progress: bool = field(
        default=False,
        metadata=param(Boolean(), "Send `progress` notifications (pack bytes dealt with)."),
    )


_PIN_RESULT = (
    ResultField("cid", "CID", "The content pinned or unpinned."),
    ResultField("record", "CID | null", "The record whose content it is, when one was named."),
    ResultField("changed", "boolean", "False when nothing changed (it was pinned already)."),
)

PINS_ADD: Final = MethodSpec(
    name="pins.add",
    params=PinAddParams,
    summary="Keep content (its whole DAG) from garbage collection.",
    result=_PIN_RESULT,
    example=Example(
        {"cid": _RECORD, "reason": "favourite"},
        {"cid": _CONTENT, "record": _RECORD, "changed": True},
    ),
    errors=(NOT_FOUND,),
    notes="Content not held fully here is not pinned: the error says how many blocks are"
    " missing (`remixnet get` fetches it, pinned).",
)

PINS_RM: Final = MethodSpec(
    name="pins.rm",
    params=PinRmParams,
    summary="Stop keeping content; the next garbage collection may delete it.",
    result=_PIN_RESULT,
    example=Example({"cid": _CONTENT}, {"cid": _CONTENT, "record": None, "changed": True}),
    errors=(NOT_FOUND,),
)

STORE_GC: Final = MethodSpec(
    name="store.gc",
    params=GcParams,
    summary="Delete the blocks no pin or running fetch needs and reclaim their disk space.",
    result=(
        ResultField("blocks_before", "integer", "Blocks indexed before."),
        ResultField("blocks_deleted", "integer", "Blocks deleted."),
        ResultField("bytes_deleted", "integer", "Bytes of the blocks deleted."),
        ResultField("blocks_kept", "integer", "Blocks left."),
        ResultField("pinned_roots", "integer", "Pins followed."),
        ResultField("pinned_missing", "integer", "Blocks under pins that are not held."),
        ResultField("lease_roots", "integer", "Running (or just finished) fetches respected."),
        ResultField("packs_compacted", "integer", "Packs rewritten without their dead bytes."),
        ResultField("bytes_reclaimed", "integer", "Pack bytes returned to the disk."),
        ResultField("used_before", "integer", "Pack bytes before."),
        ResultField("used_after", "integer", "Pack bytes after."),
        ResultField("elapsed", "number", "Seconds taken."),
    ),
    example=Example(
        {},
        {
            "blocks_before": 12,
            "blocks_deleted": 5,
            "bytes_deleted": 1310720,
            "blocks_kept": 7,
            "pinned_roots": 2,
            "pinned_missing": 0,
            "lease_roots": 0,
            "packs_compacted": 1,
            "bytes_reclaimed": 1310925,
            "used_before": 3146000,
            "used_after": 1835075,
            "elapsed": 0.041,
        },
    ),
    errors=(STORE_BUSY,),
    long_running=True,
    notes="Blocks stored in the last `[storage] gc_grace` seconds are kept even when"
    " unpinned. The daemon also runs it by itself past `[storage] gc_high_water` of the quota.",
)

STORAGE_METHODS: Final[tuple[MethodSpec[Any], ...]] = (PINS_ADD, PINS_RM, STORE_GC)
