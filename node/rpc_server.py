"""The JSON-RPC 2.0 server: the Unix socket (and optionally loopback TCP) of a daemon.

``RpcServer.run`` binds ``rpc.sock`` (mode 0600) and serves every connection
in its own task; ``MethodRegistry`` maps method names to handlers, and only
methods defined in ``node.rpc_api.METHODS`` may be registered, so whatever is
served is documented. The connection-level methods (``events.*``,
``rpc.authenticate``) are served here.

Per connection: requests are read as a stream of JSON texts
(``node.jsonrpc``), each request runs in its own task (at most
``requests_per_client`` at once; beyond that the connection is simply not
read, which is back-pressure), batches run their elements concurrently and
answer with one array in request order, and every outgoing message goes
through one bounded queue drained by a writer task.

Invariants:
* the daemon never waits for a client: events are offered to the queue
  without blocking and a subscriber whose queue is full is disconnected;
  progress notifications are dropped when the queue is full (each one carries
  the cumulative count, so a later one supersedes it);
* a handler's exception becomes a documented error object
  (``rpc_error_for``), anything else is -32603 and logged;
* when ``run`` returns, every connection is closed and the socket file is gone.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from node.events import EventBus, Subscription, UnknownEvent
from node.jsonrpc import (
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    STANDARD_MESSAGES,
    FramingError,
    Incoming,
    InvalidRequest,
    Item,
    JsonId,
    JsonStreamSplitter,
    MessageTooLarge,
    RpcError,
    encode_line,
    failure,
    invalid_request_error,
    notification,
    parse_incoming,
    success,
)
from node.rpc_api import (
    EVENT_NAMES,
    EVENT_NOTIFICATION,
    EVENTS_SUBSCRIBE,
    EVENTS_UNSUBSCRIBE,
    METHODS_BY_NAME,
    PROGRESS_NOTIFICATION,
    RPC_AUTHENTICATE,
)
from node.rpc_params import AuthenticateParams, SubscribeParams, UnsubscribeParams
from node.rpc_schema import (
    MESSAGE_TOO_LARGE,
    NOT_FOUND,
    TOO_MANY_CONNECTIONS,
    UNAUTHORIZED,
    MethodSpec,
    invalid_params,
    rpc_error_for,
)
from node.unix_socket import bind_private, remove_if_ours

if TYPE_CHECKING:
    # mypy reads trio through trio-typing's stubs (a dependency of libp2p),
    # which name TaskStatus there rather than in trio.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

P = TypeVar("P")
Handler = Callable[[Any, "Call"], Awaitable[object]]
# A response (None: the request was a notification) and what to run once it is sent.
Answer = tuple[dict[str, object] | None, list[Callable[[], None]]]
# What the writer task takes: bytes to send, or a callback to run once all before it are sent.
Outgoing = bytes | Callable[[], None]
READ_SIZE = 64 * 1024
LINGER_SECONDS = 1.0  # how long a closing connection's late input is read and discarded
LINGER_BYTES = 4 << 20


class MethodRegistry:
    """Which handler serves which method. Services register theirs before the server starts."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[MethodSpec[Any], Handler]] = {}

    def register(
        self, spec: MethodSpec[P], handler: Callable[[P, Call], Awaitable[object]]
    ) -> None:
        """Serve ``spec`` with ``handler(params, call)``; its return value is the result.

        Raises ``ValueError`` when the method is not in ``node.rpc_api.METHODS``
        (undocumented) or is registered twice.
        """
        if METHODS_BY_NAME.get(spec.name) is not spec:
            raise ValueError(f"{spec.name} is not defined in node.rpc_api.METHODS")
        if spec.name in self._entries:
            raise ValueError(f"{spec.name} is registered twice")
        self._entries[spec.name] = (spec, handler)

    def get(self, name: str) -> tuple[MethodSpec[Any], Handler] | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_clients: int = 256
    max_message_bytes: int = 1 << 20
    requests_per_client: int = 16
    queue_size: int = 1024


