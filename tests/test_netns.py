"""Five daemons on five hosts: network namespaces, veth links, a partition and its healing.

Each daemon runs in its own network namespace (``ip netns exec``) with one
veth link to a switch: side A (nodes 0, 1, 2) on one bridge, side B (nodes
3, 4) on another, the two bridges joined by a veth trunk, all inside a hub
namespace, so nothing touches the host's network. Taking the trunk down
partitions the network (and the test cuts the TCP connections across it, as
a long partition would); both sides publish; bringing it up heals it, and the
stores must converge and content must cross over (``get``). One record is
imported offline, so no one announces it: only catch-up sync can carry it
(gossip carries the rest, or sync when gossip did not). The CLI talks to each
daemon over its Unix socket, which is not namespaced.

Needs root and ``ip netns``; skipped with the reason otherwise. Everything the
test creates is named with a prefix unique to the run and removed at the end,
whatever happens. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from node.client import connect_to_daemon
from node.datadir import DataDir
from tests.conftest import Cli, write_random_file
from tests.daemon_fixtures import DaemonProcess, wait_for

pytestmark = pytest.mark.slow

NODES = 5
SIDE_A = (0, 1, 2)
SIDE_B = (3, 4)
PORT = 4747
CONVERGE_SECONDS = 90.0
SYNC_INTERVAL = 3  # seconds between catch-up syncs (config), so healing is quick


def ip(*args: str) -> None:
    """Run ``ip ARGS``; raise with its message when it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class NamespaceCli(Cli):
    """``remixnet`` run inside a network namespace."""

    namespace: str = ""

    def command(self, *args: str | Path) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *super().command(*args)]


@dataclass
class Network:
    """The namespaces, links and daemons of one run; ``close`` removes them all."""

    root: Path
    prefix: str = field(default_factory=lambda: f"rn{os.getpid() % 1000}{secrets.token_hex(2)}")
    namespaces: list[str] = field(default_factory=list)
    daemons: list[DaemonProcess] = field(default_factory=list)

    @property
    def hub(self) -> str:
        return f"{self.prefix}hub"

    def address(self, node: int) -> str:
        return f"10.250.0.{node + 1}"

    def add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        """The hub with two bridges and a trunk, and one namespace per node linked to its side."""
        self.add_namespace(self.hub)
        for bridge in ("bra", "brb"):
            ip("-n", self.hub, "link", "add", bridge, "type", "bridge")
            ip("-n", self.hub, "link", "set", bridge, "up")
        ip("-n", self.hub, "link", "add", "trunka", "type", "veth", "peer", "name", "trunkb")
        ip("-n", self.hub, "link", "set", "trunka", "master", "bra", "up")
        ip("-n", self.hub, "link", "set", "trunkb", "master", "brb", "up")
        for node in range(NODES):
            namespace = f"{self.prefix}n{node}"
            self.add_namespace(namespace)
            port = f"port{node}"
            ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0")
            ip("-n", self.hub, "link", "set", "eth0", "netns", namespace)
            bridge = "bra" if node in SIDE_A else "brb"
            ip("-n", self.hub, "link", "set", port, "master", bridge, "up")
            ip("-n", namespace, "addr", "add", f"{self.address(node)}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")

    def partition(self) -> None:
        ip("-n", self.hub, "link", "set", "trunka", "down")
        ip("-n", self.hub, "link", "set", "trunkb", "down")

    def cut_connections(self, side: tuple[int, ...], other: tuple[int, ...]) -> None:
        """Close every TCP connection from ``side`` to ``other`` on ``side``'s end only.

        A partition that lasts ends TCP connections (timeouts, NAT state
        expiring); on a short one they would survive and gossip queued on them
        would arrive after healing. Cutting them makes healing rely on what
        catch-up sync brings when nodes reconnect, as after a long partition.
        """
        for node in side:
            for peer in other:
                result = subprocess.run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        f"{self.prefix}n{node}",
                        "ss",
                        "-K",
                        "dst",
                        self.address(peer),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                if result.returncode != 0:
                    raise RuntimeError(f"ss -K: {result.stderr.strip()}")

    def heal(self) -> None:
        ip("-n", self.hub, "link", "set", "trunka", "up")
        ip("-n", self.hub, "link", "set", "trunkb", "up")

    def start_daemon(self, node: int, bootstrap: list[str]) -> DaemonProcess:
        cli = NamespaceCli(self.root / f"node{node}", namespace=f"{self.prefix}n{node}")
        cli.run("init")
        (cli.data_dir / "config.toml").write_text(
            f'[network]\nlisten = ["/ip4/{self.address(node)}/tcp/{PORT}"]\n'
            f"bootstrap = {json.dumps(bootstrap)}\n"
            f'[gossip]\nsync_interval = {SYNC_INTERVAL}\nauto_fetch = "none"\n',
            encoding="utf-8",
        )
        daemon = DaemonProcess(cli)
        self.daemons.append(daemon)
        daemon.start()
        return daemon

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        for namespace in reversed(self.namespaces):
            try:
                ip("netns", "del", namespace)
            except RuntimeError as error:  # keep removing the others
                print(f"cleanup: {error}")


