"""Moving content between files and the store: add, cat/get, CAR export/import.

These are blocking operations for a worker thread (or the offline CLI). Each
is crash-safe: blocks become durable before anything refers to them, output
files appear under their final name only when complete and verified, and
repeating an interrupted operation completes it (blocks already stored are
not written again).
"""

from __future__ import annotations

import glob
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from node.store import MissingBlock, Store
from protocol.car import CarDecoder, CarHeader, encode_header, encode_section
from protocol.cid import Cid
from protocol.content import Block, DagBuilder, child_links, dag_cids, iter_file
from protocol.errors import RemoteProtocolError
from protocol.records import Contribution, SignedRecord, decode_record

READ_SIZE = 1 << 20

Progress = Callable[[int], None]


def _ignore_progress(done: int) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Added:
    root: Cid
    size: int
    blocks_written: int
    blocks_present: int


def add_file(store: Store, path: Path, on_progress: Progress = _ignore_progress) -> Added:
    """Chunk ``path`` into the store and return its root CID (same as ``ipfs add``).

    Memory stays constant whatever the file size: one read buffer, the
    builder's pending links, and the writer's index rows between commits.
    """
    builder = DagBuilder()
    with path.open("rb") as source, store.writer() as writer:
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        while count := source.readinto(buffer):
            for block in builder.write(view[:count]):
                writer.put(block)
            on_progress(count)
        remaining, root = builder.finish()
        for block in remaining:
            writer.put(block)
    return Added(root, builder.size, writer.blocks_written, writer.blocks_present)


def resolve_content(store: Store, cid: Cid) -> tuple[Cid, SignedRecord | None]:
    """Map a record id to its content root; any other CID is taken as content."""
    if store.has_record(cid):
        record = store.get_record(cid)
        if isinstance(record.body, Contribution):
            return record.body.content, record
        return cid, record
    return cid, None


def iter_content(store: Store, root: Cid) -> Iterator[bytes]:
    """The bytes of the file at ``root``, every block verified before it is yielded."""
    return iter_file(root, store.get_block)


def write_stream(store: Store, root: Cid, out: BinaryIO, on_progress: Progress) -> int:
    """Write the file at ``root`` to ``out``; returns bytes written."""
    total = 0
    for piece in iter_content(store, root):
        out.write(piece)
        total += len(piece)
        on_progress(len(piece))
    return total


def get_file(store: Store, root: Cid, destination: Path, on_progress: Progress) -> int:
    """Write the file at ``root`` to ``destination`` atomically; returns its size.

    The bytes go to a temporary file beside ``destination``, which is fsynced
    and renamed over it only once every block has been verified: a crash or a
    corrupt block never leaves a partial file under the final name.
    """
    with _atomic_output(destination) as out:
        return write_stream(store, root, out, on_progress)


def dag_blocks(store: Store, root: Cid) -> Iterator[Block]:
    """Every block of the DAG at ``root``, depth first, each verified."""
    stack = [root]
    while stack:
        cid = stack.pop()
        block = Block(cid, store.get_block(cid))
        yield block
        stack.extend(reversed(child_links(block)))


def lineage_records(store: Store, record_id: Cid) -> list[SignedRecord]:
    """The record and all its ancestors that this store holds, each once."""
    seen: set[Cid] = set()
    order: list[SignedRecord] = []
    stack = [record_id]
    while stack:
        current = stack.pop()
        if current in seen or not store.has_record(current):
            continue
        seen.add(current)
        record = store.get_record(current)
        order.append(record)
        stack.extend(parent for parent, _ in store.parents_of(current))
    return order


def export_car(store: Store, record_id: Cid, destination: Path, on_progress: Progress) -> int:
    """Write a CARv1 with the record, its ancestors' records and all their content.

    The CAR's single root is ``record_id``. Returns the number of blocks.
    """
    records = lineage_records(store, record_id)
    if not records:
        store.get_record(record_id)  # raises NotFound with the id
    count = 0
    seen: set[Cid] = set()
    with _atomic_output(destination) as out:
        out.write(encode_header([record_id]))
        for record in records:
            out.write(encode_section(Block(record.id, record.encoded)))
            count += 1
            if not isinstance(record.body, Contribution) or record.body.content in seen:
                continue
            seen.add(record.body.content)
            for block in dag_blocks(store, record.body.content):
                out.write(encode_section(block))
                count += 1
                on_progress(len(block.data))
    return count


@dataclass(frozen=True, slots=True)
class Imported:
    roots: tuple[Cid, ...]
    records: int
    blocks: int
    # Content roots of imported contributions whose DAG the CAR (and this store)
    # does not hold completely: CARv1 has no end marker, so a CAR cut between two
    # sections is well-formed but short. Those roots are not pinned.
    incomplete: tuple[Cid, ...]
    new_records: tuple[SignedRecord, ...] = ()  # the records this store did not hold before


def import_car(store: Store, source: Path, on_progress: Progress) -> Imported:
    """Import a CARv1: verify every block, store records and content, pin roots.

    Blocks that decode as remixnet records are verified (signature, canonical
    form) and stored as records; every other block is stored as content.
    Content roots of imported contributions are pinned. Nothing from a block
    that fails verification is stored: the import stops at the first bad one.
    """
    decoder = CarDecoder()
    roots: tuple[Cid, ...] = ()
    records: list[SignedRecord] = []
    blocks = 0
    with source.open("rb") as file, store.writer() as writer:
        while piece := file.read(READ_SIZE):
            on_progress(len(piece))
            for item in decoder.feed(piece):
                if isinstance(item, CarHeader):
                    roots = item.roots
                    continue
                blocks += 1
                record = _as_record(item)
                if record is not None:
                    records.append(record)
                    continue
                writer.put(item)  # the decoder verified it against its CID
        decoder.finish()
    incomplete: list[Cid] = []
    new_records: list[SignedRecord] = []
    for record in records:
        if store.put_record(record):
            new_records.append(record)
        if not isinstance(record.body, Contribution):
            continue
        if content_is_complete(store, record.body.content):
            store.pin(record.body.content, f"import {source.name}")
        elif record.body.content not in incomplete:
            incomplete.append(record.body.content)
    return Imported(roots, len(records), blocks, tuple(incomplete), tuple(new_records))


def content_is_complete(store: Store, root: Cid) -> bool:
    """True when every block of the DAG at ``root`` is in the store."""
    try:
        for cid in dag_cids(root, store.get_block):
            if not store.has_block(cid):
                return False
    except MissingBlock:
        return False
    return True


def _as_record(block: Block) -> SignedRecord | None:
    """The block as a remixnet record, or None when it is not one (plain content)."""
    if block.cid.codec_name != "raw":
        return None
    try:
        record = decode_record(block.data)
    except RemoteProtocolError:
        return None
    return record if record.id == block.cid else None


@contextmanager
def _atomic_output(destination: Path) -> Iterator[BinaryIO]:
    """A file that appears at ``destination`` only when the block exits cleanly."""
    directory = destination.parent
    # Leftovers of an earlier run to the same destination that was killed.
    for stale in directory.glob(f".{glob.escape(destination.name)}.{'[0-9a-f]' * 12}.partial"):
        stale.unlink(missing_ok=True)
    for _attempt in range(100):
        temporary = directory / f".{destination.name}.{secrets.token_hex(6)}.partial"
        try:
            # O_EXCL + mode 0o666: a fresh name, with the user's umask applied as for any file.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"cannot create a temporary file in {directory}")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