class Call:
    """What a handler knows about the request it serves."""

    def __init__(self, connection: Connection, request_id: JsonId, is_notification: bool) -> None:
        self.connection = connection
        self.request_id = request_id
        self.is_notification = is_notification
        self.when_answered: list[Callable[[], None]] = []

    def after_response(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the response has been written to the socket.

        It runs exactly once: when the response has been handed to the
        kernel, or when the connection ends without that happening (the
        client left), so ``node.shutdown`` is never lost.
        """
        self.when_answered.append(callback)

    def send_progress(self, done: int, total: int | None) -> None:
        """Tell the caller how far the call is (a ``progress`` notification); never blocks."""
        if not self.is_notification:
            params = {"request": self.request_id, "done": done, "total": total}
            self.connection.offer(encode_line(notification(PROGRESS_NOTIFICATION, params)))


class RpcServer:
    """Serves ``registry`` on a Unix socket, and on loopback TCP if ``tcp`` is given."""

    def __init__(
        self,
        registry: MethodRegistry,
        events: EventBus,
        *,
        unix_path: Path,
        limits: ServerLimits,
        tcp: tuple[str, int] | None = None,
        token: str | None = None,
    ) -> None:
        if tcp is not None and not token:
            raise ValueError("a TCP listener needs a token")
        self.registry = registry
        self.events = events
        self.unix_path = unix_path
        self.limits = limits
        self._tcp = tcp
        self._token = token
        self.tcp_address: tuple[str, int] | None = None  # bound address, once running
        self._connections: set[Connection] = set()
        self._subscription_ids = itertools.count(1)
        self.counters = {
            "connections_total": 0,
            "connections_refused": 0,
            "requests_total": 0,
            "errors_total": 0,
            "progress_dropped": 0,
            "slow_subscribers_disconnected": 0,
        }
        registry.register(EVENTS_SUBSCRIBE, self._subscribe)
        registry.register(EVENTS_UNSUBSCRIBE, self._unsubscribe)
        registry.register(RPC_AUTHENTICATE, self._authenticate)

    def statistics(self) -> dict[str, object]:
        return {"connections": len(self._connections), **self.counters, **self.events.statistics()}

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report started, serve until cancelled; then close everything."""
        unix_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            identity = await trio.to_thread.run_sync(bind_private, unix_socket, self.unix_path)
        except BaseException:
            unix_socket.close()
            raise
        try:
            unix_socket.listen(128)
            listeners: list[tuple[trio.SocketListener, bool]] = [
                (trio.SocketListener(trio.socket.from_stdlib_socket(unix_socket)), True)
            ]
            try:
                if self._tcp is not None:
                    host, port = self._tcp
                    try:
                        tcp_listeners = await trio.open_tcp_listeners(port, host=host)
                    except OSError as error:
                        where = f"rpc.tcp {host}:{port}"
                        raise OSError(error.errno, error.strerror, where) from error
                    for listener in tcp_listeners:
                        listeners.append((listener, False))
                        bound = listener.socket.getsockname()
                        self.tcp_address = (bound[0], bound[1])
                async with trio.open_nursery() as nursery:
                    for listener, trusted in listeners:
                        nursery.start_soon(self._accept_loop, listener, trusted, nursery)
                    task_status.started()
            finally:
                with trio.CancelScope(shield=True):
                    for listener, _ in listeners:
                        await listener.aclose()
        finally:
            unix_socket.close()
            remove_if_ours(self.unix_path, identity)

    async def _accept_loop(
        self, listener: trio.SocketListener, trusted: bool, nursery: trio.Nursery
    ) -> None:
        while True:
            stream = await listener.accept()
            self.counters["connections_total"] += 1
            if len(self._connections) >= self.limits.max_clients:
                self.counters["connections_refused"] += 1
                nursery.start_soon(self._refuse, stream)
                continue
            connection = Connection(self, stream, authenticated=trusted)
            self._connections.add(connection)
            nursery.start_soon(self._serve, connection)

    async def _serve(self, connection: Connection) -> None:
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)

    async def _refuse(self, stream: trio.SocketStream) -> None:
        limit = self.limits.max_clients
        error = RpcError(TOO_MANY_CONNECTIONS, "too many connections", {"limit": limit})
        with trio.move_on_after(1):
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(encode_line(failure(None, error)))
        await stream.aclose()

    # -- requests ------------------------------------------------------------

    async def execute(self, connection: Connection, item: Item) -> Answer:
        """Run one request: its response object (None for a notification) and callbacks."""
        if isinstance(item, InvalidRequest):
            self.counters["errors_total"] += 1
            return failure(item.id, invalid_request_error(item)), []
        self.counters["requests_total"] += 1
        call = Call(connection, item.id, item.is_notification)
        try:
            result = await self._invoke(connection, item.method, item.params, call)
        except Exception as exception:
            self.counters["errors_total"] += 1
            error = rpc_error_for(exception)
            if error is None:
                log.exception("internal error in %s", item.method)
                message = STANDARD_MESSAGES[INTERNAL_ERROR]
                error = RpcError(INTERNAL_ERROR, message, type(exception).__name__)
            response = None if item.is_notification else failure(item.id, error)
            return response, []
        response = None if item.is_notification else success(item.id, result)
        return response, call.when_answered

    async def _invoke(self, connection: Connection, method: str, params: Any, call: Call) -> object:
        if not connection.authenticated and method != RPC_AUTHENTICATE.name:
            connection.close_soon()
            raise RpcError(UNAUTHORIZED, "authenticate first (rpc.authenticate)")
        entry = self.registry.get(method)
        if entry is None:
            raise RpcError(METHOD_NOT_FOUND, STANDARD_MESSAGES[METHOD_NOT_FOUND], method)
        spec, handler = entry
        return await handler(spec.parse_params(params), call)

    async def _authenticate(self, params: AuthenticateParams, call: Call) -> dict[str, object]:
        connection = call.connection
        if not connection.authenticated:
            assert self._token is not None
            if not hmac.compare_digest(params.token.encode(), self._token.encode()):
                connection.close_soon()
                raise RpcError(UNAUTHORIZED, "wrong token")
            connection.authenticated = True
        return {"authenticated": True}

    async def _subscribe(self, params: SubscribeParams, call: Call) -> dict[str, object]:
        names = frozenset(params.events) if params.events is not None else EVENT_NAMES
        subscription_id = next(self._subscription_ids)
        try:
            subscription = self.events.subscribe(names, call.connection.event_sink(subscription_id))
        except UnknownEvent as error:
            raise invalid_params("events", str(error)) from None
        call.connection.subscriptions[subscription_id] = subscription
        return {"subscription": subscription_id, "events": sorted(names)}

    async def _unsubscribe(self, params: UnsubscribeParams, call: Call) -> dict[str, object]:
        subscription = call.connection.subscriptions.pop(params.subscription, None)
        if subscription is None:
            raise RpcError(
                NOT_FOUND,
                f"unknown subscription {params.subscription}",
                {"what": "subscription", "name": str(params.subscription)},
            )
        subscription.close()
        return {"unsubscribed": True}


