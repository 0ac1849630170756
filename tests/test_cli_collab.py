"""Collabs, productions, credits, acks and graphs from the command line, in subprocesses.

Two artists with their own data directories: Ben publishes a poem; Ana (the
director) imports it, opens a collab, remixes the poem and adds a drawing for
the collab, and signs a production. Records travel between them as CAR files,
the way they would travel between nodes.
"""

from __future__ import annotations

import csv
import io
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from node.client import RpcClient
from node.daemon_process import rpc_socket_path
from node.datadir import DataDir
from node.store import Store
from protocol.cid import Cid
from protocol.records import Contribution, Parent, Profile, sign_record
from tests.conftest import Cli
from tests.daemon_fixtures import DaemonProcess, wait_for, write_test_config

SVG = "{http://www.w3.org/2000/svg}"
PRODUCTION_TITLE = 'Rock & <Roll> "live"'


def json_of(cli: Cli, *args: str | Path) -> dict[str, Any]:
    return cast(dict[str, Any], cli.json(*args))


def send(source: Cli, target: Cli, record_id: str, folder: Path) -> None:
    """Carry a record (with its ancestors and content) from one node to another, as a CAR."""
    car = folder / f"{record_id}.car"
    source.run("export", record_id, "-o", car)
    target.run("import", car)


@dataclass
class Studio:
    ana: Cli  # the director
    ben: Cli
    folder: Path
    poem: str  # by Ben
    song: str  # Ana's remix of the poem, for the collab
    drawing: str  # by Ana, for the collab
    collab: str
    production: str


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Studio:
    folder = tmp_path_factory.mktemp("studio")
    ana, ben = Cli(folder / "ana"), Cli(folder / "ben")
    ana.run("init")
    ben.run("init")
    (folder / "poem.txt").write_text("snow on snow")
    (folder / "song.mp3").write_bytes(b"ID3 a song")
    (folder / "drawing.png").write_bytes(b"\x89PNG a drawing")
    poem = json_of(ben, "add", folder / "poem.txt", "--title", "Winter poem")["id"]
    send(ben, ana, poem, folder)
    # Ben's profile reaches Ana's node too: credits show his name.
    ben_identity = DataDir(ben.data_dir).load_identity()
    with Store(DataDir(ana.data_dir)) as store:
        store.put_record(
            sign_record(Profile("Ben Okri"), private_key=ben_identity.private_key, created_ms=1)
        )
    collab = json_of(
        ana, "collab", "open", "--title", "Winter sounds", "--brief", "Music for winter poems"
    )["id"]
    song = json_of(
        ana, "remix", poem, folder / "song.mp3", "--title", "Snow song", "--collab", collab
    )["id"]
    drawing = json_of(
        ana, "add", folder / "drawing.png", "--title", "Snow drawing", "--collab", collab
    )["id"]
    production = json_of(
        ana,
        "production",
        "create",
        "--title",
        PRODUCTION_TITLE,
        "--collab",
        collab,
        "--credit",
        f"{song}:music:7000",
        "--credit",
        f"{drawing}:cover art:3000",
    )["id"]
    return Studio(ana, ben, folder, poem, song, drawing, collab, production)


def author_of(cli: Cli) -> str:
    return cast(str, json_of(cli, "id")["author"])


def test_collab_open_ls_and_show(studio: Studio) -> None:
    ana = studio.ana
    listed = cast(list[dict[str, Any]], ana.json("collab", "ls"))
    assert [(c["id"], c["title"]) for c in listed] == [(studio.collab, "Winter sounds")]
    shown = json_of(ana, "collab", "show", studio.collab)
    assert shown["brief"] == "Music for winter poems"
    answers = {c["title"]: c for c in shown["contributions"]}
    assert set(answers) == {"Snow song", "Snow drawing"}
    assert [p["id"] for p in shown["productions"]] == [studio.production]
    text = ana.run("collab", "show", studio.collab).text
    assert "Winter sounds" in text
    assert "Snow song" in text
    assert "Snow drawing" in text


def test_collab_remixes_are_listed_under_the_contribution(studio: Studio, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "solo")
    cli.run("init")
    (tmp_path / "a.txt").write_text("a")
    collab = json_of(cli, "collab", "open", "--title", "Solo", "--deadline", "2031-03-01")
    assert collab["deadline_ms"] == 1_930_175_999_999  # the end of that day, UTC
    answer = json_of(cli, "add", tmp_path / "a.txt", "--title", "Answer", "--collab", collab["id"])
    remix = json_of(cli, "remix", answer["id"], tmp_path / "a.txt", "--title", "Its remix")
    shown = json_of(cli, "collab", "show", collab["id"])
    (contribution,) = shown["contributions"]
    assert [r["id"] for r in contribution["remixed_by"]] == [remix["id"]]
    assert "remixed by" in cli.run("collab", "show", collab["id"]).text
    assert "2031-03-01T23:59:59.999Z" in cli.run("collab", "show", collab["id"]).text


