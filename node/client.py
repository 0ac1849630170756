"""Clients of the daemon's JSON-RPC socket: a blocking one and a trio one.

Both validate a call against its definition in ``node.rpc_api`` before sending
it (a bad param fails locally with the same ``RpcError`` the server would
send), send one request per line, and read the server's line-delimited
messages: responses go to their caller, ``progress`` notifications to the
caller's ``on_progress``, ``event`` notifications to a queue the caller reads.

``RpcClient`` (plain sockets) is what the CLI uses; ``open_trio_client`` is
for tools and tests running under trio. Methods not in ``node.rpc_api`` are
sent unvalidated (raw access, ``remixnet rpc``).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import trio

from node.daemon_process import rpc_socket_path
from node.datadir import DataDir
from node.jsonrpc import (
    INTERNAL_ERROR,
    JsonId,
    Params,
    RpcError,
    encode_line,
    error_from_json,
    request,
)
from node.rpc_api import EVENT_NOTIFICATION, METHODS_BY_NAME, PROGRESS_NOTIFICATION
from node.unix_socket import connect_blocking, reachable

MAX_LINE_BYTES: Final = 64 << 20  # a response can hold a base64 slice and many records
READ_SIZE: Final = 64 * 1024
BLOCKING_READ_SIZE: Final = 1 << 20  # one recv takes what the kernel holds (a slice is ~1.4 MB)
MAX_EARLY_RESPONSES: Final = 1024  # pipelined responses held while an earlier one is awaited

OnProgress = Callable[[int, int | None], None]


class DaemonGone(ConnectionError):
    """The daemon closed the connection (it stopped, or dropped a slow subscriber)."""


def prepare(method: str, params: Params | Mapping[str, Any], wants_progress: bool) -> Params:
    """Check ``params`` against the method's definition; ask for progress if wanted.

    Raises ``RpcError(INVALID_PARAMS)`` exactly as the server would.
    """
    prepared: Params = dict(params) if isinstance(params, Mapping) else params
    spec = METHODS_BY_NAME.get(method)
    if spec is None:
        return prepared
    if wants_progress and any(info.name == "progress" for info in spec.param_infos()):
        if prepared is None:
            prepared = {}
        if isinstance(prepared, dict):
            prepared = {**prepared, "progress": True}
    spec.parse_params(prepared)
    return prepared


def result_of(message: Mapping[str, Any]) -> Any:
    """The result of a response object; raises its error as ``RpcError``."""
    if "error" in message:
        raise error_from_json(message["error"])
    if "result" not in message:
        raise RpcError(INTERNAL_ERROR, "response without result or error", dict(message))
    return message["result"]


def _decode_line(line: bytes | bytearray) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as error:
        raise DaemonGone(f"the daemon sent something that is not JSON ({error})") from None
    if not isinstance(message, dict):
        raise DaemonGone("the daemon sent a batch response to a single request")
    return message


def _progress_of(message: Mapping[str, Any]) -> tuple[JsonId, int, int | None] | None:
    """(request id, done, total) of a ``progress`` notification, else None."""
    if message.get("method") != PROGRESS_NOTIFICATION or "id" in message:
        return None
    params = message.get("params")
    if not isinstance(params, dict):
        return None
    return params.get("request"), int(params.get("done", 0)), params.get("total")


def _is_event(message: Mapping[str, Any]) -> bool:
    return message.get("method") == EVENT_NOTIFICATION and "id" not in message


class RpcClient:
    """A blocking client on one connection. Not thread-safe: one call at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._buffer = bytearray()
        self._scanned = 0  # bytes of ``_buffer`` known to hold no newline
        self._ids = itertools.count(1)
        self._early: dict[int, dict[str, Any]] = {}  # pipelined responses read before asked for
        self.events: collections.deque[dict[str, Any]] = collections.deque()

    @classmethod
    def connect(cls, path: Path) -> RpcClient:
        """Connect to the Unix socket at ``path``. Raises ``OSError`` when nobody listens."""
        return cls(connect_blocking(path))

    @classmethod
    def connect_tcp(cls, host: str, port: int, token: str) -> RpcClient:
        """Connect to the loopback TCP listener and authenticate with the bearer token."""
        client = cls(socket.create_connection((host, port)))
        try:
            client.call("rpc.authenticate", {"token": token})
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def call(
        self,
        method: str,
        params: Params | Mapping[str, Any] = None,
        *,
        on_progress: OnProgress | None = None,
    ) -> Any:
        """Call ``method`` and return its result. Raises ``RpcError`` or ``DaemonGone``.

        Events arriving meanwhile are kept in ``events``.
        """
        request_id = self._send(method, params, on_progress is not None)
        return self._result_of(request_id, on_progress)

    def pipeline(
        self, method: str, params: Iterable[Params | Mapping[str, Any]], *, window: int
    ) -> Generator[Any, None, None]:
        """The results of calling ``method`` with each of ``params``, in order.

        Up to ``window`` requests are in flight at once, so the daemon works on
        the next ones while this client reads a result (the server runs a
        connection's requests concurrently, up to its ``requests_per_client``).
        ``params`` may be endless: requests are sent as results are taken.
        When the caller stops early (or a call fails), the responses still in
        flight are read and dropped, so the connection stays usable.
        """
        pending: collections.deque[int] = collections.deque()
        remaining = iter(params)
        try:
            while True:
                for following in itertools.islice(remaining, max(1, window) - len(pending)):
                    pending.append(self._send(method, following, False))
                if not pending:
                    return
                yield self._result_of(pending.popleft(), None)
        finally:
            with contextlib.suppress(ConnectionError):  # the connection is gone anyway
                while pending:
                    with contextlib.suppress(RpcError):
                        self._result_of(pending.popleft(), None)

    def _send(self, method: str, params: Params | Mapping[str, Any], wants_progress: bool) -> int:
        request_id = next(self._ids)
        prepared = prepare(method, params, wants_progress)
        self._socket.sendall(encode_line(request(method, prepared, request_id)))
        return request_id

    def _result_of(self, request_id: int, on_progress: OnProgress | None) -> Any:
        early = self._early.pop(request_id, None)
        if early is not None:
            return result_of(early)
        while True:
            message = self._receive()
            progress = _progress_of(message)
            if progress is not None:
                if on_progress is not None and progress[0] == request_id:
                    on_progress(progress[1], progress[2])
            elif _is_event(message):
                self.events.append(message["params"])
            elif message.get("id") == request_id:
                return result_of(message)
            elif isinstance(message.get("id"), int):  # a pipelined response, out of order
                if len(self._early) >= MAX_EARLY_RESPONSES:
                    raise DaemonGone("the daemon sent responses nobody asked for")
                self._early[message["id"]] = message
            elif "error" in message:  # an error about the connection itself (id null)
                raise error_from_json(message["error"])

    def notifications(self) -> Iterator[dict[str, Any]]:
        """Event notifications' params, as they come; ends with ``DaemonGone``."""
        while True:
            while self.events:
                yield self.events.popleft()
            message = self._receive()
            if _is_event(message):
                self.events.append(message["params"])

    def _receive(self) -> dict[str, Any]:
        while True:
            # Only the bytes not scanned yet: a long line (a content.cat slice)
            # arrives in many reads, and rescanning it each time is quadratic.
            end = self._buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = self._buffer[:end]
                del self._buffer[: end + 1]
                self._scanned = 0
                return _decode_line(line)
            self._scanned = len(self._buffer)
            if len(self._buffer) > MAX_LINE_BYTES:
                raise DaemonGone("the daemon sent a line longer than the client accepts")
            data = self._socket.recv(BLOCKING_READ_SIZE)
            if not data:
                raise DaemonGone("the daemon closed the connection")
            self._buffer += data


