"""How control-interface methods, events and errors are described (the machinery).

``node.rpc_api`` uses these pieces to define every JSON-RPC method once: a
frozen dataclass of params whose fields carry a ``Kind`` (the JSON type, its
bounds, how it converts to a Python value) and a line of documentation, plus
a ``MethodSpec`` with the result's fields, the application errors and an
example. The server validates requests with ``MethodSpec.parse_params``, the
clients validate calls with the same function before sending them, and
``node.rpc_docs`` renders ``docs/rpc.md`` from the same objects.

Invariants: ``parse_params`` returns a fully valid params object or raises
``RpcError(INVALID_PARAMS)`` naming the param; ``rpc_error_for`` maps every
exception a user can cause to a documented application code.
"""

from __future__ import annotations

import errno as errno_names
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Final, Generic, Protocol, TypeVar

from node.datadir import DataDirError
from node.jsonrpc import INVALID_PARAMS, Params, RpcError
from node.store import NotFound
from protocol.cid import Cid
from protocol.errors import INTEGRITY_CODE, INVALID_INPUT_CODE, NOT_FOUND_CODE, ProtocolError
from protocol.identity import public_key_of
from protocol.records import Parent

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = TypeVar("P")

# Application error codes (the JSON-RPC spec leaves -32000..-32099 to servers).
INVALID_INPUT: Final = INVALID_INPUT_CODE  # -32001
NOT_FOUND: Final = NOT_FOUND_CODE  # -32002
INTEGRITY: Final = INTEGRITY_CODE  # -32003
DATA_DIR: Final = -32004
FILE_ERROR: Final = -32005
MESSAGE_TOO_LARGE: Final = -32006
TOO_MANY_CONNECTIONS: Final = -32007
UNAUTHORIZED: Final = -32008
NETWORK_ERROR: Final = -32020  # a peer cannot be dialled, content cannot be fetched


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One error code as documented: when it happens and what ``data`` holds."""

    code: int
    name: str
    meaning: str
    data: str


class ParamError(ValueError):
    """A value does not fit a ``Kind``; ``str()`` says why, for the caller."""


class Kind(Protocol[T_co]):
    """A JSON type with bounds, converting a JSON value to a Python value."""

    @property
    def name(self) -> str:
        """How docs/rpc.md writes the type."""
        ...

    def convert(self, value: object) -> T_co:
        """The Python value; raises ``ParamError``."""
        ...


@dataclass(frozen=True, slots=True)
class Text:
    max_chars: int
    non_empty: bool = False

    @property
    def name(self) -> str:
        return "string"

    def convert(self, value: object) -> str:
        if not isinstance(value, str):
            raise ParamError("must be a string")
        if self.non_empty and not value:
            raise ParamError("must not be empty")
        if len(value) > self.max_chars:
            raise ParamError(f"longer than {self.max_chars} characters")
        return value


@dataclass(frozen=True, slots=True)
class Integer:
    low: int
    high: int

    @property
    def name(self) -> str:
        return f"integer {self.low}..{self.high}"

    def convert(self, value: object) -> int:
        # JSON has one number type: 3.0 is the integer 3, 3.5 is not an integer.
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ParamError("must be an integer")
        if not self.low <= value <= self.high:
            raise ParamError(f"must be between {self.low} and {self.high}")
        return value


@dataclass(frozen=True, slots=True)
class Boolean:
    @property
    def name(self) -> str:
        return "boolean"

    def convert(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise ParamError("must be true or false")
        return value


@dataclass(frozen=True, slots=True)
class CidText:
    @property
    def name(self) -> str:
        return "CID"

    def convert(self, value: object) -> Cid:
        if not isinstance(value, str):
            raise ParamError("must be a CID string")
        try:
            return Cid.parse(value)
        except ProtocolError as error:
            raise ParamError(f"not a valid CID ({error.reason})") from None


@dataclass(frozen=True, slots=True)
class AuthorText:
    """A PeerID, or ``"me"`` for this node's own author id."""

    @property
    def name(self) -> str:
        return 'PeerID or "me"'

    def convert(self, value: object) -> str:
        if value == "me":
            return "me"
        if not isinstance(value, str):
            raise ParamError("must be a PeerID string")
        try:
            public_key_of(value)
        except ProtocolError as error:
            raise ParamError(f"not a valid author id ({error.reason})") from None
        return value


@dataclass(frozen=True, slots=True)
class AbsolutePath:
    """A path on the daemon's machine; relative paths would depend on its cwd."""

    @property
    def name(self) -> str:
        return "absolute path"

    def convert(self, value: object) -> Path:
        if not isinstance(value, str) or not value or "\x00" in value:
            raise ParamError("must be a path string")
        path = Path(value)
        if not path.is_absolute():
            raise ParamError("must be an absolute path (the daemon has its own working directory)")
        return path


@dataclass(frozen=True, slots=True)
class Choice:
    values: tuple[str, ...]

    @property
    def name(self) -> str:
        return " | ".join(f'"{value}"' for value in self.values)

    def convert(self, value: object) -> str:
        if value not in self.values:
            raise ParamError(f"must be one of {', '.join(self.values)}")
        assert isinstance(value, str)
        return value


@dataclass(frozen=True, slots=True)
class Nullable(Generic[T]):
    kind: Kind[T]

    @property
    def name(self) -> str:
        return f"{self.kind.name} or null"

    def convert(self, value: object) -> T | None:
        return None if value is None else self.kind.convert(value)