def test_production_show_lists_its_credits(studio: Studio) -> None:
    shown = json_of(studio.ana, "production", "show", studio.production)
    assert shown["title"] == PRODUCTION_TITLE
    assert shown["collab"] == studio.collab
    assert [(c["title"], c["role"], c["share_bps"]) for c in shown["credits"]] == [
        ("Snow song", "music", 7000),
        ("Snow drawing", "cover art", 3000),
    ]
    text = studio.ana.run("production", "show", studio.production).text
    assert "cover art: Snow drawing" in text


def test_credits_follow_the_remix_lineage(studio: Studio) -> None:
    report = json_of(studio.ana, "credits", studio.production)
    ana, ben = author_of(studio.ana), author_of(studio.ben)
    by_author = {a["author"]: a for a in report["authors"]}
    # Song: 7000, keeps half, passes 3500 to Ben's poem; drawing keeps its 3000.
    assert {a: v["bps"] for a, v in by_author.items()} == {ana: 6500, ben: 3500}
    assert by_author[ben]["name"] == "Ben Okri"
    assert by_author[ben]["percent"] == "35.00"
    assert [(t["title"], t["bps"]) for t in by_author[ana]["through"]] == [
        ("Snow song", 3500),
        ("Snow drawing", 3000),
    ]
    assert report["total_bps"] == 10_000
    assert report["unresolved"] == []
    table = studio.ana.run("credits", studio.production).text
    assert "Ben Okri" in table
    assert "6500" in table
    assert "65.00" in table
    assert "pending" in table


def test_credits_csv_for_payouts(studio: Studio) -> None:
    text = studio.ana.run("credits", studio.production, "--csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == [
        "kind",
        "id",
        "name",
        "bps",
        "percent",
        "exact_bps",
        "ack",
        "ack_reason",
        "through",
    ]
    assert sum(int(row["bps"]) for row in rows) == 10_000
    ben = next(row for row in rows if row["name"] == "Ben Okri")
    assert ben == {
        "kind": "author",
        "id": author_of(studio.ben),
        "name": "Ben Okri",
        "bps": "3500",
        "percent": "35.00",
        "exact_bps": "3500",
        "ack": "pending",
        "ack_reason": "",
        "through": f"{studio.poem}=3500",
    }
    assert studio.ana.fail("credits", studio.production, "--csv", "--json").returncode == 2


def test_acks_travel_back_and_the_latest_wins(studio: Studio) -> None:
    ana, ben, folder = studio.ana, studio.ben, studio.folder
    single = json_of(
        ana, "production", "create", "--title", "Single", "--credit", f"{studio.song}:music:10000"
    )["id"]
    for record in (studio.song, single):
        send(ana, ben, record, folder)
    disputed = json_of(ben, "ack", single, "--dispute", "Credit me as co-writer")
    assert disputed["accept"] is False
    send(ben, ana, disputed["id"], folder)
    report = json_of(ana, "credits", single)
    ben_row = next(a for a in report["authors"] if a["author"] == author_of(ben))
    assert (ben_row["ack"], ben_row["ack_reason"]) == ("disputed", "Credit me as co-writer")
    assert "disputed by Ben Okri: Credit me as co-writer" in ana.run("credits", single).text

    accepted = json_of(ben, "ack", single, "--accept")
    send(ben, ana, accepted["id"], folder)
    report = json_of(ana, "credits", single)
    ben_row = next(a for a in report["authors"] if a["author"] == author_of(ben))
    assert (ben_row["ack"], ben_row["ack_id"]) == ("accepted", accepted["id"])
    shown = json_of(ana, "production", "show", single)
    assert shown["acks"] == {"accepted": 1, "disputed": 0, "pending": 1}


