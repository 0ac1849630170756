"""Seed nodes: policies, replication, the ``--seed`` profile, the metrics endpoint.

The end-to-end tests run real ``remixnet daemon`` processes on 127.0.0.1 and
drive them with the CLI, as a collective would; the others use a real SQLite
store, real ``config.toml`` files and a real HTTP request. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from node.client import connect_to_daemon
from node.config import (
    Config,
    ConfigError,
    MetricsSettings,
    NetworkConfig,
    SeedSettings,
    parse_config,
)
from node.daemon import Daemon, default_services
from node.datadir import DataDir
from node.gossip_service import GossipService
from node.host import NETWORK_ERRORS, Host, HostConfig
from node.metrics import render_metrics
from node.replication import (
    RETRY_FAILED_AFTER,
    ReplicationSettings,
    counts,
    done,
    due,
    enqueue,
    failed,
    requeue_failed,
    retry_delay,
)
from node.seed import SeedPolicy, load_policy, replace_table, write_policy
from node.store import Store
from protocol.cid import Cid
from tests.conftest import Cli, write_random_file
from tests.daemon_fixtures import (  # noqa: F401
    SEED,
    DaemonProcess,
    Daemons,
    daemons_fixture,
    wait_for,
    write_test_config,
)
from tests.test_gossip import contribution, eventually
from tests.test_gossip import nodes as gossip_nodes

AUTHOR = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
REPLICATION_SECONDS = 90.0


# -- policies in config.toml -----------------------------------------------------------


def test_a_policy_edit_rewrites_only_the_seed_table(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    data_dir.root.mkdir()
    original = (
        '# my node\n[network]\nlisten = ["/ip4/127.0.0.1/tcp/0"]  # loopback\n\n'
        '[seed]\nmode = "off"\nlisten = ["/ip4/127.0.0.1/tcp/5000"]\n\n'
        '[gossip]\nauto_fetch = "all"\n'
    )
    (data_dir.root / "config.toml").write_text(original)
    policy = SeedPolicy("followed", 1 << 20, frozenset({AUTHOR}), frozenset())
    config = write_policy(data_dir, policy)
    text = (data_dir.root / "config.toml").read_text()
    assert text.startswith('# my node\n[network]\nlisten = ["/ip4/127.0.0.1/tcp/0"]  # loopback\n')
    assert text.endswith('[gossip]\nauto_fetch = "all"\n')
    assert load_policy(data_dir) == policy
    assert config.seed.listen == ("/ip4/127.0.0.1/tcp/5000",)  # other [seed] keys are kept
    assert config.gossip.auto_fetch == "all"
    assert not list(data_dir.root.glob(".*partial"))


def test_replace_table_appends_a_missing_table() -> None:
    assert replace_table("", "seed", "[seed]\nmode = 1\n") == "[seed]\nmode = 1\n"
    text = replace_table("[network]\nmdns = true\n", "seed", "[seed]\nmode = 1\n")
    assert text == "[network]\nmdns = true\n\n[seed]\nmode = 1\n"


def test_seed_keys_in_a_form_the_edit_cannot_replace_are_reported(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    data_dir.root.mkdir()
    (data_dir.root / "config.toml").write_text('seed = { mode = "off" }\n')
    with pytest.raises(ConfigError, match="edit them by hand"):
        write_policy(data_dir, SeedPolicy(mode="everything"))
    assert (data_dir.root / "config.toml").read_text() == 'seed = { mode = "off" }\n'


def test_bad_seed_and_metrics_values_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="mode: must be one of"):
        parse_config('[seed]\nmode = "some"\n')
    with pytest.raises(ConfigError, match="not an Ed25519 PeerID"):
        parse_config('[seed]\nblock_authors = ["nobody"]\n')
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1 only"):
        parse_config('[metrics]\nlisten = "127.0.0.2:9000"\n')
    with pytest.raises(ConfigError, match="not a loopback address"):
        parse_config('[metrics]\nlisten = "0.0.0.0:9000"\n')


def test_seed_cli_edits_config_offline_and_fails_in_one_line(initialised_cli: Cli) -> None:
    result = cast(
        dict[str, Any],
        initialised_cli.json("seed", "set", "--mode", "authors", "--max-content-size", "2MiB"),
    )
    assert result["mode"] == "authors"
    assert result["max_content_bytes"] == 2 << 20
    blocked = cast(dict[str, Any], initialised_cli.json("seed", "block", "peer", AUTHOR))
    assert blocked["block_peers"] == [AUTHOR]
    assert blocked["changed"] is True
    again = cast(dict[str, Any], initialised_cli.json("seed", "block", "peer", AUTHOR))
    assert again["changed"] is False
    shown = cast(dict[str, Any], initialised_cli.json("seed", "show"))
    assert shown["block_peers"] == [AUTHOR]
    assert load_policy(DataDir(initialised_cli.data_dir)).mode == "authors"
    me = initialised_cli.run("id").stdout.decode().split()[0]
    failure = initialised_cli.fail("seed", "block", "author", me)
    assert failure.stderr.strip() == "remixnet: error: this node cannot block itself"
    failure = initialised_cli.fail("seed", "block", "author", "nobody")
    assert len(failure.stderr.strip().splitlines()) == 1
    usage = initialised_cli.fail("seed", "set")
    assert "give --mode" in usage.stderr
    assert usage.returncode == 2


# -- the replication queue ---------------------------------------------------------------


def test_the_replication_queue_backs_off_gives_up_and_survives_a_restart(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    data_dir.init(seed=SEED)
    first, second = Cid.for_raw(b"first"), Cid.for_raw(b"second")
    with Store(data_dir) as store:
        assert enqueue(store, [first, second], "author") == 2
        assert enqueue(store, [first], "ancestor") == 0  # already queued
        assert {item[0] for item in due(store, 10, set())} == {first, second}
        assert [item[0] for item in due(store, 10, {first})] == [second]
        failed(store, first, "FetchError: no providers", 3600.0, give_up=False)
    with Store(data_dir) as store:  # a restart keeps the queue
        assert counts(store) == {"queued": 2, "failed": 0}
        assert [item[0] for item in due(store, 10, set())] == [second]  # first backs off
        failed(store, second, "FetchError: no providers", 0.0, give_up=True)
        assert counts(store) == {"queued": 1, "failed": 1}
        assert due(store, 10, set()) == []
        requeue_failed(store)
        assert [item[0] for item in due(store, 10, set())] == [second]
        done(store, second)
        assert counts(store) == {"queued": 1, "failed": 0}


def test_a_record_given_up_on_gets_a_new_series_of_attempts_later(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    data_dir.init(seed=SEED)
    waiting, due_now = Cid.for_raw(b"waiting"), Cid.for_raw(b"due now")
    with Store(data_dir) as store:
        enqueue(store, [waiting, due_now], "author")
        failed(store, waiting, "FetchError: no providers", RETRY_FAILED_AFTER, give_up=True)
        failed(store, due_now, "FetchError: no providers", 0.0, give_up=True)
        assert counts(store) == {"queued": 0, "failed": 2}
        # What the periodic scan does: only the record whose wait is over comes back.
        assert requeue_failed(store, due_only=True) == 1
        assert [item for item in due(store, 10, set())] == [(due_now, "author", 0)]
        assert counts(store) == {"queued": 1, "failed": 1}
        assert requeue_failed(store) == 1  # a restart or a policy change: all of them


def test_retry_delays_grow_exponentially_up_to_the_cap() -> None:
    settings = ReplicationSettings(retry_base=2.0, retry_cap=600.0)
    delays = [retry_delay(attempt, settings, jitter=1.0) for attempt in range(1, 12)]
    assert delays[:4] == [2.0, 4.0, 8.0, 16.0]
    assert max(delays) == 600.0
    assert retry_delay(3, settings, jitter=0.0) == 4.0  # jitter halves at most


# -- the metrics endpoint ------------------------------------------------------------------


async def http_get(port: int, target: str, method: str = "GET") -> tuple[str, str]:
    """A real HTTP/1.1 request to 127.0.0.1:``port``; (status line, body)."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n".encode()
            )
            response = b""
            while data := await stream.receive_some(65536):
                response += data
    head, _, body = response.decode().partition("\r\n\r\n")
    return head.splitlines()[0], body