@dataclass(frozen=True, slots=True)
class ListOf(Generic[T]):
    item: Kind[T]
    max_items: int

    @property
    def name(self) -> str:
        return f"[{self.item.name}] (at most {self.max_items})"

    def convert(self, value: object) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise ParamError("must be an array")
        if len(value) > self.max_items:
            raise ParamError(f"more than {self.max_items} items")
        items = []
        for index, item in enumerate(value):
            try:
                items.append(self.item.convert(item))
            except ParamError as error:
                raise ParamError(f"item {index}: {error}") from None
        return tuple(items)


@dataclass(frozen=True, slots=True)
class ParentRef:
    """``{"id": CID, "weight": integer or null}``: a work being remixed."""

    @property
    def name(self) -> str:
        return '{"id": CID, "weight": integer or null}'

    def convert(self, value: object) -> Parent:
        if not isinstance(value, dict) or "id" not in value or value.keys() - {"id", "weight"}:
            raise ParamError('must be {"id": CID, "weight": integer or null}')
        record_id = CidText().convert(value["id"])
        weight = Nullable(Integer(1, 1_000_000)).convert(value.get("weight"))
        try:
            return Parent(record_id, weight)
        except ProtocolError as error:
            raise ParamError(str(error)) from None


def param(kind: Kind[Any], doc: str) -> dict[str, object]:
    """The metadata of a params dataclass field: ``field(metadata=param(kind, doc))``."""
    return {"kind": kind, "doc": doc}


@dataclass(frozen=True, slots=True)
class ParamInfo:
    name: str
    kind: Kind[Any]
    doc: str
    required: bool
    default: object


@dataclass(frozen=True, slots=True)
class ResultField:
    name: str
    type: str
    doc: str


@dataclass(frozen=True, slots=True)
class Example:
    params: Mapping[str, object]
    result: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class MethodSpec(Generic[P]):
    """Everything about one method except its implementation."""

    name: str
    params: type[P]
    summary: str
    result: tuple[ResultField, ...]
    example: Example
    errors: tuple[int, ...] = ()
    long_running: bool = False  # runs in a worker thread; may send progress notifications
    notes: str = ""

    def __post_init__(self) -> None:
        assert is_dataclass(self.params), self.name
        for info in self.param_infos():
            assert info.doc, f"{self.name}.{info.name} has no documentation"

    def param_infos(self) -> list[ParamInfo]:
        """The params in positional order."""
        infos = []
        for item in fields(self.params):  # type: ignore[arg-type]
            required = item.default is MISSING
            infos.append(
                ParamInfo(
                    item.name,
                    item.metadata["kind"],
                    item.metadata["doc"],
                    required,
                    None if required else item.default,
                )
            )
        return infos

    def parse_params(self, raw: Params) -> P:
        """Validate JSON params (by name or by position) into the params dataclass.

        Raises ``RpcError(INVALID_PARAMS)`` with ``data = {"param": name,
        "reason": ...}`` (``param`` is null for an unknown or extra param).
        """
        infos = self.param_infos()
        if raw is None:
            given: Mapping[str, object] = {}
        elif isinstance(raw, list):
            if len(raw) > len(infos):
                raise invalid_params(None, f"takes at most {len(infos)} positional params")
            given = {info.name: value for info, value in zip(infos, raw, strict=False)}
        else:
            unknown = sorted(raw.keys() - {info.name for info in infos})
            if unknown:
                raise invalid_params(None, f"unknown param {unknown[0]!r}")
            given = raw
        values: dict[str, object] = {}
        for info in infos:
            if info.name not in given:
                if info.required:
                    raise invalid_params(info.name, "missing")
                continue
            try:
                values[info.name] = info.kind.convert(given[info.name])
            except ParamError as error:
                raise invalid_params(info.name, str(error)) from None
        return self.params(**values)


def invalid_params(name: str | None, reason: str) -> RpcError:
    where = f"param {name!r}" if name else "params"
    return RpcError(INVALID_PARAMS, f"invalid {where}: {reason}", {"param": name, "reason": reason})


@dataclass(frozen=True, slots=True)
class EventSpec:
    """An event subscribers receive: its name, its ``data`` fields and an example."""

    name: str
    summary: str
    data: tuple[ResultField, ...]
    example: Mapping[str, object]


def rpc_error_for(error: Exception) -> RpcError | None:
    """The documented JSON-RPC error for an exception a caller can cause; None for a bug."""
    if isinstance(error, RpcError):
        return error
    if isinstance(error, BaseExceptionGroup):
        # A nursery in the handler wraps what its tasks raised: report the first
        # error a caller can understand (a full disk during a fetch, say).
        for leaf in error.exceptions:
            if isinstance(leaf, Exception) and (mapped := rpc_error_for(leaf)) is not None:
                return mapped
        return None
    if isinstance(error, ProtocolError):
        return RpcError(
            error.rpc_code, str(error), {"reason": error.reason, "error": type(error).__name__}
        )
    if isinstance(error, NotFound):
        return RpcError(NOT_FOUND, str(error), {"what": error.what, "name": str(error.name)})
    if isinstance(error, DataDirError):
        return RpcError(DATA_DIR, str(error))
    if isinstance(error, OSError):
        name = errno_names.errorcode.get(error.errno or 0)
        path = None if error.filename is None else str(error.filename)
        message = f"{path}: {error.strerror}" if path and error.strerror else str(error)
        return RpcError(FILE_ERROR, message, {"errno": name, "path": path})
    return None