def test_ack_needs_one_answer_and_a_credit(studio: Studio) -> None:
    ana, ben = studio.ana, studio.ben
    assert ben.fail("ack", studio.production).returncode == 2
    assert ben.fail("ack", studio.production, "--accept", "--dispute", "x").returncode == 2
    only_ana = json_of(
        ana,
        "production",
        "create",
        "--title",
        "Drawings",
        "--credit",
        f"{studio.drawing}:art:10000",
    )["id"]
    send(ana, ben, only_ana, studio.folder)
    send(ana, ben, studio.drawing, studio.folder)
    assert "gets no credit" in ben.fail("ack", only_ana, "--accept").stderr


def test_bad_productions_fail_with_one_clear_line(studio: Studio) -> None:
    ana, ben = studio.ana, studio.ben
    short = ana.fail(
        "production", "create", "--title", "Short", "--credit", f"{studio.song}:music:9000"
    )
    assert short.returncode == 1
    assert "sum to 9000 basis points, not 10000" in short.stderr
    twice = ana.fail(
        "production",
        "create",
        "--title",
        "Twice",
        "--credit",
        f"{studio.song}:music:5000",
        "--credit",
        f"{studio.song}:again:5000",
    )
    assert "credited twice" in twice.stderr
    unknown = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    assert (
        "not in this store"
        in ana.fail(
            "production", "create", "--title", "X", "--credit", f"{unknown}:music:10000"
        ).stderr
    )
    assert (
        "not-a-contribution"
        in ana.fail(
            "production", "create", "--title", "X", "--credit", f"{studio.collab}:music:10000"
        ).stderr
    )
    assert ana.fail("production", "create", "--title", "X", "--credit", "nonsense").returncode == 2
    # Ben holds the collab but does not direct it.
    send(ana, ben, studio.collab, studio.folder)
    send(ana, ben, studio.song, studio.folder)
    not_director = ben.fail(
        "production",
        "create",
        "--title",
        "Mine",
        "--collab",
        studio.collab,
        "--credit",
        f"{studio.song}:music:10000",
    )
    assert "only its director may sign its productions" in not_director.stderr
    assert "not-a-production" in ana.fail("credits", studio.song).stderr
    assert "unknown record" in ana.fail("collab", "show", unknown).stderr
    assert "not-a-collab" in ana.fail("collab", "show", studio.song).stderr
    assert ana.fail("collab", "open", "--title", "X", "--deadline", "tomorrow").returncode == 2


def svg_texts(path: Path) -> list[str]:
    tree = ElementTree.parse(path)  # raises unless it is well-formed XML
    assert tree.getroot().tag == f"{SVG}svg"
    return [element.text or "" for element in tree.getroot().iter(f"{SVG}text")]


def test_graph_of_a_production_as_svg_and_dot(studio: Studio, tmp_path: Path) -> None:
    ana = studio.ana
    drawn = json_of(
        ana, "lineage", studio.production, "--format", "svg", "-o", tmp_path / "credits.svg"
    )
    assert (drawn["nodes"], drawn["edges"]) == (4, 3)  # production, song, drawing, poem
    texts = svg_texts(tmp_path / "credits.svg")
    assert PRODUCTION_TITLE in texts  # escaped in the file, intact once parsed
    assert "by Ben Okri" in texts
    assert "keeps 3500 of 7000 bps" in texts  # the song
    assert "3500 bps" in texts  # passed up to the poem
    raw = (tmp_path / "credits.svg").read_text()
    assert "<Roll>" not in raw

    dot = ana.run("lineage", studio.production, "--format", "dot").text
    assert dot.startswith("digraph lineage {")
    assert dot.count(" -> ") == 3
    assert '\\"live\\"' in dot  # quotes in titles are escaped for DOT


def test_graph_of_a_contribution_with_a_production(studio: Studio, tmp_path: Path) -> None:
    ana = studio.ana
    ana.run("lineage", studio.poem, "--format", "svg", "-o", tmp_path / "lineage.svg")
    assert {"Winter poem", "Snow song", "by Ben Okri", "text/plain"} <= set(
        svg_texts(tmp_path / "lineage.svg")
    )
    ana.run(
        "lineage",
        studio.poem,
        "--format",
        "svg",
        "--production",
        studio.production,
        "-o",
        tmp_path / "flow.svg",
    )
    texts = svg_texts(tmp_path / "flow.svg")
    assert "keeps 3500 of 3500 bps" in texts  # the poem
    assert "7000 bps" in texts  # what the production gives the song
    unknown = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    assert "unknown record" in ana.fail("lineage", unknown, "--format", "svg").stderr
    too_large = ana.fail("lineage", studio.production, "--format", "dot", "--max-nodes", "2")
    assert "--depth" in too_large.stderr
    assert "--format dot or svg" in ana.fail("lineage", studio.poem, "-o", tmp_path / "x").stderr
    # `graph` is the old name of `lineage --format svg|dot`, kept (hidden) for scripts.
    assert ana.run("graph", studio.poem, "--format", "dot").text.startswith("digraph lineage {")
    assert "graph" not in ana.run("--help").text.split("Commands:")[1].split()