class Connection:
    """One client: a reader, a writer and the tasks of its requests."""

    def __init__(self, server: RpcServer, stream: trio.SocketStream, *, authenticated: bool):
        self.server = server
        self.stream = stream
        self.authenticated = authenticated
        self.subscriptions: dict[int, Subscription] = {}
        limits = server.limits
        self._send, self._outgoing = trio.open_memory_channel[Outgoing](limits.queue_size)
        self._slots = trio.Semaphore(limits.requests_per_client)
        self._scope = trio.CancelScope()  # the whole connection
        self._callbacks: list[Callable[[], None]] = []  # after_response ones not yet run
        self._read_scope = trio.CancelScope()  # reading only: close_soon() cancels it

    def close_soon(self) -> None:
        """Stop reading; answer what is in progress, then close."""
        self._read_scope.cancel()

    def disconnect(self) -> None:
        """Close now, dropping whatever is queued."""
        self._scope.cancel()

    def offer(self, line: bytes) -> None:
        """Queue a lossy notification (progress) without blocking; dropped when full."""
        try:
            self._send.send_nowait(line)
        except trio.WouldBlock:
            self.server.counters["progress_dropped"] += 1
        except trio.ClosedResourceError:
            pass

    def event_sink(self, subscription_id: int) -> Callable[[str, Mapping[str, object]], None]:
        def deliver(event: str, data: Mapping[str, object]) -> None:
            params = {"subscription": subscription_id, "event": event, "data": data}
            try:
                self._send.send_nowait(encode_line(notification(EVENT_NOTIFICATION, params)))
            except trio.WouldBlock:
                log.warning("disconnecting a subscriber that does not read its events")
                self.server.counters["slow_subscribers_disconnected"] += 1
                self._close_subscriptions()
                self.disconnect()
            except trio.ClosedResourceError:
                self._close_subscriptions()

        return deliver

    def _close_subscriptions(self) -> None:
        for subscription in self.subscriptions.values():
            subscription.close()
        self.subscriptions.clear()

    async def serve(self) -> None:
        answered = False
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    try:
                        async with trio.open_nursery() as requests:
                            framing_error = await self._read_loop(requests)
                            if framing_error is not None:
                                requests.cancel_scope.cancel()
                        if framing_error is not None:
                            await self._send.send(encode_line(failure(None, framing_error)))
                    finally:
                        self._send.close()  # the writer drains the queue, then returns
                answered = True
            if answered:
                await self._linger()
        finally:
            self._close_subscriptions()
            for callback in self._callbacks:
                callback()
            self._callbacks.clear()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _linger(self) -> None:
        """Close gracefully: EOF first, then discard (boundedly) what the client still sends.

        Closing a socket with unread input resets it, and the client could
        lose our last response (say, the error about its oversized request).
        """
        with trio.move_on_after(LINGER_SECONDS):
            try:
                await self.stream.send_eof()
                discarded = 0
                while discarded < LINGER_BYTES:
                    data = await self.stream.receive_some(READ_SIZE)
                    if not data:
                        return
                    discarded += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _write_loop(self) -> None:
        try:
            async for item in self._outgoing:
                if isinstance(item, bytes):
                    await self.stream.send_all(item)
                elif item in self._callbacks:
                    self._callbacks.remove(item)
                    item()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.disconnect()  # the client is gone: nobody to answer

    async def _read_loop(self, requests: trio.Nursery) -> RpcError | None:
        """Read and dispatch until EOF (None) or a framing error (returned)."""
        splitter = JsonStreamSplitter(max_message_bytes=self.server.limits.max_message_bytes)
        with self._read_scope:
            try:
                while True:
                    data = await self.stream.receive_some(READ_SIZE)
                    if not data:
                        last = splitter.end_of_stream()
                        if last is not None:
                            await self._dispatch(last, requests)
                        return None
                    splitter.feed(data)
                    while (text := splitter.next_text()) is not None:
                        await self._dispatch(text, requests)
            except MessageTooLarge as error:
                return RpcError(MESSAGE_TOO_LARGE, str(error), {"limit": error.limit})
            except FramingError as error:
                return RpcError(error.code, STANDARD_MESSAGES[error.code], str(error))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
        return None

    async def _dispatch(self, text: bytes, requests: trio.Nursery) -> None:
        try:
            incoming = parse_incoming(text)
        except RpcError as error:
            self.server.counters["errors_total"] += 1
            await self._send.send(encode_line(failure(None, error)))
            return
        await self._slots.acquire()
        requests.start_soon(self._answer, incoming)

    async def _answer(self, incoming: Incoming) -> None:
        try:
            callbacks: list[Callable[[], None]] = []
            if not incoming.is_batch:
                response, callbacks = await self.server.execute(self, incoming.items[0])
                self._callbacks += callbacks
                if response is not None:
                    await self._send.send(encode_line(response))
            else:
                answers: list[Answer] = [(None, [])] * len(incoming.items)
                limiter = trio.CapacityLimiter(self.server.limits.requests_per_client)

                async def run(index: int, item: Item) -> None:
                    async with limiter:
                        answers[index] = await self.server.execute(self, item)

                async with trio.open_nursery() as batch:
                    for index, item in enumerate(incoming.items):
                        batch.start_soon(run, index, item)
                answered = [response for response, _ in answers if response is not None]
                callbacks = [callback for _, later in answers for callback in later]
                self._callbacks += callbacks
                if answered:  # a batch of notifications gets no response at all
                    await self._send.send(encode_line(answered))
            for callback in callbacks:
                await self._send.send(callback)  # runs once what is before it is sent
        except trio.ClosedResourceError:
            pass  # the connection is closing; nobody to answer
        finally:
            self._slots.release()
