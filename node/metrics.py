"""The metrics endpoint: the node's statistics in the Prometheus text format.

``metrics_service(node)`` serves ``GET /metrics`` over plain HTTP/1.1 on
``[metrics] listen`` ("127.0.0.1:PORT"; off when empty, the default). The
body is ``render_metrics(statistics)``: the daemon's ``node.status``
statistics, every number flattened into a ``remixnet_…`` sample, plus the
figures an operator graphs first (uptime, peers, bytes in and out, storage,
replication queue) under stable names.

Invariants: it listens on 127.0.0.1 only (the config refuses anything else);
a client gets at most ``MAX_REQUEST_BYTES`` read and ``REQUEST_SECONDS`` to
send its request; at most ``MAX_CLIENTS`` are served at once, others are
closed at once; one response per connection (``Connection: close``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from node.daemon import Node

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 8192
REQUEST_SECONDS: Final = 5.0
MAX_CLIENTS: Final = 16
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_NAME_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_]")

Collect = Callable[[], Awaitable[Mapping[str, object]]]

# Stable names for the figures operators look at first: (metric, path in node.status, help).
HEADLINE: Final = (
    ("remixnet_uptime_seconds", ("uptime_s",), "Seconds since the daemon started."),
    (
        "remixnet_peers_connected",
        ("services", "network", "host", "connected_peers"),
        "Peers connected now.",
    ),
    (
        "remixnet_bytes_in_total",
        ("traffic", "bytes_in"),
        "Bytes received from peers: blocks and records.",
    ),
    (
        "remixnet_bytes_out_total",
        ("traffic", "bytes_out"),
        "Bytes sent to peers: blocks and records.",
    ),
    (
        "remixnet_replication_queued",
        ("services", "replication", "queued"),
        "Records waiting to be replicated.",
    ),
    (
        "remixnet_replication_failed",
        ("services", "replication", "failed"),
        "Records replication gave up on.",
    ),
)


def _lookup(statistics: Mapping[str, object], path: tuple[str, ...]) -> object:
    value: object = statistics
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _format(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def flatten(prefix: str, value: object, out: dict[str, float]) -> None:
    """Every number under ``value`` as ``prefix_key_subkey`` (lists and strings are skipped)."""
    number = _number(value)
    if number is not None:
        out[_NAME_UNSAFE.sub("_", prefix)] = number
    elif isinstance(value, Mapping):
        for key, item in value.items():
            flatten(f"{prefix}_{key}", item, out)


def render_metrics(statistics: Mapping[str, object]) -> str:
    """The Prometheus text exposition of ``statistics`` (a ``node.status`` result)."""
    lines: list[str] = []
    seen: set[str] = set()
    for name, path, help_text in HEADLINE:
        number = _number(_lookup(statistics, path))
        if number is None:
            continue
        kind = "counter" if name.endswith("_total") else "gauge"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines.append(f"{name} {_format(number)}")
        seen.add(name)
    flat: dict[str, float] = {}
    flatten("remixnet_store", statistics.get("store"), flat)
    flatten("remixnet_storage", statistics.get("storage"), flat)
    flatten("remixnet_rpc", statistics.get("rpc"), flat)
    flatten("remixnet", statistics.get("services"), flat)
    for name in sorted(flat):
        if name in seen:
            continue
        lines += [f"# TYPE {name} untyped", f"{name} {_format(flat[name])}"]
    return "\n".join(lines) + "\n"


def metrics_service(node: Node) -> MetricsServer:
    """The ``ServiceFactory`` of the endpoint; it collects what ``node.status`` returns."""

    async def collect() -> Mapping[str, object]:
        assert node.status is not None, "the daemon sets node.status before services run"
        return await node.status()

    return MetricsServer(node.config.metrics.listen, collect)


class MetricsServer:
    """Serves ``GET /metrics`` on 127.0.0.1 (nothing when ``listen`` is empty)."""

    name = "metrics"

    def __init__(self, listen: str, collect: Collect) -> None:
        self.listen = listen
        self.collect = collect
        self.port: int | None = None
        self._clients = 0
        self._stats = {"requests": 0, "refused": 0, "bad_requests": 0}

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if not self.listen:
            task_status.started()
            await trio.sleep_forever()
        host, _, port = self.listen.rpartition(":")
        listeners = await trio.open_tcp_listeners(int(port), host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._serve, listeners)
            task_status.started()
            logger.info("metrics on http://%s:%d/metrics", host, self.port)
            await trio.sleep_forever()

    def node_info(self) -> Mapping[str, object]:
        return {"metrics": f"127.0.0.1:{self.port}" if self.port is not None else None}

    async def _serve(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self._clients >= MAX_CLIENTS:
                self._stats["refused"] += 1
                return
            self._clients += 1
            try:
                await self._answer(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                pass
            finally:
                self._clients -= 1

    async def _answer(self, stream: trio.SocketStream) -> None:
        request = bytearray()
        with trio.fail_after(REQUEST_SECONDS):
            while b"\r\n\r\n" not in request and b"\n\n" not in request:
                if len(request) > MAX_REQUEST_BYTES:
                    self._stats["bad_requests"] += 1
                    await self._respond(stream, 431, "request too large\n")
                    return
                data = await stream.receive_some(4096)
                if not data:
                    return
                request += data
        first = bytes(request).split(b"\n", 1)[0].decode("latin-1").strip().split()
        if len(first) != 3 or not first[2].startswith("HTTP/1."):
            self._stats["bad_requests"] += 1
            await self._respond(stream, 400, "bad request\n")
            return
        method, target = first[0], first[1].split("?", 1)[0]
        if target != "/metrics":
            await self._respond(stream, 404, "not found: try /metrics\n")
        elif method not in ("GET", "HEAD"):
            await self._respond(stream, 405, "method not allowed\n", allow="GET, HEAD")
        else:
            self._stats["requests"] += 1
            body = render_metrics(await self.collect())
            await self._respond(stream, 200, body, head=method == "HEAD")

    async def _respond(
        self,
        stream: trio.SocketStream,
        code: int,
        body: str,
        *,
        head: bool = False,
        allow: str = "",
    ) -> None:
        reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        payload = body.encode()
        headers = [
            f"HTTP/1.1 {code} {reasons.get(code, 'Request Header Fields Too Large')}",
            f"Content-Type: {CONTENT_TYPE}",
            f"Content-Length: {len(payload)}",
            "Connection: close",
        ]
        if allow:
            headers.append(f"Allow: {allow}")
        data = ("\r\n".join(headers) + "\r\n\r\n").encode() + (b"" if head else payload)
        with trio.fail_after(REQUEST_SECONDS):
            await stream.send_all(data)

    def statistics(self) -> dict[str, object]:
        return {"listen": self.listen or "off", "port": self.port, **self._stats}
