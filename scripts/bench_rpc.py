#!/usr/bin/env python3
"""JSON-RPC benchmark (issue 5): a real daemon, measured from outside, as a tool sees it.

A daemon runs in a subprocess on a temporary data directory whose store was
filled beforehand (``--records`` signed contributions, 10 000 by default, and
one ``--cat-mib`` MiB file). Clients are plain: ``node.client.RpcClient``
(blocking, one request in flight per connection, which is what the CLI and
most scripts do), each in its own process so that the client's interpreter
never competes with another client's. Every figure is set against a baseline
measured here and now:

* start: ``remixnet daemon`` launched until ``node.status`` answers on the
  socket (target <= 2 s), against the same interpreter merely importing the
  daemon's modules (``python -c "import node.daemon"``);
* ``node.status`` calls/s on one connection (target >= 5,000/s), and p50/p99
  latency with 8 connections calling at once (target p99 <= 5 ms), against
  the same client talking to a minimal JSON-RPC server (one Python thread per
  connection, ``json`` per line, constant result): the floor of any Python
  client/server pair on this machine;
* ``records.list`` (limit 100, the default) calls/s and p50/p99 on one
  connection with the store full, against the same query run in-process on
  the ``Store`` (SQLite + ``to_json`` + ``json.dumps``): what the handler
  must do anyway;
* what ``remixnet cat`` runs to read the file through the daemon (pipelined
  1 MiB ``content.cat`` slices), against what ``remixnet --offline cat``
  runs (reading the store directly), both in this process.

Usage: .venv/bin/python scripts/bench_rpc.py [--quick] [--records 10000] [--cat-mib 256]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from node.cli_daemon_backend import DaemonBackend  # noqa: E402
from node.client import RpcClient  # noqa: E402
from node.daemon_process import rpc_socket_path  # noqa: E402
from node.datadir import DataDir  # noqa: E402
from node.store import RecordFilter, Store  # noqa: E402
from node.transfer import add_file, write_stream  # noqa: E402
from protocol.cid import Cid  # noqa: E402
from protocol.identity import private_key_from_seed  # noqa: E402
from protocol.records import Contribution, Parent, SignedRecord, sign_record, to_json  # noqa: E402

START_TARGET_SECONDS = 2.0
STATUS_TARGET_PER_SECOND = 5_000.0
P99_TARGET_SECONDS = 0.005
CLIENTS = 8
WAIT_SECONDS = 60.0  # every wait for a process or a socket ends by then
ECHO_RESULT = b'"result":{"ok":true}}\n'


# -- the store ------------------------------------------------------------------------------


def signed_records(count: int, seed: int) -> list[SignedRecord]:
    """``count`` contributions by 8 authors, each remixing up to 2 of the 100 before it."""
    rng = random.Random(seed)
    keys = [private_key_from_seed(bytes([n + 1]) * 32) for n in range(8)]
    signed: list[SignedRecord] = []
    for index in range(count):
        window = signed[-100:]
        parents = rng.sample(window, min(len(window), rng.randint(0, 2)))
        body = Contribution(
            title=f"Work number {index}",
            content=Cid.for_raw(b"content %d" % index),
            size=1000 + index,
            media_type="audio/mpeg",
            license="CC-BY-SA-4.0",
            parents=tuple(Parent(p.id, None) for p in parents),
        )
        key = rng.choice(keys)
        signed.append(sign_record(body, private_key=key, created_ms=1_700_000_000_000 + index))
    return signed


def fill_store(data_dir: DataDir, records: int, cat_file: Path) -> str:
    """Put the records and the file into the store; return the file's CID."""
    with Store(data_dir) as store:
        signed = signed_records(records, seed=5)
        for start in range(0, len(signed), 1000):
            store.put_records(signed[start : start + 1000])
        return str(add_file(store, cat_file).root)


