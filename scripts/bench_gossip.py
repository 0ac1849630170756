#!/usr/bin/env python3
"""Announcements and catch-up sync benchmark (issue 4): latency, throughput, sync cost.

1. Propagation: ``--nodes`` (default 20) ``remixnet daemon`` processes on
   127.0.0.1, each dialling up to three earlier ones at random (a connected
   random graph), ``[gossip] auto_fetch = "none"``. ``--announcements``
   (default 100) records are published, one every ``--interval`` seconds
   (default 0.5: 20 processes sharing two cores saturate at a few per second,
   and then latency measures the queue, not gossip), by the nodes in
   turn (``profiles.set``: a signed record announced like any other, without
   the DHT provider lookups of ``content.add``, which would measure the DHT
   on a shared CPU rather than gossip); every node's ``record.added`` events
   are watched over its RPC socket. Latency of one announcement = from the publisher's own
   ``record.added`` to the last of the other nodes' (p50 and p99 over the
   announcements). Target: p99 <= 1 s.
2. Throughput: one node (a ``Gossip`` on a real host and store, in this
   process) is handed ``--records`` (default 10 000) announcements as GossipSub
   messages from a peer (``Pubsub.push_msg``: pubsub's own checks, our
   validation, delivery, storage); announcements/s until all are stored,
   against decode + verify alone (``validate_announcement``) of the same
   records. Target: >= 2 000 announcements/s.
3. Sync: a fresh node connects to one holding ``--sync-records`` (default
   10 000) records and fetches them all by catch-up sync: time (baseline:
   validating and storing the same records locally) and bytes (reconciliation
   plus the records' own bytes; baseline: the records' bytes). Target: <= 10 s.
   Then one more session between the two, which now agree: bytes exchanged
   (baseline: the full list of record ids). Target: <= 4 KiB.

Prints what it measured, then the markdown table
``| figure | ours | baseline | ratio | target | met |``.

Usage: .venv/bin/python scripts/bench_gossip.py [--quick] [--nodes 20] [--announcements 100]
       [--records 10000] [--sync-records 10000] [--seed 1] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import trio  # noqa: E402
from libp2p.peer.id import ID  # noqa: E402
from libp2p.pubsub.pb import rpc_pb2  # noqa: E402
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX  # noqa: E402

from node.client import connect_to_daemon, open_trio_client  # noqa: E402
from node.datadir import DataDir, Identity  # noqa: E402
from node.events import EventBus  # noqa: E402
from node.gossip import ANNOUNCE_TOPIC, Gossip, GossipConfig, validate_announcement  # noqa: E402
from node.host import key_pair_from_seed  # noqa: E402
from node.network import Network, NetworkConfig  # noqa: E402
from node.store import Store  # noqa: E402
from node.sync_service import SyncService  # noqa: E402
from protocol.cid import Cid  # noqa: E402
from protocol.identity import private_key_from_seed  # noqa: E402
from protocol.records import Contribution, SignedRecord, sign_record  # noqa: E402

LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)
START_SECONDS = 120.0
SKEW_MS = 10 * 60 * 1000
PUBLISH_INTERVAL = 0.5  # seconds between announcements (--interval)
SETTLE_SECONDS = 10.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def row(figure: str, ours: str, base: str, ratio: str, target: str, met: str) -> str:
    return f"| {figure} | {ours} | {base} | {ratio} | {target} | {met} |"


@dataclass
class Figure:
    figure: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: str


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *values: str) -> None:
        self.figures.append(Figure(*values))

    def note(self, text: str) -> None:
        print(text, flush=True)
        self.notes.append(text)


def seeds(count: int) -> list[bytes]:
    return [os.urandom(32) for _ in range(count)]


def signed_records(count: int, authors: int, tag: str) -> list[SignedRecord]:
    """``count`` contributions by ``authors`` random authors, created in the last hour."""
    identities = [Identity(private_key_from_seed(seed), seed) for seed in seeds(authors)]
    start = now_ms() - 3_600_000
    return [
        sign_record(
            Contribution(
                title=f"{tag} {number}",
                content=Cid.for_raw(f"{tag} content {number}".encode()),
                size=1000 + number,
                media_type="text/plain",
                license="CC-BY-SA-4.0",
                tags=("bench",),
            ),
            private_key=identities[number % authors].private_key,
            created_ms=start + number,
        )
        for number in range(count)
    ]


# --- in-process nodes ----------------------------------------------------------------------


@dataclass
class InProcessNode:
    store: Store
    network: Network
    gossip: Gossip
    sync: SyncService

    @property
    def peer_id(self) -> str:
        return self.network.host.peer_id

    def stored(self) -> int:
        return int(self.store.statistics()["records"])


async def start_node(
    nursery: trio.Nursery, root: Path, name: str, records: Sequence[SignedRecord] = ()
) -> InProcessNode:
    data_dir = DataDir(root / name)
    data_dir.init()
    identity = data_dir.load_identity()
    store = Store(data_dir)
    if records:
        await trio.to_thread.run_sync(store.put_records, records)
    network = Network(store, identity.seed, NetworkConfig(listen_addrs=LOOPBACK))
    host = network.host
    gossip = Gossip(host, store, EventBus(), identity.public_key, GossipConfig(auto_fetch="none"))
    sync = SyncService(host, store, gossip.accept_many, gossip.validate)
    node = InProcessNode(store, network, gossip, sync)

    async def run(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as inner:
                await inner.start(network.run)
                await inner.start(gossip.run)
                await inner.start(sync.run)
                task_status.started()
        finally:
            store.close()

    with trio.fail_after(30):
        await nursery.start(run)
    return node


async def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    with trio.move_on_after(seconds):
        while True:
            if condition():
                return
            await trio.sleep(0.005)
    raise SystemExit(f"not within {seconds} s: {what}")


def pubsub_message(record: SignedRecord, sender_seed: bytes, seqno: int) -> rpc_pb2.Message:
    """The GossipSub message a peer with ``sender_seed`` sends to announce ``record``."""
    key_pair = key_pair_from_seed(sender_seed)
    message = rpc_pb2.Message(
        data=record.encoded,
        topicIDs=[ANNOUNCE_TOPIC],
        from_id=ID.from_pubkey(key_pair.public_key).to_bytes(),
        seqno=seqno.to_bytes(8, "big"),
    )
    message.signature = key_pair.private_key.sign(
        PUBSUB_SIGNING_PREFIX.encode() + message.SerializeToString()
    )
    return message


async def throughput(root: Path, count: int, report: Report) -> None:
    records = signed_records(count, 50, "throughput")
    sender_seed = os.urandom(32)
    messages = [pubsub_message(r, sender_seed, n + 1) for n, r in enumerate(records)]
    sender = ID.from_pubkey(key_pair_from_seed(sender_seed).public_key)

    start = time.perf_counter()
    for record in records:
        validate_announcement(record.encoded, now_ms=now_ms(), max_clock_skew_ms=SKEW_MS)
    baseline = count / (time.perf_counter() - start)

    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, root, "receiver")
        start = time.perf_counter()
        queue = node.gossip.config.receive_queue
        for message in messages:
            await node.gossip.pubsub.push_msg(sender, message)
            # A peer's messages are read one after the other: let the node keep up
            # rather than overflow its queue (what overflows is left to sync).
            if node.gossip.statistics()["receive_queued"] > queue // 2:  # type: ignore[operator]
                await wait_until(
                    lambda: node.gossip.statistics()["receive_queued"] < queue // 4,  # type: ignore[operator]
                    60,
                    "the receive queue drains",
                )
        await wait_until(
            lambda: node.gossip.statistics()["stored_gossip"] == count, 300, "all stored"
        )
        ours = count / (time.perf_counter() - start)
        stats = node.gossip.statistics()
        nursery.cancel_scope.cancel()
    report.note(
        f"throughput: {count} announcements validated and stored at {ours:,.0f}/s"
        f" (decode+verify alone: {baseline:,.0f}/s); invalid {stats['invalid_messages']},"
        f" dropped {stats['receive_dropped']}"
    )
    report.add(
        "announcements validated and stored per second (one node)",
        f"{ours:,.0f}/s",
        f"{baseline:,.0f}/s (decode+verify)",
        f"{ours / baseline:.2f}",
        ">= 2,000/s",
        "yes" if ours >= 2000 else "no",
    )


async def sync_cost(root: Path, count: int, report: Report) -> None:
    records = signed_records(count, 100, "sync")
    payload = sum(len(record.encoded) for record in records)
    id_list = sum(len(record.id.to_bytes()) + 8 for record in records)  # id and created_ms

    def store_locally() -> float:
        data_dir = DataDir(root / "baseline")
        data_dir.init()
        with Store(data_dir) as store:
            start = time.perf_counter()
            checked = [
                validate_announcement(r.encoded, now_ms=now_ms(), max_clock_skew_ms=SKEW_MS)
                for r in records
            ]
            store.put_records(checked)
            return time.perf_counter() - start

    baseline_seconds = await trio.to_thread.run_sync(store_locally)
    async with trio.open_nursery() as nursery:
        holder = await start_node(nursery, root, "holder", records)
        fresh = await start_node(nursery, root, "fresh")
        start = time.perf_counter()
        with trio.fail_after(30):
            await fresh.network.host.connect(holder.network.host.listen_addrs()[0])
        await wait_until(
            lambda: fresh.gossip.statistics()["stored_sync"] == count, 120, "all synced"
        )
        seconds = time.perf_counter() - start
        await wait_until(lambda: not fresh.sync.busy(holder.peer_id), 30, "the session ends")
        first = fresh.sync.statistics()
        reconciliation = first["bytes_sent"] + first["bytes_received"]
        with trio.fail_after(30):
            again = await fresh.sync.sync_with(holder.peer_id)
        second = fresh.sync.statistics()
        agreeing = second["bytes_sent"] + second["bytes_received"] - reconciliation
        nursery.cancel_scope.cancel()
    assert again == 0
    report.note(
        f"sync: {count} records to a fresh node in {seconds:.2f} s (validating and storing"
        f" them locally: {baseline_seconds:.2f} s); reconciliation {reconciliation:,} bytes"
        f" + records {payload:,} bytes; a session between agreeing nodes: {agreeing:,} bytes"
        f" (full id list: {id_list:,} bytes)"
    )
    report.add(
        f"time to sync {count:,} records to a fresh node",
        f"{seconds:.2f} s",
        f"{baseline_seconds:.2f} s (validate + store locally)",
        f"{seconds / baseline_seconds:.1f}x",
        "<= 10 s",
        "yes" if seconds <= 10 else "no",
    )
    report.add(
        f"bytes to sync {count:,} records to a fresh node",
        f"{reconciliation + payload:,}",
        f"{payload:,} (the records)",
        f"{(reconciliation + payload) / payload:.3f}",
        "-",
        "-",
    )
    report.add(
        f"bytes of a sync when both agree on {count:,} records",
        f"{agreeing:,}",
        f"{id_list:,} (id list)",
        f"{agreeing / id_list:.2%}",
        "<= 4 KiB",
        "yes" if agreeing <= 4096 else "no",
    )


# --- daemon processes ------------------------------------------------------------------------


@dataclass
class DaemonHandle:
    data_dir: DataDir
    process: subprocess.Popen[bytes]
    info: dict[str, Any] = field(default_factory=dict)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        client = connect_to_daemon(self.data_dir)
        assert client is not None, "the daemon went away"
        with client:
            return client.call(method, params or {})

    def rss(self) -> int:
        """Resident memory of the daemon process; 0 once it has gone."""
        try:
            return int(psutil.Process(self.process.pid).memory_info().rss)
        except psutil.NoSuchProcess:
            return 0


def start_daemons(root: Path, count: int) -> list[DaemonHandle]:
    """``count`` daemons started at once; returns when every one reports ready."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    handles, ready_fds = [], []
    for number in range(count):
        data_dir = DataDir(root / f"d{number}")
        data_dir.init()
        (data_dir.root / "config.toml").write_text(
            '[network]\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n[gossip]\nauto_fetch = "none"\n',
            encoding="utf-8",
        )
        read_end, write_end = os.pipe()
        log = (root / f"d{number}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "node", "daemon", "--ready-fd", str(write_end)],
            env={**env, "REMIXNET_DATA_DIR": str(data_dir.root)},
            stdout=log,
            stderr=log,
            pass_fds=(write_end,),
        )
        log.close()
        os.close(write_end)
        handles.append(DaemonHandle(data_dir, process))
        ready_fds.append(read_end)
    deadline = time.monotonic() + START_SECONDS
    waiting = set(ready_fds)
    while waiting and time.monotonic() < deadline:
        readable, _, _ = select.select(list(waiting), [], [], 1.0)
        for fd in readable:
            os.read(fd, 16)
            waiting.discard(fd)
    for fd in ready_fds:
        os.close(fd)
    if waiting:
        stop_daemons(handles)
        raise SystemExit(f"{len(waiting)} daemons did not start (logs in {root})")
    for handle in handles:
        handle.info = json.loads((handle.data_dir.root / "node.json").read_text())
    return handles


