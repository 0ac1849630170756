"""``fsck``: check every block in every pack against its CID, and every record.

Damage (what makes a store not ``clean``):
* a corrupt block: an indexed block whose bytes no longer match its CID, or
  any entry below a pack's committed size that does not match its CID;
* a missing block: an index row whose pack or entry is gone;
* a stray file: something in ``blocks/`` that is not a known pack (a pack a
  compaction retired, which a crash kept from being deleted, is not stray);
* a bad record: a stored record that no longer decodes, verifies or matches its id.

Notes (not damage, what a crash legitimately leaves):
* unindexed blocks: valid, committed entries with no index row (another
  writer's commit made them durable before their own index rows were written);
* uncommitted bytes: whatever lies beyond a pack's committed size; the next
  appender truncates them.

``repair`` drops the index rows of corrupt and missing blocks (their pack
space is reclaimed by compaction), deletes stray files and bad records, and
indexes unindexed blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from node.packs import Entry, ScanEnd
from node.store import Store
from protocol.cid import Cid
from protocol.errors import RemoteProtocolError
from protocol.records import decode_record


@dataclass(slots=True)
class FsckReport:
    """What ``check_store`` found; with ``repair`` also what it fixed."""

    blocks_checked: int = 0
    records_checked: int = 0
    corrupt_blocks: list[str] = field(default_factory=list)
    missing_blocks: list[str] = field(default_factory=list)
    stray_files: list[str] = field(default_factory=list)
    bad_records: list[str] = field(default_factory=list)
    unindexed_blocks: list[str] = field(default_factory=list)
    uncommitted_bytes: int = 0
    repaired: bool = False

    @property
    def problems(self) -> int:
        return (
            len(self.corrupt_blocks)
            + len(self.missing_blocks)
            + len(self.stray_files)
            + len(self.bad_records)
        )

    @property
    def clean(self) -> bool:
        """No damage: every block matches its CID, every indexed block exists, records verify."""
        return self.problems == 0


def check_store(
    store: Store, *, repair: bool = False, on_progress: Callable[[int], None] | None = None
) -> FsckReport:
    report = FsckReport(repaired=repair)
    packs = {
        name: (pack_id, committed)
        for pack_id, name, committed in store.database.query(
            "SELECT id, name, committed_size FROM packs WHERE committed_size >= 0"
        )
    }
    # Packs a compaction replaced and a crash kept from being deleted: no rows point
    # into them, so they are neither damage nor stray; repair deletes them.
    retired = {
        name for (name,) in store.database.query("SELECT name FROM packs WHERE committed_size < 0")
    }
    # (pack id, data offset) -> cid, for every index row.
    indexed: dict[tuple[int, int], bytes] = {
        (pack, offset): cid
        for cid, pack, offset in store.database.query("SELECT cid, pack, offset FROM blocks")
    }
    indexed_cids = set(indexed.values())
    to_index: list[tuple[bytes, int, int, int]] = []
    damaged_packs: set[str] = set()
    for name in store.blocks.packs.names():
        if name in retired:
            continue
        if name not in packs:
            report.stray_files.append(str(store.blocks.packs.path_of(name)))
            if repair:
                store.blocks.packs.path_of(name).unlink(missing_ok=True)
            continue
        pack_id, committed = packs.pop(name)
        for item in store.blocks.packs.scan(name):
            if isinstance(item, ScanEnd):
                if item.offset < committed:  # damage inside the committed part
                    report.corrupt_blocks.append(f"{name}@{item.offset}")
                    damaged_packs.add(name)
                else:
                    report.uncommitted_bytes += (
                        store.blocks.packs.path_of(name).stat().st_size - item.offset
                    )
                break
            problems = report.problems
            _check_entry(item, name, pack_id, committed, indexed, indexed_cids, report, to_index)
            if report.problems != problems:
                damaged_packs.add(name)
            if on_progress is not None:
                on_progress(len(item.data))
    for name, (pack_id, _) in packs.items():  # packs whose file is gone
        for (pack, offset), cid in list(indexed.items()):
            if pack == pack_id:
                report.missing_blocks.append(str(Cid.from_bytes(cid)))
                del indexed[(pack, offset)]
        if repair:
            store.database.execute_many("DELETE FROM packs WHERE name = ?", [(name,)])
    pack_names = {
        pack_id: name
        for pack_id, name in store.database.query(
            "SELECT id, name FROM packs WHERE committed_size >= 0"
        )
    }
    for (pack_id, _), cid in indexed.items():  # rows pointing at no entry
        report.missing_blocks.append(str(Cid.from_bytes(cid)))
        if pack_id in pack_names:
            damaged_packs.add(pack_names[pack_id])
    _check_records(store, report, repair)
    if repair:
        damaged = [Cid.parse(name) for name in report.corrupt_blocks if "@" not in name]
        damaged += [Cid.parse(name) for name in report.missing_blocks]
        store.delete_blocks(damaged)
        store.database.execute_many(
            "INSERT OR IGNORE INTO blocks (cid, pack, offset, size, stored_ms)"
            " VALUES (?, ?, ?, ?, 0)",
            to_index,
        )
        # Rewrite the packs that hold damage, so it is gone rather than unreferenced.
        store.blocks.compact(sorted(damaged_packs))
        store.blocks.drop_retired()
    return report


def _check_entry(
    entry: Entry,
    name: str,
    pack_id: int,
    committed: int,
    indexed: dict[tuple[int, int], bytes],
    indexed_cids: set[bytes],
    report: FsckReport,
    to_index: list[tuple[bytes, int, int, int]],
) -> None:
    report.blocks_checked += 1
    if entry.offset >= committed:
        report.uncommitted_bytes += len(entry.data)
        return
    valid = entry.cid is not None and entry.cid.matches(entry.data)
    row = indexed.pop((pack_id, entry.offset), None)
    if row is not None:
        if not valid or entry.cid is None or entry.cid.to_bytes() != row:
            report.corrupt_blocks.append(str(Cid.from_bytes(row)))
        return
    if not valid or entry.cid is None:
        report.corrupt_blocks.append(f"{name}@{entry.offset}")
        return
    key = entry.cid.to_bytes()
    if key not in indexed_cids:
        report.unindexed_blocks.append(str(entry.cid))
        indexed_cids.add(key)
        to_index.append((key, pack_id, entry.offset, len(entry.data)))


def _check_records(store: Store, report: FsckReport, repair: bool) -> None:
    bad: list[bytes] = []
    for record_key, encoded in store.iter_record_rows():
        report.records_checked += 1
        try:
            ok = decode_record(encoded).id.to_bytes() == record_key
        except RemoteProtocolError:
            ok = False
        if not ok:
            report.bad_records.append(str(Cid.from_bytes(record_key)))
            bad.append(record_key)
    if repair and bad:
        store.database.execute_many("DELETE FROM records WHERE id = ?", [(key,) for key in bad])