def write_random(path: Path, size: int) -> None:
    rng = random.Random(3)
    with path.open("wb") as out:
        for _ in range(size // (1 << 20)):
            out.write(rng.randbytes(1 << 20))


# -- processes ------------------------------------------------------------------------------


def environment(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["REMIXNET_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(REPO)
    return env


def wait_for_status(socket_path: Path, deadline: float) -> None:
    """Return once ``node.status`` answers on ``socket_path``; raise at ``deadline``."""
    while True:
        try:
            with RpcClient.connect(socket_path) as client:
                client.call("node.status")
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.002)


@dataclass
class DaemonRun:
    process: subprocess.Popen[bytes]
    socket_path: Path
    start_seconds: float

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=WAIT_SECONDS)


def start_daemon(data_dir: DataDir, log: Path) -> DaemonRun:
    socket_path = rpc_socket_path(data_dir)
    started = time.perf_counter()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "node", "daemon"],
            env=environment(data_dir.root),
            stdout=out,
            stderr=out,
        )
    try:
        wait_for_status(socket_path, time.monotonic() + WAIT_SECONDS)
    except BaseException:
        process.kill()
        process.wait(timeout=WAIT_SECONDS)
        raise RuntimeError(
            f"the daemon did not answer: {log.read_text(errors='replace')}"
        ) from None
    return DaemonRun(process, socket_path, time.perf_counter() - started)