def stop_daemons(handles: list[DaemonHandle]) -> None:
    for handle in handles:
        if handle.process.poll() is None:
            handle.process.send_signal(signal.SIGTERM)
    for handle in handles:
        try:
            handle.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            handle.process.kill()
            handle.process.wait(timeout=30)


def connect_random_graph(handles: list[DaemonHandle], seed: int) -> int:
    """Node i dials up to three earlier nodes at random; returns the number of links."""
    rng = random.Random(seed)
    links = 0
    for number, handle in enumerate(handles[1:], start=1):
        for other in rng.sample(range(number), min(3, number)):
            handle.call("peers.connect", {"address": handles[other].info["listen_addrs"][0]})
            links += 1
    return links


def wait_meshed(handles: list[DaemonHandle]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        meshed = [
            h.call("node.status")["services"]["gossip"]["mesh_peers"]
            >= min(4, len(h.call("peers.list")["peers"]))
            for h in handles
        ]
        if all(meshed):
            return
        time.sleep(0.2)
    raise SystemExit("the daemons did not form a GossipSub mesh within 60 s")


async def watch_and_publish(
    handles: list[DaemonHandle], root: Path, count: int, interval: float
) -> tuple[dict[str, float], dict[str, dict[int, float]]]:
    """Publish ``count`` works in turn; (publish time, {node: arrival time}) per record id."""
    published: dict[str, float] = {}
    arrivals: dict[str, dict[int, float]] = {}
    expected = count * len(handles)
    seen = 0
    done = trio.Event()

    async def watch(number: int, client: Any) -> None:
        nonlocal seen
        async for event in client.events:
            moment = trio.current_time()
            data = event.get("data", event)
            if event.get("event", "record.added") != "record.added":
                continue
            record_id = str(data["record"]["id"])
            if data["origin"] == "local":
                published[record_id] = moment
            arrivals.setdefault(record_id, {})[number] = moment
            seen += 1
            if seen >= expected:
                done.set()

    async with trio.open_nursery() as nursery:
        clients = []
        for handle in handles:
            client = await nursery_client(nursery, Path(handle.info["rpc_socket"]))
            await client.call("events.subscribe", {"events": ["record.added"]})
            clients.append(client)
        for number, client in enumerate(clients):
            nursery.start_soon(watch, number, client)
        for number in range(count):
            publisher = clients[number % len(clients)]
            profile = {"name": f"Node {number % len(clients)}", "bio": f"announcement {number}"}
            nursery.start_soon(publisher.call, "profiles.set", profile)
            await trio.sleep(interval)
        with trio.move_on_after(30):
            await done.wait()
        nursery.cancel_scope.cancel()
    return published, arrivals


async def nursery_client(nursery: trio.Nursery, path: Path) -> Any:
    """An RPC client kept open until ``nursery`` ends."""
    opened: trio.MemorySendChannel[Any]
    opened, receive = trio.open_memory_channel[Any](1)

    async def hold() -> None:
        async with open_trio_client(path, event_buffer=100_000) as client:
            await opened.send(client)
            await trio.sleep_forever()

    nursery.start_soon(hold)
    return await receive.receive()


def propagation(
    root: Path, nodes: int, count: int, seed: int, interval: float, report: Report
) -> None:
    start = time.monotonic()
    handles = start_daemons(root, nodes)
    try:
        report.note(
            f"propagation: {nodes} daemon processes (separate processes) started in"
            f" {time.monotonic() - start:.1f} s"
        )
        links = connect_random_graph(handles, seed)
        wait_meshed(handles)
        time.sleep(SETTLE_SECONDS)  # let the start-up work (DHT table refreshes) finish
        published, arrivals = trio.run(watch_and_publish, handles, root, count, interval)
        rss = sum(handle.rss() for handle in handles)
    finally:
        stop_daemons(handles)
    latencies: list[float] = []
    deliveries: list[float] = []
    missing = 0
    for record_id, moment in published.items():
        others = {n: t for n, t in arrivals.get(record_id, {}).items() if t != moment}
        missing += nodes - 1 - len(others)
        if len(others) == nodes - 1:
            latencies.append(max(others.values()) - moment)
        deliveries.extend(t - moment for t in others.values())
    if not latencies:
        raise SystemExit("no announcement reached every node")
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    deliveries.sort()
    report.note(
        f"propagation: {links} links; {len(published)} of {count} announcements published,"
        f" one every {interval:.2f} s;"
        f" {len(latencies)} reached all {nodes} nodes, {missing} deliveries missing;"
        f" to all nodes p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max"
        f" {latencies[-1] * 1000:.0f} ms; one delivery p50"
        f" {statistics.median(deliveries) * 1000:.0f} ms; daemons' RSS {rss / 2**20:,.0f} MiB"
    )
    report.add(
        f"propagation latency to all {nodes} nodes, p50 ({1 / interval:.0f} announcements/s)",
        f"{p50 * 1000:.0f} ms",
        "-",
        "-",
        "-",
        "-",
    )
    report.add(
        f"propagation latency to all {nodes} nodes, p99 ({1 / interval:.0f} announcements/s)",
        f"{p99 * 1000:.0f} ms",
        "-",
        "-",
        "<= 1 s",
        "yes" if p99 <= 1.0 and missing == 0 else "no",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (a minute or so)")
    parser.add_argument("--nodes", type=int, default=None)
    parser.add_argument("--announcements", type=int, default=None)
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--sync-records", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--interval", type=float, default=PUBLISH_INTERVAL)
    args = parser.parse_args()
    # The throughput run sends faster than GossipSub's per-peer rate limit lets a node
    # forward (it still stores everything): py-libp2p would log a warning per message.
    logging.getLogger("libp2p").setLevel(logging.ERROR)
    nodes = args.nodes or (5 if args.quick else 20)
    announcements = args.announcements or (20 if args.quick else 100)
    records = args.records or (1000 if args.quick else 10_000)
    sync_records = args.sync_records or (1000 if args.quick else 10_000)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="bench-gossip-") as directory:
        root = Path(directory)
        trio.run(throughput, root / "throughput", records, report)
        trio.run(sync_cost, root / "sync", sync_records, report)
        propagation(root / "propagation", nodes, announcements, args.seed, args.interval, report)
    print()
    print(row("figure", "ours", "baseline", "ratio", "target", "met"))
    print(row("---", "---:", "---:", "---:", "---", "---"))
    for figure in report.figures:
        print(
            row(
                figure.figure,
                figure.ours,
                figure.baseline,
                figure.ratio,
                figure.target,
                figure.met,
            )
        )


if __name__ == "__main__":
    main()