def connect_to_daemon(data_dir: DataDir) -> RpcClient | None:
    """A client of the daemon running on ``data_dir``, or None when none answers."""
    try:
        return RpcClient.connect(rpc_socket_path(data_dir))
    except (FileNotFoundError, ConnectionRefusedError):
        return None


class TrioRpcClient:
    """A trio client: concurrent calls on one connection, events on a channel."""

    def __init__(self, stream: trio.abc.Stream, event_buffer: int) -> None:
        self._stream = stream
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[trio.Event, list[Any], OnProgress | None]] = {}
        self._send_lock = trio.Lock()
        self._events_in, self.events = trio.open_memory_channel[dict[str, Any]](event_buffer)
        self._gone: DaemonGone | None = None

    async def call(
        self,
        method: str,
        params: Params | Mapping[str, Any] = None,
        *,
        on_progress: OnProgress | None = None,
    ) -> Any:
        """Call ``method`` and return its result. Raises ``RpcError`` or ``DaemonGone``."""
        if self._gone is not None:
            raise self._gone
        request_id = next(self._ids)
        prepared = prepare(method, params, on_progress is not None)
        done = trio.Event()
        slot: list[Any] = []
        self._waiting[request_id] = (done, slot, on_progress)
        try:
            async with self._send_lock:
                await self._stream.send_all(encode_line(request(method, prepared, request_id)))
            await done.wait()
        finally:
            self._waiting.pop(request_id, None)
        if not slot:
            raise self._gone or DaemonGone("the daemon closed the connection")
        return result_of(slot[0])

    async def read_loop(self) -> None:
        """Dispatch incoming messages until the daemon closes the connection."""
        buffer = bytearray()
        try:
            while True:
                data = await self._stream.receive_some(READ_SIZE)
                if not data:
                    break
                buffer += data
                while (end := buffer.find(b"\n")) >= 0:
                    message = _decode_line(bytes(buffer[:end]))
                    del buffer[: end + 1]
                    await self._dispatch(message)
                if len(buffer) > MAX_LINE_BYTES:
                    raise DaemonGone("the daemon sent a line longer than the client accepts")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._gone = DaemonGone("the daemon closed the connection")
            for done, _, _ in self._waiting.values():
                done.set()
            self._events_in.close()

    async def _dispatch(self, message: dict[str, Any]) -> None:
        progress = _progress_of(message)
        if progress is not None:
            entry = self._waiting.get(progress[0]) if isinstance(progress[0], int) else None
            if entry is not None and entry[2] is not None:
                entry[2](progress[1], progress[2])
        elif _is_event(message):
            await self._events_in.send(message["params"])
        elif isinstance(message.get("id"), int) and message["id"] in self._waiting:
            done, slot, _ = self._waiting[message["id"]]
            slot.append(message)
            done.set()


@asynccontextmanager
async def open_trio_client(path: Path, *, event_buffer: int = 1024) -> AsyncIterator[TrioRpcClient]:
    """A ``TrioRpcClient`` on the Unix socket at ``path``, closed on exit.

    Events wait in a channel of ``event_buffer``; a consumer that does not read
    them makes the client stop reading, and the daemon drops it.
    """
    with reachable(path) as name:
        stream = await trio.open_unix_socket(name)
    async with stream, trio.open_nursery() as nursery:
        client = TrioRpcClient(stream, event_buffer)
        nursery.start_soon(client.read_loop)
        try:
            yield client
        finally:
            nursery.cancel_scope.cancel()