def import_seconds() -> float:
    """The same interpreter importing the daemon's modules and exiting (best of 3)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import node.daemon, node.cli"],
            env=environment(REPO),
            check=True,
            timeout=WAIT_SECONDS,
        )
        times.append(time.perf_counter() - started)
    return min(times)


# -- the baseline server ------------------------------------------------------------------


def echo_server(path: Path, ready: Any) -> None:
    """A minimal JSON-RPC server: a thread per connection, ``json`` per line, constant result."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    ready.set()

    def serve(connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as lines:
            for line in lines:
                request = json.loads(line)
                answer_id = json.dumps(request["id"]).encode()
                connection.sendall(b'{"jsonrpc":"2.0","id":' + answer_id + b"," + ECHO_RESULT)

    while True:
        connection, _ = listener.accept()
        threading.Thread(target=serve, args=(connection,), daemon=True).start()


# -- clients --------------------------------------------------------------------------------


def client_run(
    path: Path,
    method: str,
    params: dict[str, Any] | None,
    calls: int,
    start: Any,
    results: Any,
) -> None:
    """Put the latencies (s) of ``calls`` sequential calls on one connection into ``results``."""
    with RpcClient.connect(path) as client:
        for _ in range(max(20, calls // 20)):  # warm up
            client.call(method, params)
        start.wait(WAIT_SECONDS)
        latencies = []
        for _ in range(calls):
            began = time.perf_counter()
            client.call(method, params)
            latencies.append(time.perf_counter() - began)
    results.put(latencies)


@dataclass(frozen=True)
class Load:
    per_second: float
    p50: float
    p99: float


def measure(
    path: Path, method: str, params: dict[str, Any] | None, *, clients: int, calls: int
) -> Load:
    """``clients`` processes each make ``calls`` calls at once; throughput and latency."""
    context = multiprocessing.get_context("fork")
    start = context.Barrier(clients + 1)
    queue = context.SimpleQueue()
    workers = [
        context.Process(target=client_run, args=(path, method, params, calls, start, queue))
        for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    try:
        start.wait(WAIT_SECONDS)
        began = time.perf_counter()
        results = [queue.get() for _ in workers]
        elapsed = time.perf_counter() - began
    finally:
        for worker in workers:
            worker.join(WAIT_SECONDS)
            if worker.is_alive():
                worker.kill()
    latencies = sorted(latency for result in results for latency in result)
    return Load(
        per_second=len(latencies) / elapsed,
        p50=latencies[len(latencies) // 2],
        p99=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    )


def in_process_list(data_dir: DataDir, calls: int) -> Load:
    """``records.list``'s work without RPC: the query, ``to_json`` and ``json.dumps``."""
    latencies = []
    with Store(data_dir) as store:
        for _ in range(calls):
            began = time.perf_counter()
            found = store.list_records(RecordFilter(limit=100))
            json.dumps({"records": [to_json(record) for record in found]})
            latencies.append(time.perf_counter() - began)
    latencies.sort()
    return Load(
        per_second=len(latencies) / sum(latencies),
        p50=latencies[len(latencies) // 2],
        p99=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    )


def cat_online_seconds(socket_path: Path, cid: str) -> float:
    """``remixnet cat``'s transfer through the daemon (``DaemonBackend.write_content``), best of 2.

    Run in this process, to /dev/null: the interpreter's start-up (see the
    first row) is left out, as it is of the baseline.
    """
    times = []
    for _ in range(2):
        with open(os.devnull, "wb") as sink, RpcClient.connect(socket_path) as client:
            started = time.perf_counter()
            DaemonBackend(client).write_content(Cid.parse(cid), sink)
            times.append(time.perf_counter() - started)
    return min(times)


def cat_offline_seconds(data_dir: DataDir, cid: str) -> float:
    """``remixnet --offline cat``'s transfer (``write_stream`` from the store), best of 2."""
    times = []
    for _ in range(2):
        with open(os.devnull, "wb") as sink, Store(data_dir) as store:
            started = time.perf_counter()
            write_stream(store, Cid.parse(cid), sink, lambda count: None)
            times.append(time.perf_counter() - started)
    return min(times)


# -- the table ------------------------------------------------------------------------------


def row(figure: str, ours: str, base: str, ratio: str, target: str, met: str) -> str:
    return f"| {figure} | {ours} | {base} | {ratio} | {target} | {met} |"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def yes(condition: bool) -> str:
    return "yes" if condition else "no"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument("--records", type=int, default=None, help="records in the store")
    parser.add_argument("--cat-mib", type=int, default=None, help="size of the file to cat")
    parser.add_argument("--calls", type=int, default=None, help="calls per measurement")
    arguments = parser.parse_args()
    records = arguments.records or (1_000 if arguments.quick else 10_000)
    cat_mib = arguments.cat_mib or (32 if arguments.quick else 256)
    calls = arguments.calls or (1_000 if arguments.quick else 10_000)

    with tempfile.TemporaryDirectory(prefix="bench-rpc-") as directory:
        work = Path(directory)
        data_dir = DataDir(work / "node")
        data_dir.init(seed=bytes(range(32)))
        (data_dir.root / "config.toml").write_text(
            '[network]\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n', encoding="utf-8"
        )
        cat_file = work / "file.bin"
        print(f"filling the store: {records} records, a {cat_mib} MiB file…", file=sys.stderr)
        write_random(cat_file, cat_mib << 20)
        cid = fill_store(data_dir, records, cat_file)
        cat_file.unlink()

        baseline_start = import_seconds()
        daemon = start_daemon(data_dir, work / "daemon.out")
        context = multiprocessing.get_context("fork")
        ready = context.Event()
        echo_path = work / "echo.sock"
        echo = context.Process(target=echo_server, args=(echo_path, ready), daemon=True)
        echo.start()
        try:
            if not ready.wait(WAIT_SECONDS):
                raise RuntimeError("the baseline server did not start")
            print("measuring node.status…", file=sys.stderr)
            status_one = measure(daemon.socket_path, "node.status", None, clients=1, calls=calls)
            echo_one = measure(echo_path, "node.status", None, clients=1, calls=calls)
            per_client = max(100, calls // CLIENTS)
            status_many = measure(
                daemon.socket_path, "node.status", None, clients=CLIENTS, calls=per_client
            )
            echo_many = measure(echo_path, "node.status", None, clients=CLIENTS, calls=per_client)
            print("measuring records.list…", file=sys.stderr)
            list_calls = max(50, calls // 50)
            listing = measure(daemon.socket_path, "records.list", {}, clients=1, calls=list_calls)
            listing_in_process = in_process_list(data_dir, list_calls)
            print("measuring cat…", file=sys.stderr)
            cat_online = cat_online_seconds(daemon.socket_path, cid)
            cat_offline = cat_offline_seconds(data_dir, cid)
        finally:
            echo.terminate()
            echo.join(WAIT_SECONDS)
            daemon.stop()

    mib = cat_mib
    print(f"store: {records} records, a {mib} MiB file; {calls} calls per figure\n")
    print(row("figure", "ours", "baseline", "ratio", "target", "met"))
    print(row("---", "---:", "---:", "---:", "---", "---"))
    print(
        row(
            "daemon start until node.status answers",
            f"{daemon.start_seconds:.2f} s",
            f"importing its modules: {baseline_start:.2f} s",
            f"{daemon.start_seconds / baseline_start:.1f}x",
            f"<= {START_TARGET_SECONDS:.0f} s",
            yes(daemon.start_seconds <= START_TARGET_SECONDS),
        )
    )
    print(
        row(
            "node.status calls/s, 1 connection (RpcClient)",
            f"{status_one.per_second:,.0f}/s",
            f"minimal server: {echo_one.per_second:,.0f}/s",
            f"{status_one.per_second / echo_one.per_second:.2f}",
            f">= {STATUS_TARGET_PER_SECOND:,.0f}/s",
            yes(status_one.per_second >= STATUS_TARGET_PER_SECOND),
        )
    )
    print(
        row(
            "node.status p50, 1 connection",
            ms(status_one.p50),
            f"minimal server: {ms(echo_one.p50)}",
            f"{status_one.p50 / echo_one.p50:.2f}",
            "-",
            "-",
        )
    )
    print(
        row(
            f"node.status p50, {CLIENTS} connections",
            ms(status_many.p50),
            f"minimal server: {ms(echo_many.p50)}",
            f"{status_many.p50 / echo_many.p50:.2f}",
            "-",
            "-",
        )
    )
    print(
        row(
            f"node.status p99, {CLIENTS} connections",
            ms(status_many.p99),
            f"minimal server: {ms(echo_many.p99)}",
            f"{status_many.p99 / echo_many.p99:.2f}",
            f"<= {ms(P99_TARGET_SECONDS)}",
            yes(status_many.p99 <= P99_TARGET_SECONDS),
        )
    )
    print(
        row(
            f"node.status calls/s, {CLIENTS} connections",
            f"{status_many.per_second:,.0f}/s",
            f"minimal server: {echo_many.per_second:,.0f}/s",
            f"{status_many.per_second / echo_many.per_second:.2f}",
            "-",
            "-",
        )
    )
    print(
        row(
            f"records.list calls/s ({records} records, limit 100)",
            f"{listing.per_second:,.0f}/s",
            f"in-process Store: {listing_in_process.per_second:,.0f}/s",
            f"{listing.per_second / listing_in_process.per_second:.2f}",
            "-",
            "-",
        )
    )
    for name, ours, base in (
        ("p50", listing.p50, listing_in_process.p50),
        ("p99", listing.p99, listing_in_process.p99),
    ):
        print(
            row(
                f"records.list {name}",
                ms(ours),
                f"in-process Store: {ms(base)}",
                f"{ours / base:.2f}",
                "-",
                "-",
            )
        )
    print(
        row(
            f"cat {mib} MiB through the daemon",
            f"{mib / cat_online:.0f} MiB/s",
            f"offline, from the store: {mib / cat_offline:.0f} MiB/s",
            f"{cat_offline / cat_online:.2f}",
            "-",
            "-",
        )
    )
    print(
        "\nClients: node.client.RpcClient (blocking, one call in flight per connection),"
        " one process per connection. cat: what `remixnet cat` runs with and without"
        " a daemon (DaemonBackend.write_content, write_stream) to /dev/null, in this"
        " process, best of 2."
    )


if __name__ == "__main__":
    main()