async def test_the_metrics_endpoint_serves_prometheus_text(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    data_dir.init(seed=SEED)
    config = Config(
        network=NetworkConfig(listen=("/ip4/127.0.0.1/tcp/0",)),
        metrics=MetricsSettings(listen="127.0.0.1:0"),
    )
    daemon = Daemon(data_dir, config, services=default_services())
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        port = int(str(daemon.info()["metrics"]).rpartition(":")[2])
        status, body = await http_get(port, "/metrics")
        assert status == "HTTP/1.1 200 OK"
        samples = dict(
            line.rsplit(" ", 1) for line in body.splitlines() if not line.startswith("#")
        )
        assert float(samples["remixnet_uptime_seconds"]) > 0
        assert samples["remixnet_peers_connected"] == "0"
        assert samples["remixnet_bytes_out_total"] == "0"
        assert samples["remixnet_replication_queued"] == "0"
        assert samples["remixnet_store_records"] == "0"
        assert "# TYPE remixnet_bytes_in_total counter" in body
        assert (await http_get(port, "/other"))[0] == "HTTP/1.1 404 Not Found"
        assert (await http_get(port, "/metrics", "POST"))[0] == "HTTP/1.1 405 Method Not Allowed"
        daemon.request_shutdown()


def test_render_metrics_flattens_numbers_and_skips_the_rest() -> None:
    text = render_metrics(
        {"uptime_s": 1.5, "store": {"blocks": 3}, "services": {"gossip": {"topics": ["a"]}}}
    )
    assert "remixnet_uptime_seconds 1.5\n" in text
    assert "remixnet_store_blocks 3\n" in text
    assert "topics" not in text


# -- seed daemons end to end ----------------------------------------------------------------


# A fetch nobody can serve fails after this long without progress (60 s by default).
GIVE_UP_SOON = "fetch_give_up_seconds = 5\n"


def call(daemon: DaemonProcess, method: str, params: dict[str, Any] | None = None) -> Any:
    client = connect_to_daemon(DataDir(daemon.cli.data_dir))
    assert client is not None
    with client:
        return client.call(method, params)


def pinned(daemon: DaemonProcess) -> set[str]:
    return {pin["cid"] for pin in call(daemon, "pins.list")["pins"]}


def holds(daemon: DaemonProcess, work: dict[str, Any]) -> bool:
    """The daemon has the record and its content, pinned."""
    records = call(daemon, "records.list", {"limit": 1000})["records"]
    return work["id"] in {record["id"] for record in records} and work["content"] in pinned(daemon)


def start_seed(daemons: Daemons, mode: str) -> tuple[DaemonProcess, str]:
    seed = daemons.launch(
        "seed",
        extra=f'\n[seed]\nmode = "{mode}"\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n',
        args=("--seed",),
    )
    return seed, seed.node_info()["listen_addrs"][0]


@pytest.mark.slow
def test_a_seed_replicates_followed_works_with_their_ancestors_and_serves_them_alone(
    daemons: Daemons, tmp_path: Path
) -> None:
    seed, seed_address = start_seed(daemons, "authors")
    assert call(seed, "node.status")["profile"] == "seed"
    y = daemons.launch("y", bootstrap=(seed_address,))
    x = daemons.launch("x", bootstrap=(seed_address,))
    files: dict[str, bytes] = {}
    for name, size in (("parent", 300_000), ("one", 1000), ("two", 600_000), ("remix", 5000)):
        files[name] = write_random_file(tmp_path / f"{name}.bin", size, seed=len(files) + 1)
    parent = cast(dict[str, Any], y.cli.json("add", tmp_path / "parent.bin", "--title", "P"))
    x_author = x.node_info()["author"]
    seed.cli.run("follow", x_author)

    assert wait_for(lambda: x.cli.run("show", parent["id"], check=False).returncode == 0, 30)
    works = {
        "one": cast(dict[str, Any], x.cli.json("add", tmp_path / "one.bin", "--title", "One")),
        "two": cast(dict[str, Any], x.cli.json("add", tmp_path / "two.bin", "--title", "Two")),
        "remix": cast(
            dict[str, Any],
            x.cli.json("remix", parent["id"], tmp_path / "remix.bin", "--title", "Remix"),
        ),
    }
    everything = {**works, "parent": parent}
    assert wait_for(
        lambda: all(holds(seed, work) for work in everything.values()), REPLICATION_SECONDS
    ), f"seed status: {call(seed, 'node.status')['services']['replication']}\n{seed.log()}"

    def replication() -> dict[str, Any]:
        return cast(dict[str, Any], call(seed, "node.status")["services"]["replication"])

    # (The last record's queue row goes once its content is held and its parents checked.)
    assert wait_for(lambda: (now := replication())["queued"] + now["in_progress"] == 0, 10)
    assert replication()["replicated"] >= 4
    status = seed.cli.run("status").stdout.decode()
    assert "replicate 0 queued" in status
    assert "profile   seed" in status

    # X and Y go offline; a fresh node that knows only the seed gets everything from it.
    assert x.stop() == 0
    assert y.stop() == 0
    fresh = daemons.launch("fresh", bootstrap=(seed_address,))
    for name, work in everything.items():
        output = tmp_path / f"fetched-{name}.bin"
        fresh.cli.run("get", work["id"], "-o", output)
        assert output.read_bytes() == files[name], name
    lineage = fresh.cli.run("lineage", works["remix"]["id"]).stdout.decode()
    assert parent["id"] in lineage
    served = call(seed, "node.status")["traffic"]["bytes_out"]
    assert served >= sum(len(data) for data in files.values())
    assert "traffic" in seed.cli.run("status").stdout.decode()


@pytest.mark.slow
def test_a_blocked_authors_records_are_neither_stored_nor_served(
    daemons: Daemons, tmp_path: Path
) -> None:
    seed, seed_address = start_seed(daemons, "everything")
    blocked = daemons.launch("blocked", bootstrap=(seed_address,))
    other = daemons.launch("other", bootstrap=(seed_address,))
    fresh = daemons.launch("fresh", bootstrap=(seed_address,), extra=GIVE_UP_SOON)
    blocked_author = blocked.node_info()["author"]
    early = write_random_file(tmp_path / "early.bin", 2000, seed=7)
    early_work = cast(dict[str, Any], blocked.cli.json("add", tmp_path / "early.bin"))
    assert wait_for(lambda: holds(seed, early_work), REPLICATION_SECONDS), seed.log()
    assert early  # replicated before the block: the block must delete it

    result = cast(dict[str, Any], seed.cli.json("seed", "block", "author", blocked_author))
    assert result["block_authors"] == [blocked_author]
    assert early_work["content"] not in pinned(seed)
    write_random_file(tmp_path / "late.bin", 3000, seed=8)
    late_work = cast(dict[str, Any], blocked.cli.json("add", tmp_path / "late.bin"))
    write_random_file(tmp_path / "fine.bin", 3000, seed=9)
    fine_work = cast(dict[str, Any], other.cli.json("add", tmp_path / "fine.bin"))
    # The seed stores and replicates the other author's work, and refuses the blocked one's.
    assert wait_for(lambda: holds(seed, fine_work), REPLICATION_SECONDS), seed.log()
    assert wait_for(
        lambda: call(seed, "node.status")["services"]["seed"]["records_refused"] >= 1, 30
    )
    records = {record["id"] for record in call(seed, "records.list", {"limit": 1000})["records"]}
    assert late_work["id"] not in records
    assert early_work["id"] not in records
    config = parse_config((seed.cli.data_dir / "config.toml").read_text())
    assert config.seed.block_authors == (blocked_author,)

    # With the blocked author offline, the seed serves none of their records or content.
    assert blocked.stop() == 0
    # (Run at once: a fetch nobody can serve gives up after GIVE_UP_SOON without progress.)
    attempts = [
        subprocess.Popen(
            fresh.cli.command(*command),
            env=fresh.cli.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for command in (
            ("get", early_work["id"], "-o", tmp_path / "early-copy.bin"),
            ("get", late_work["id"], "-o", tmp_path / "late-copy.bin"),
            ("cat", early_work["content"]),
        )
    ]
    outcomes = []
    try:
        for attempt in attempts:
            stdout, stderr = attempt.communicate(timeout=300)
            outcomes.append((attempt.returncode, stdout, stderr.decode()))
    finally:
        for attempt in attempts:
            if attempt.poll() is None:
                attempt.kill()
            attempt.communicate(timeout=30)
    for returncode, printed, error_text in outcomes:
        assert returncode == 1, error_text
        assert printed == b""
        assert error_text.startswith("remixnet: error: ")
        assert len(error_text.strip().splitlines()) == 1
    assert not (tmp_path / "early-copy.bin").exists()
    assert not (tmp_path / "late-copy.bin").exists()
    fresh.cli.run("get", fine_work["id"], "-o", tmp_path / "fine-copy.bin")

    # A blocked peer is disconnected and stays so.
    other_peer = other.node_info()["peer_id"]
    seed.cli.run("seed", "block", "peer", other_peer)
    assert wait_for(
        lambda: other_peer not in {peer["peer_id"] for peer in call(seed, "peers.list")["peers"]},
        10,
    )
    seed.cli.run("seed", "unblock", "peer", other_peer)
    assert load_policy(DataDir(seed.cli.data_dir)).block_peers == frozenset()


@pytest.mark.slow
async def test_sync_does_not_fetch_a_blocked_authors_records_again(tmp_path: Path) -> None:
    """Reconciliation finds a blocked author's records missing in every session.

    A daemon (in this process, with its real services) that blocks ``a``'s
    author fetches ``a``'s records once, refuses them, and from then on skips
    them: a second session finds them missing again and fetches none of them.
    """
    async with gossip_nodes(tmp_path) as started:
        a = await started.start("a", own_records_poll=3600)  # announces nothing by itself
        records = [contribution(a.identity, number) for number in range(40)]
        await trio.to_thread.run_sync(lambda: [a.store.put_record(r) for r in records])
        data_dir = DataDir(tmp_path / "seed")
        data_dir.init(seed=SEED)
        config = Config(
            network=NetworkConfig(listen=("/ip4/127.0.0.1/tcp/0",)),
            seed=SeedSettings(block_authors=(records[0].author_id,)),
        )
        daemon = Daemon(data_dir, config, services=default_services())
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            sync = next(s.sync for s in daemon.services if isinstance(s, GossipService))
            assert sync is not None
            address = cast(list[str], daemon.info()["listen_addrs"])[0]
            with trio.fail_after(10):
                await a.host.connect(address)  # a dials and initiates; the daemon fetches too
            await eventually(lambda: sync.statistics()["records_needed"] >= 40)
            await eventually(lambda: not sync.busy(a.peer_id))
            first = sync.statistics()
            assert first["records_received"] == 0  # refused: a blocked author's
            assert first["records_skipped"] == 0  # not yet known to be refused

            with trio.fail_after(10):
                assert await sync.sync_with(a.peer_id) == 0
            second = sync.statistics()
            assert second["records_skipped"] == 40
            assert second["records_received"] == 0
            # Fetched again, they would have been refused again: 80.
            seed_stats = cast(dict[str, Any], daemon.statistics()["services"])["seed"]
            assert seed_stats["records_refused"] == 40
            nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_peer_events_follow_connections_and_a_blocked_peer_is_dropped(
    tmp_path: Path,
) -> None:
    """``peer.connected`` / ``peer.disconnected`` as connections open and close; none for
    a blocked peer, which is disconnected as soon as it connects."""
    blocked = Host(os.urandom(32), HostConfig(("/ip4/127.0.0.1/tcp/0",)))
    friend = Host(os.urandom(32), HostConfig(("/ip4/127.0.0.1/tcp/0",)))
    data_dir = DataDir(tmp_path / "seed")
    data_dir.init(seed=SEED)
    config = Config(
        network=NetworkConfig(listen=("/ip4/127.0.0.1/tcp/0",)),
        seed=SeedSettings(block_peers=(blocked.peer_id,)),
    )
    daemon = Daemon(data_dir, config, services=default_services())
    events: list[tuple[str, object]] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            await nursery.start(blocked.run)
            await nursery.start(friend.run)
            assert daemon.node is not None
            daemon.node.events.subscribe(
                frozenset({"peer.connected", "peer.disconnected"}),
                lambda event, data: events.append((event, data["peer_id"])),
            )
            address = cast(list[str], daemon.info()["listen_addrs"])[0]
            await friend.connect(address)
            await eventually(lambda: ("peer.connected", friend.peer_id) in events)
            with contextlib.suppress(*NETWORK_ERRORS):
                await blocked.connect(address)
            await eventually(lambda: not blocked.connected_peer_ids())  # dropped by the seed
            seed_stats = cast(dict[str, Any], daemon.statistics()["services"])["seed"]
            assert seed_stats["peers_refused"] >= 1
            await friend.disconnect(daemon.info()["peer_id"])  # type: ignore[arg-type]
            await eventually(lambda: ("peer.disconnected", friend.peer_id) in events)
            assert events == [
                ("peer.connected", friend.peer_id),
                ("peer.disconnected", friend.peer_id),
            ]
            nursery.cancel_scope.cancel()
