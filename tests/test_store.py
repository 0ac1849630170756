"""The store: migrations, records and lineage, blocks, pins, fsck, use from trio."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from node.datadir import DataDir, DataDirError
from node.migrations import SCHEMA_VERSION
from node.store import CorruptBlock, MissingBlock, NotFound, RecordFilter, Store
from node.transfer import add_file, iter_content
from protocol.cid import Cid
from protocol.content import Block
from protocol.identity import private_key_from_seed
from protocol.records import Contribution, Parent, RecordType, SignedRecord, sign_record
from tests.conftest import write_random_file

KEY = private_key_from_seed(bytes(range(32)))
OTHER_KEY = private_key_from_seed(bytes(32))


def contribution(
    title: str, *parents: Cid, tags: tuple[str, ...] = (), key: object = KEY, at: int = 1
) -> SignedRecord:
    body = Contribution(
        title=title,
        content=Cid.for_raw(title.encode()),
        size=len(title),
        media_type="text/plain",
        license="CC-BY-4.0",
        tags=tags,
        parents=tuple(Parent(parent) for parent in parents),
    )
    return sign_record(body, private_key=key, created_ms=at)  # type: ignore[arg-type]


def test_fresh_database_is_migrated_to_the_latest_schema(store: Store) -> None:
    with sqlite3.connect(store.data_dir.database) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_uninitialised_data_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="not initialised"):
        Store(DataDir(tmp_path / "nothing"))


def test_records_lineage_and_filters(store: Store) -> None:
    poem = contribution("poem", tags=("text",), at=1)
    drawing = contribution("drawing", poem.id, at=2)
    song = contribution("song", drawing.id, poem.id, key=OTHER_KEY, at=3)
    for record in (poem, drawing, song):
        assert store.put_record(record) is True
    assert store.put_record(song) is False  # stored once
    assert store.get_record(drawing.id) == drawing
    assert store.children_of(poem.id) == sorted([drawing.id, song.id])
    assert {parent for parent, _ in store.parents_of(song.id)} == {drawing.id, poem.id}
    newest_first = store.list_records(RecordFilter())
    assert [r.id for r in newest_first] == [song.id, drawing.id, poem.id]
    assert [r.id for r in store.list_records(RecordFilter(tag="text"))] == [poem.id]
    other_author = RecordFilter(author=song.author)
    assert [r.id for r in store.list_records(other_author)] == [song.id]
    assert store.list_records(RecordFilter(record_type=RecordType.PROFILE)) == []
    assert len(store.list_records(RecordFilter(media_type="text/*"))) == 3
    assert len(store.list_records(RecordFilter(media_type="image/*"))) == 0
    assert [r.id for r in store.list_records(RecordFilter(title_contains="raw"))] == [drawing.id]
    assert len(store.list_records(RecordFilter(limit=2))) == 2
    with pytest.raises(NotFound):
        store.get_record(Cid.for_raw(b"nothing"))


def test_records_survive_reopening(store: Store) -> None:
    poem = contribution("poem")
    store.put_record(poem)
    store.close()
    with Store(store.data_dir) as reopened:
        assert reopened.get_record(poem.id) == poem
        assert reopened.get_block(poem.id) == poem.encoded  # records are blocks too


def test_blocks_are_verified_on_read(store: Store, tmp_path: Path) -> None:
    data = write_random_file(tmp_path / "f", 600_000)
    result = add_file(store, tmp_path / "f")
    assert b"".join(iter_content(store, result.root)) == data
    leaf = next(cid for cid, _ in store.blocks.iter_cids() if cid and cid.codec_name == "raw")
    assert leaf is not None
    path = store.blocks.path_of(leaf)
    path.write_bytes(b"\0" * path.stat().st_size)
    with pytest.raises(CorruptBlock):
        store.get_block(leaf)
    path.unlink()
    with pytest.raises(MissingBlock):
        store.get_block(leaf)


def test_fsck_finds_and_repairs_every_kind_of_damage(store: Store, tmp_path: Path) -> None:
    write_random_file(tmp_path / "f", 3 * 262_144)
    result = add_file(store, tmp_path / "f")
    store.put_record(contribution("poem"))
    assert store.fsck().clean
    cids = [cid for cid, _ in store.blocks.iter_cids() if cid is not None]
    corrupt, missing = cids[0], cids[1]
    store.blocks.path_of(corrupt).write_bytes(b"rot")
    store.blocks.path_of(missing).unlink()
    (store.data_dir.blocks / "junk").write_bytes(b"")
    unindexed = Cid.for_raw(b"unindexed")
    store.blocks.write(Block(unindexed, b"unindexed"))
    report = store.fsck()
    assert report.corrupt_blocks == [str(corrupt)]
    assert report.missing_blocks == [str(missing)]
    assert report.unindexed_blocks == [str(unindexed)]
    assert len(report.stray_files) == 1
    assert report.records_checked == 1
    assert not report.clean
    assert report.problems == 3  # the unindexed block is valid: noted, not damage
    repaired = store.fsck(repair=True)
    assert repaired.problems == report.problems
    after = store.fsck()
    assert after.clean
    assert after.unindexed_blocks == []
    assert store.has_block(unindexed)
    assert not store.has_block(corrupt)
    assert store.pins() == []
    with pytest.raises(MissingBlock):  # the damaged blocks are gone, not served
        b"".join(iter_content(store, result.root))


async def test_store_serves_trio_worker_threads_concurrently(store: Store, tmp_path: Path) -> None:
    """The node calls the store through trio.to_thread: an ingest and queries overlap."""
    write_random_file(tmp_path / "big", 8 * 262_144)
    records = [contribution(f"work {n}", at=n) for n in range(50)]
    results: dict[str, object] = {}

    async def ingest() -> None:
        results["added"] = await trio.to_thread.run_sync(add_file, store, tmp_path / "big")

    async def publish() -> None:
        for record in records:
            await trio.to_thread.run_sync(store.put_record, record)
            await trio.to_thread.run_sync(store.get_record, record.id)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ingest)
        nursery.start_soon(publish)
        nursery.start_soon(publish)
    assert len(store.list_records(RecordFilter(limit=1000))) == 50
    assert store.fsck().clean
