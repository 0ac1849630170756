"""Our CIDs, blocks and CAR reading against a real IPFS implementation.

The reference is the npm package ``ipfs-unixfs-importer`` (what js IPFS runs
for ``ipfs add``), pinned in tests/interop/package-lock.json and driven by
tests/interop/unixfs_cid.mjs with the ``ipfs add --cid-version=1`` settings.
For every file we compare the root CID, then decode the CAR that js wrote
(@ipld/car) with our decoder and check that it holds exactly our blocks.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from protocol.car import CarDecoder, CarHeader
from protocol.cid import Cid
from protocol.content import CHUNK_SIZE, MAX_LINKS, Block, DagBuilder, iter_file

pytestmark = pytest.mark.interop

INTEROP_DIR = Path(__file__).resolve().parent / "interop"
SCRIPT = INTEROP_DIR / "unixfs_cid.mjs"
READ_SIZE = 1 << 20

FULL_NODE = MAX_LINKS * CHUNK_SIZE
SIZES = {
    "empty": 0,
    "one-byte": 1,
    "chunk-minus-1": CHUNK_SIZE - 1,
    "chunk": CHUNK_SIZE,
    "chunk-plus-1": CHUNK_SIZE + 1,
    "two-chunks-and-a-bit": 2 * CHUNK_SIZE + 1000,
    "full-node-minus-1": FULL_NODE - 1,
    "full-node": FULL_NODE,
    "full-node-plus-1": FULL_NODE + 1,
    "175-chunks": 175 * CHUNK_SIZE,
    **{f"random-{n}": random.Random(n).randrange(1, 8 * CHUNK_SIZE) for n in range(4)},
}


@dataclass(frozen=True)
class Params:
    """Layout parameters; the defaults are those of ``ipfs add``."""

    chunk_size: int = CHUNK_SIZE
    max_links: int = MAX_LINKS


@dataclass(frozen=True)
class Reference:
    path: Path
    cid: Cid
    car: Path
    params: Params


def content(size: int, seed: int) -> bytes:
    """Seeded bytes in which no two chunks are equal (a random period prime to the chunk size)."""
    period = random.Random(seed).randbytes(min(size, 1_000_003))
    return (period * (size // 1_000_003 + 1))[:size]


def run_reference(files: list[Path], car_dir: Path, options: list[str]) -> list[Cid]:
    """Root CIDs from the js importer for ``files`` (one node process for all)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; the interop tests need Node.js 20+ (see scripts/test)")
    if not (INTEROP_DIR / "node_modules" / "ipfs-unixfs-importer").is_dir():
        pytest.fail(
            "tests/interop/node_modules is missing: run scripts/test "
            "(it runs `npm ci` in tests/interop) before the interop tests"
        )
    result = subprocess.run(
        [node, str(SCRIPT), "--car-dir", str(car_dir), *options, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"{SCRIPT.name} failed ({result.returncode}):\n{result.stderr}")
    lines = result.stdout.split()
    assert len(lines) == len(files), result.stdout
    return [Cid.parse(line) for line in lines]


def references(
    names_and_data: list[tuple[str, bytes]], tmp: Path, params: Params | None = None
) -> dict[str, Reference]:
    options = []
    if params:
        options = ["--chunk-size", str(params.chunk_size), "--max-links", str(params.max_links)]
    paths = []
    for name, data in names_and_data:
        path = tmp / name
        path.write_bytes(data)
        paths.append(path)
    cids = run_reference(paths, tmp, options)
    return {
        name: Reference(path, cid, tmp / f"{index}.car", params or Params())
        for index, ((name, _), path, cid) in enumerate(
            zip(names_and_data, paths, cids, strict=True)
        )
    }


@pytest.fixture(scope="module")
def reference_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reference]:
    tmp = tmp_path_factory.mktemp("interop")
    files = [(name, content(size, seed)) for seed, (name, size) in enumerate(SIZES.items())]
    return references(files, tmp)


# Tiny chunks and fan-out give trees of up to 8 levels from files of a few
# hundred KiB: the shape of a many-terabyte file under the real parameters.
DEEP = Params(chunk_size=1024, max_links=3)
DEEP_SIZES = {
    **{f"3^{k}-chunks{delta:+d}": 1024 * 3**k + delta for k in (1, 2, 5) for delta in (-1, 0, 1)},
    **{f"random-{n}": random.Random(n).randrange(1, 2200 * 1024) for n in range(3)},
}


@pytest.fixture(scope="module")
def deep_reference_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reference]:
    tmp = tmp_path_factory.mktemp("interop-deep")
    files = [(name, content(size, seed)) for seed, (name, size) in enumerate(DEEP_SIZES.items())]
    return references(files, tmp, DEEP)


def build_file(path: Path, params: Params) -> tuple[Cid, dict[Cid, bytes]]:
    builder = DagBuilder(chunk_size=params.chunk_size, max_links=params.max_links)
    blocks: list[Block] = []
    with path.open("rb") as file:
        while piece := file.read(READ_SIZE):
            blocks += builder.write(piece)
    rest, root = builder.finish()
    return root, {block.cid: block.data for block in blocks + rest}


def read_car(path: Path) -> Iterator[CarHeader | Block]:
    decoder = CarDecoder()
    with path.open("rb") as file:
        while piece := file.read(65_536):
            yield from decoder.feed(piece)
    decoder.finish()


def check_against_reference(reference: Reference) -> None:
    root, blocks = build_file(reference.path, reference.params)
    assert root == reference.cid
    header, *car_blocks = read_car(reference.car)
    assert header == CarHeader((reference.cid,))
    assert {block.cid: block.data for block in car_blocks if isinstance(block, Block)} == blocks
    with reference.path.open("rb") as file:
        for piece in iter_file(root, blocks.__getitem__):
            assert piece == file.read(len(piece))
        assert file.read(1) == b""


@pytest.mark.parametrize("name", SIZES)
def test_same_root_and_blocks_as_js_importer(
    name: str, reference_files: dict[str, Reference]
) -> None:
    check_against_reference(reference_files[name])


@pytest.mark.parametrize("name", DEEP_SIZES)
def test_deep_trees_match_js_importer(
    name: str, deep_reference_files: dict[str, Reference]
) -> None:
    check_against_reference(deep_reference_files[name])


@pytest.mark.slow
def test_random_50_mib_file(tmp_path: Path) -> None:
    data = random.Random(50).randbytes(50 << 20)
    check_against_reference(references([("random-50-mib", data)], tmp_path)["random-50-mib"])
