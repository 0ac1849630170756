"""The store: migrations, records and lineage, blocks, pins, fsck, use from trio."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from node.datadir import DataDir, DataDirError
from node.errors import CorruptBlock, MissingBlock, NotFound
from node.migrations import SCHEMA_VERSION
from node.store import RecordFilter, Store
from node.transfer import add_file, iter_content
from protocol.cid import Cid
from protocol.content import Block
from protocol.identity import private_key_from_seed
from protocol.records import (
    Contribution,
    InvalidRecord,
    Parent,
    RecordType,
    SignedRecord,
    sign_record,
)
from tests.conftest import corrupt_block, indexed_blocks, write_random_file

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


def test_record_bytes_changed_on_disk_are_refused_on_read(store: Store) -> None:
    poem, other = contribution("poem"), contribution("other", at=2)
    store.put_records([poem, other])
    # Reads check the bytes against their id rather than verifying the signature again.
    assert store.get_record(poem.id) == poem
    assert store.list_records(RecordFilter()) == [other, poem]
    # One byte of the title changed: still valid msgpack, no longer the record stored.
    changed = poem.encoded.replace(b"poem", b"poex")
    with store.database.transaction() as db:
        db.execute("UPDATE records SET encoded = ? WHERE id = ?", (changed, poem.id.to_bytes()))
    with pytest.raises(InvalidRecord) as caught:
        store.get_record(poem.id)
    assert caught.value.reason == "wrong-id"
    with pytest.raises(InvalidRecord):
        store.list_records(RecordFilter())
    assert store.fsck().bad_records == [str(poem.id)]


def test_blocks_are_verified_on_read(store: Store, tmp_path: Path) -> None:
    data = write_random_file(tmp_path / "f", 600_000)
    result = add_file(store, tmp_path / "f")
    assert b"".join(iter_content(store, result.root)) == data
    leaf = next(cid for cid in indexed_blocks(store.data_dir.root) if cid.startswith("bafkrei"))
    corrupt_block(store.data_dir.root, leaf)
    with pytest.raises(CorruptBlock):
        store.get_block(Cid.parse(leaf))
    store.delete_blocks([Cid.parse(leaf)])
    with pytest.raises(MissingBlock):
        store.get_block(Cid.parse(leaf))


def test_blocks_share_packs_across_writers_and_reopenings(store: Store, tmp_path: Path) -> None:
    """Many small adds append to one pack, not a file (or pack) each."""
    for n in range(20):
        (tmp_path / f"small{n}").write_bytes(b"tiny %d" % n)
        add_file(store, tmp_path / f"small{n}")
    store.close()
    with Store(store.data_dir) as reopened:
        (tmp_path / "more").write_bytes(b"more")
        added = add_file(reopened, tmp_path / "more")
        assert reopened.get_block(added.root) == b"more"
        assert len(reopened.blocks.packs.names()) == 1
        assert reopened.fsck().clean


def test_a_second_process_appends_to_its_own_pack(store: Store, tmp_path: Path) -> None:
    """The pack being appended to is flocked: a concurrent store picks another one."""
    store.put_block(Block(Cid.for_raw(b"first"), b"first"))
    with Store(store.data_dir) as concurrent:
        concurrent.put_block(Block(Cid.for_raw(b"second"), b"second"))
        assert len(concurrent.blocks.packs.names()) == 2
        assert concurrent.get_block(Cid.for_raw(b"first")) == b"first"
    assert store.get_block(Cid.for_raw(b"second")) == b"second"
    assert store.fsck().clean


def test_bytes_a_crash_left_uncommitted_are_truncated_by_the_next_writer(
    store: Store, tmp_path: Path
) -> None:
    store.put_block(Block(Cid.for_raw(b"kept"), b"kept"))
    store.close()
    (pack,) = store.blocks.packs.names()
    with store.blocks.packs.path_of(pack).open("ab") as file:
        file.write(b"\0\0\1\0half an entry")  # what a kill -9 mid-append leaves
    with Store(store.data_dir) as reopened:
        report = reopened.fsck()
        assert report.clean
        assert report.uncommitted_bytes > 0
        reopened.put_block(Block(Cid.for_raw(b"next"), b"next"))
        assert reopened.fsck().uncommitted_bytes == 0
        assert reopened.get_block(Cid.for_raw(b"kept")) == b"kept"


def test_fsck_finds_and_repairs_every_kind_of_damage(store: Store, tmp_path: Path) -> None:
    write_random_file(tmp_path / "f", 3 * 262_144)
    result = add_file(store, tmp_path / "f")
    store.put_record(contribution("poem"))
    assert store.fsck().clean
    leaves = [cid for cid in indexed_blocks(store.data_dir.root) if cid.startswith("bafkrei")]
    corrupt, missing = leaves[0], leaves[1]
    corrupt_block(store.data_dir.root, corrupt)
    with sqlite3.connect(store.data_dir.database) as db:  # an index row pointing nowhere
        db.execute(
            "UPDATE blocks SET offset = offset + 1 WHERE cid = ?", (Cid.parse(missing).to_bytes(),)
        )
    (store.data_dir.blocks / "junk").write_bytes(b"")
    with sqlite3.connect(store.data_dir.database) as db:  # a committed entry with no row
        db.execute("DELETE FROM blocks WHERE cid = ?", (result.root.to_bytes(),))
    report = store.fsck()
    assert report.corrupt_blocks == [corrupt]
    assert report.missing_blocks == [missing]
    assert report.unindexed_blocks == [str(result.root)]
    assert len(report.stray_files) == 1
    assert report.records_checked == 1
    assert report.problems == 3  # the unindexed block is valid: noted, not damage
    repaired = store.fsck(repair=True)
    assert repaired.problems == report.problems
    after = store.fsck()
    assert after.clean
    assert after.unindexed_blocks == []
    assert store.has_block(result.root)
    assert not store.has_block(Cid.parse(corrupt))
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


def test_compaction_reclaims_deleted_blocks_and_keeps_the_rest(
    store: Store, tmp_path: Path
) -> None:
    keep = [Block(Cid.for_raw(b"keep %d" % n), b"keep %d" % n) for n in range(5)]
    drop = [Block(Cid.for_raw(b"drop %d" % n * 1000), b"drop %d" % n * 1000) for n in range(5)]
    store.put_blocks(keep + drop)
    (pack,) = store.blocks.packs.names()
    assert store.delete_blocks(block.cid for block in drop) == 5
    reclaimed = store.blocks.compact([pack])
    assert reclaimed >= sum(len(block.data) for block in drop)
    assert pack not in store.blocks.packs.names()
    for block in keep:
        assert store.get_block(block.cid) == block.data
    for block in drop:
        assert not store.has_block(block.cid)
    assert store.fsck().clean
    store.put_block(Block(Cid.for_raw(b"after"), b"after"))  # appending still works
    assert store.get_block(Cid.for_raw(b"after")) == b"after"
