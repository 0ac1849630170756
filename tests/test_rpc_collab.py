"""The collab methods over JSON-RPC: real daemons in this trio run, on 127.0.0.1.

What a daemon signs through ``collabs.open``, ``productions.create`` and
``acks.publish`` reaches a connected daemon by gossip at once (not by a later
sync); the read methods answer what the offline functions answer; errors
carry the documented codes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import node.gossip_service
from node.client import TrioRpcClient, open_trio_client
from node.daemon import Daemon
from node.datadir import DataDir
from node.gossip import ANNOUNCE_TOPIC, GossipConfig
from node.gossip_service import GossipService
from node.jsonrpc import INVALID_PARAMS, RpcError
from node.rpc_api import METHODS_BY_NAME
from node.rpc_methods_collab import OFFLINE
from node.rpc_schema import INVALID_INPUT, NETWORK_ERROR, NOT_FOUND
from node.store import Store
from protocol.records import Profile, sign_record
from tests.daemon_fixtures import loopback_config, running_daemons

UNKNOWN = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


async def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    with trio.fail_after(seconds):
        while True:
            if condition():
                return
            await trio.sleep(0.02)


def gossip_of(daemon: Daemon) -> Any:
    gossip = next(s for s in daemon.services if isinstance(s, GossipService)).gossip
    assert gossip is not None
    return gossip


async def has_record(client: TrioRpcClient, record_id: str) -> bool:
    try:
        await client.call("records.get", {"id": record_id})
    except RpcError:
        return False
    return True


async def wait_for_record(client: TrioRpcClient, record_id: str, seconds: float = 10.0) -> None:
    with trio.fail_after(seconds):
        while True:
            if await has_record(client, record_id):
                return
            await trio.sleep(0.05)


@pytest.mark.slow
async def test_collab_records_signed_through_the_daemon_are_gossiped_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Records written to the store without an event are found by polling it; make
    # that too slow to matter, so what arrives here came by the event.
    monkeypatch.setattr(
        node.gossip_service,
        "GossipConfig",
        functools.partial(GossipConfig, own_records_poll=3600.0),
    )
    async with running_daemons(tmp_path, "ana", "ben") as (ana, ben):
        assert ana.rpc is not None
        assert ben.rpc is not None
        (tmp_path / "song.mp3").write_bytes(b"ID3 a song")
        async with (
            open_trio_client(ana.rpc.unix_path) as client_ana,
            open_trio_client(ben.rpc.unix_path) as client_ben,
        ):
            await client_ana.call("profiles.set", {"name": "Ana"})
            address = (await client_ana.call("node.status"))["listen_addrs"][0]
            with trio.fail_after(10):
                await client_ben.call("peers.connect", {"address": address})
            await eventually(lambda: bool(gossip_of(ana).router.mesh.get(ANNOUNCE_TOPIC)))
            await eventually(lambda: bool(gossip_of(ben).router.mesh.get(ANNOUNCE_TOPIC)))
            await client_ana.call("events.subscribe", {"events": ["record.added"]})

            collab = (await client_ana.call("collabs.open", {"title": "Winter sounds"}))["collab"]
            assert (collab["type"], collab["title"]) == ("collab", "Winter sounds")
            with trio.fail_after(10):
                event = await client_ana.events.receive()
            assert event["data"] == {"record": collab, "origin": "local"}
            song = await client_ana.call(
                "content.add",
                {
                    "path": str(tmp_path / "song.mp3"),
                    "title": "Snow song",
                    "collab": collab["id"],
                },
            )
            production = (
                await client_ana.call(
                    "productions.create",
                    {
                        "title": "Winter, the album",
                        "collab": collab["id"],
                        "credits": [
                            {"contribution": song["id"], "role": "music", "share_bps": 10000}
                        ],
                    },
                )
            )["production"]
            ack = (
                await client_ana.call(
                    "acks.publish", {"production": production["id"], "accept": True}
                )
            )["ack"]
            for record_id in (collab["id"], production["id"], ack["id"]):
                await wait_for_record(client_ben, record_id)
            status = await client_ben.call("node.status")
            # Each arrived by gossip: sync ran on connect, before any of them existed.
            assert status["services"]["gossip"]["stored_gossip"] >= 4
            assert status["services"]["gossip"]["sync"]["records_received"] <= 1  # the profile

            # Ben's daemon now answers about Ana's collab as Ana's does.
            for client in (client_ana, client_ben):
                shown = await client.call("collabs.show", {"id": collab["id"]})
                assert shown["collab"]["author_name"] == "Ana"
                assert [c["id"] for c in shown["contributions"]] == [song["id"]]
                assert [p["id"] for p in shown["productions"]] == [production["id"]]
                credits = await client.call("credits.get", {"id": production["id"]})
                assert [(a["name"], a["bps"], a["ack"]) for a in credits["authors"]] == [
                    ("Ana", 10000, "accepted")
                ]
                assert credits["fetched"] is None
            listed = await client_ben.call("collabs.list", {})
            assert [c["id"] for c in listed["collabs"]] == [collab["id"]]


async def test_read_methods_answer_what_the_store_answers_offline(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    identity, _ = data_dir.init()
    (tmp_path / "poem.txt").write_text("snow on snow")
    daemon = Daemon(data_dir, loopback_config(), services=[])  # no network
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await nursery.start(daemon.run)
        try:
            assert daemon.rpc is not None
            async with open_trio_client(daemon.rpc.unix_path) as client:
                poem = await client.call("content.add", {"path": str(tmp_path / "poem.txt")})
                await client.call(
                    "content.add",
                    {"path": str(tmp_path / "poem.txt"), "parents": [{"id": poem["id"]}]},
                )
                collab = (await client.call("collabs.open", {"title": "C", "deadline_ms": 5}))[
                    "collab"
                ]
                production = (
                    await client.call(
                        "productions.create",
                        {
                            "title": "P",
                            "credits": [
                                {"contribution": poem["id"], "role": "words", "share_bps": 10000}
                            ],
                        },
                    )
                )["production"]
                calls: list[tuple[str, dict[str, Any]]] = [
                    ("collabs.list", {"limit": 5}),
                    ("collabs.show", {"id": collab["id"]}),
                    ("productions.show", {"id": production["id"]}),
                    ("credits.get", {"id": production["id"]}),
                    ("lineage.graph", {"id": production["id"], "format": "dot"}),
                    ("lineage.graph", {"id": poem["id"], "production": production["id"]}),
                ]
                online = [await client.call(method, params) for method, params in calls]

                # Errors: the documented codes and reasons.
                with pytest.raises(RpcError) as not_a_collab:
                    await client.call("collabs.show", {"id": poem["id"]})
                assert not_a_collab.value.code == INVALID_INPUT
                assert not_a_collab.value.data == {
                    "reason": "not-a-collab",
                    "error": "InvalidProduction",
                }
                with pytest.raises(RpcError) as too_large:
                    await client.call(
                        "lineage.graph",
                        {"id": poem["id"], "production": production["id"], "max_nodes": 2},
                    )
                assert too_large.value.code == INVALID_INPUT
                assert too_large.value.data == {
                    "reason": "graph-too-large",
                    "error": "GraphTooLarge",
                }
                with pytest.raises(RpcError) as unknown:
                    await client.call("credits.get", {"id": UNKNOWN})
                assert unknown.value.code == NOT_FOUND
                with pytest.raises(RpcError) as no_network:
                    await client.call("credits.get", {"id": production["id"], "fetch": True})
                assert no_network.value.code == NETWORK_ERROR
                with pytest.raises(RpcError) as short:
                    await client.call(
                        "productions.create",
                        {
                            "title": "Short",
                            "credits": [
                                {"contribution": poem["id"], "role": "words", "share_bps": 9000}
                            ],
                        },
                    )
                assert short.value.code == INVALID_INPUT
                assert "sum to 9000" in short.value.message
                with pytest.raises(RpcError) as bad_credit:
                    await client.call(
                        "productions.create",
                        {"title": "X", "credits": [{"contribution": poem["id"], "role": "r"}]},
                    )
                assert bad_credit.value.code == INVALID_PARAMS
        finally:
            daemon.request_shutdown()

    def offline_result(method: str, params: dict[str, Any]) -> Any:
        parsed = METHODS_BY_NAME[method].parse_params(params)
        with Store(data_dir) as store:
            return OFFLINE[method](store, identity, parsed)

    offline = [offline_result(method, params) for method, params in calls]
    assert online == offline
    assert online[0]["collabs"][0]["deadline_ms"] == 5
    svg = online[5]["text"]
    assert svg.startswith("<?xml")
    assert "keeps 10000 of 10000 bps" in svg
    assert online[4]["text"].startswith("digraph lineage {")
    assert (online[4]["nodes"], online[4]["edges"]) == (2, 1)


def test_profile_names_reach_every_collab_view(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    identity, _ = data_dir.init()
    with Store(data_dir) as store:
        store.put_record(
            sign_record(Profile("Ana"), private_key=identity.private_key, created_ms=1)
        )
        store.put_record(
            sign_record(Profile("Ana María"), private_key=identity.private_key, created_ms=2)
        )

        def call(method: str, params: dict[str, Any]) -> Any:
            parsed = METHODS_BY_NAME[method].parse_params(params)
            return OFFLINE[method](store, identity, parsed)

        collab = call("collabs.open", {"title": "C"})["collab"]
        assert "author_name" not in collab  # a record just signed: its plain view
        assert call("collabs.list", {})["collabs"][0]["author_name"] == "Ana María"
        assert call("collabs.show", {"id": collab["id"]})["collab"]["author_name"] == "Ana María"