def test_profile_names_are_shown_beside_author_ids(studio: Studio) -> None:
    ana, ben_id = studio.ana, author_of(studio.ben)
    short = f"Ben Okri ({ben_id[:8]}…{ben_id[-6:]})"
    listed = next(line for line in ana.run("ls").text.splitlines() if studio.poem in line)
    assert short in listed
    assert f"Ben Okri ({ben_id})" in ana.run("show", studio.poem).text
    tree = ana.run("lineage", studio.song).text
    assert f"by {short}" in tree
    shown = json_of(ana, "collab", "show", studio.collab)
    assert [c["author_name"] for c in shown["contributions"]] == [None, None]  # Ana: no profile


def sync_sessions_done(data_dir: Path) -> int:
    with RpcClient.connect(rpc_socket_path(DataDir(data_dir))) as client:
        status = client.call("node.status", None)
    return int(status["services"]["gossip"]["sync"]["sessions_completed"])


@pytest.mark.slow
def test_credits_fetch_brings_ancestors_held_only_by_another_daemon(tmp_path: Path) -> None:
    """Two daemons in subprocesses: Cleo's poem is only on Ben's node when Ana asks."""
    ana, ben = Cli(tmp_path / "ana"), Cli(tmp_path / "ben")
    ana.run("init")
    ben.run("init")
    cleo = DataDir(tmp_path / "cleo")
    cleo.init()
    poem = sign_record(
        Contribution("Cleo's poem", Cid.for_raw(b"poem"), 4, "text/plain", "CC-BY-4.0"),
        private_key=cleo.load_identity().private_key,
        created_ms=int(time.time() * 1000) - 1000,
    )
    ana_identity = DataDir(ana.data_dir).load_identity()
    song = sign_record(
        Contribution(
            "Ana's song",
            Cid.for_raw(b"song"),
            4,
            "audio/mpeg",
            "CC-BY-4.0",
            parents=(Parent(poem.id),),
        ),
        private_key=ana_identity.private_key,
        created_ms=int(time.time() * 1000) - 500,
    )
    with Store(DataDir(ana.data_dir)) as store:
        store.put_record(song)
    production = json_of(
        ana, "production", "create", "--title", "Single", "--credit", f"{song.id}:music:10000"
    )["id"]

    write_test_config(ben.data_dir)
    ben_daemon = DaemonProcess(ben)
    ana_daemon = DaemonProcess(ana)
    try:
        address = ben_daemon.start()["listen_addrs"][0]
        write_test_config(ana.data_dir, f'bootstrap = ["{address}"]\n')
        ana_daemon.start()
        # Catch-up sync on connect is over before the poem reaches Ben's node: from
        # then on only a fetch by id can bring it to Ana's.
        assert wait_for(lambda: sync_sessions_done(ana.data_dir) >= 1)
        with Store(DataDir(ben.data_dir)) as store:
            store.put_record(poem)

        before = json_of(ana, "credits", production)
        assert before["unresolved"] == [
            {
                "record": str(poem.id),
                "reason": "missing",
                "bps": 5000,
                "percent": "50.00",
                "exact_bps": "5000",
            }
        ]
        assert "--fetch" in ana.run("credits", production).text
        after = json_of(ana, "credits", production, "--fetch")
        assert after["fetched"] == {"records": 1, "failed": []}
        assert after["unresolved"] == []
        cleo_id = cleo.load_identity().author_id
        assert {a["author"]: a["bps"] for a in after["authors"]} == {
            ana_identity.author_id: 5000,
            cleo_id: 5000,
        }
        # The poem is now held by Ana's node: offline shows the whole split too.
        offline = json_of(ana, "--offline", "credits", production)
        assert offline == {**after, "fetched": None}
    finally:
        for daemon in (ana_daemon, ben_daemon):
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.stop()
            daemon.kill()


def test_credits_fetch_without_a_daemon_is_one_clear_line(studio: Studio) -> None:
    failed = studio.ana.fail("credits", studio.production, "--fetch")
    assert failed.returncode == 1
    assert failed.stderr.startswith("remixnet: error: fetching records from peers needs the daemon")
    assert failed.stderr.count("\n") == 1