def netns_unavailable() -> str | None:
    """Why this machine cannot run the test, or None."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"rnprobe{os.getpid() % 100000}"
    try:
        ip("netns", "add", probe)
    except RuntimeError as error:
        return f"cannot create a network namespace: {error}"
    ip("netns", "del", probe)
    return None


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    built = Network(tmp_path)
    try:
        built.build()
        yield built
    finally:
        built.close()


def call(daemon: DaemonProcess, method: str, **params: Any) -> Any:
    client = connect_to_daemon(DataDir(daemon.cli.data_dir))
    assert client is not None
    with client:
        return client.call(method, params)


def record_ids(daemon: DaemonProcess) -> set[str]:
    return {record["id"] for record in call(daemon, "records.list", limit=1000)["records"]}


def peer_count(daemon: DaemonProcess) -> int:
    return len(call(daemon, "peers.list")["peers"])


def add(daemon: DaemonProcess, path: Path, title: str) -> dict[str, Any]:
    return cast(dict[str, Any], daemon.cli.json("add", path, "--title", title))


def test_five_hosts_partition_publish_heal_converge_and_fetch(
    network: Network, tmp_path: Path
) -> None:
    # Node 0 is side A's seed, node 3 side B's; the others bootstrap from both.
    seed = network.start_daemon(0, [])
    seed_address = seed.node_info()["listen_addrs"][0]
    assert seed_address.startswith(f"/ip4/{network.address(0)}/tcp/{PORT}/p2p/")
    by_node = {0: seed, 3: network.start_daemon(3, [seed_address])}
    b_seed_address = by_node[3].node_info()["listen_addrs"][0]
    for node in (1, 2, 4):
        by_node[node] = network.start_daemon(node, [seed_address, b_seed_address])
    nodes = list(by_node.values())
    assert wait_for(lambda: peer_count(by_node[0]) == 4, 30), peer_count(by_node[0])
    assert wait_for(lambda: peer_count(by_node[4]) == 2, 30)

    # Connected: a record published on one host reaches all five.
    files = tmp_path / "files"
    files.mkdir()
    write_random_file(files / "before.bin", 1000, seed=1)
    before = add(by_node[1], files / "before.bin", "Before")
    assert wait_for(lambda: all(before["id"] in record_ids(d) for d in nodes), 30)

    stranger = Cli(tmp_path / "stranger")  # never on the network
    stranger.run("init")
    write_random_file(files / "stranger.bin", 3000, seed=4)
    stranger_work = cast(dict[str, Any], stranger.json("add", files / "stranger.bin"))
    stranger_car = files / "stranger.car"
    stranger.run("export", stranger_work["id"], "-o", stranger_car)

    # Partition: both sides publish and add content; each side sees only its own.
    network.partition()
    network.cut_connections(SIDE_A, SIDE_B)
    network.cut_connections(SIDE_B, SIDE_A)
    data_a = write_random_file(files / "side-a.bin", 700_000, seed=2)
    data_b = write_random_file(files / "side-b.bin", 900_000, seed=3)
    work_a = add(by_node[1], files / "side-a.bin", "Side A")
    work_b = add(by_node[4], files / "side-b.bin", "Side B")
    by_node[3].cli.run("profile", "set", "--name", "Bea")
    # A record nobody announces: another artist's work, imported into node 4's
    # store directly (``--offline``). Only catch-up sync can carry it.
    by_node[4].cli.run("--offline", "import", stranger_car)
    side_a_records = {work_a["id"]}
    side_b_records = {work_b["id"], stranger_work["id"]}
    assert wait_for(lambda: all(work_a["id"] in record_ids(by_node[n]) for n in SIDE_A), 30)
    assert wait_for(lambda: all(work_b["id"] in record_ids(by_node[n]) for n in SIDE_B), 30)
    for n in SIDE_A:
        assert not side_b_records & record_ids(by_node[n]), "side B's record crossed the partition"
    for n in SIDE_B:
        assert not side_a_records & record_ids(by_node[n]), "side A's record crossed the partition"

    # Heal: every store converges to the same records, within a bounded time.
    network.heal()

    def converged() -> bool:
        stores = [record_ids(daemon) for daemon in nodes]
        return all(store == stores[0] for store in stores)

    assert wait_for(converged, CONVERGE_SECONDS), [len(record_ids(d)) for d in nodes]
    everything = record_ids(seed)
    assert {before["id"], work_a["id"], work_b["id"], stranger_work["id"]} <= everything
    assert len(everything) == 5  # the four works and Bea's profile

    # Content added on one side is fetched from the other.
    copy_b = tmp_path / "copy-b.bin"
    by_node[0].cli.run("get", work_b["id"], "-o", copy_b)
    assert copy_b.read_bytes() == data_b
    copy_a = tmp_path / "copy-a.bin"
    by_node[4].cli.run("get", work_a["id"], "-o", copy_a)
    assert copy_a.read_bytes() == data_a
