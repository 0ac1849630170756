"""A test-only peer in a process of its own: a ``Network`` serving one file, slowly or lying.

    python -m tests.scripted_peer DATA_DIR FILE [--delay SECONDS] [--lie]

Initialises ``DATA_DIR`` (a new directory), adds ``FILE`` to its store, starts a
``Network`` on 127.0.0.1 (any free port) whose block server waits ``--delay``
seconds per block served and, with ``--lie``, flips one bit of every block it
serves. It then prints one JSON line, ``{"peer_id", "addrs", "root"}``, and
serves until it is killed. ``tests/test_network_daemon.py`` runs it next to
real daemons.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio

from node.datadir import DataDir
from node.exchange import BlockServer
from node.network import Network, NetworkConfig
from node.store import Store
from node.transfer import add_file
from protocol.cid import Cid


class ScriptedServer(BlockServer):
    """A ``BlockServer`` that is slow (``delay`` s per block) and, if ``lie``, flips bits."""

    delay = 0.0
    lie = False

    async def load_blocks(self, cids: list[Cid]) -> list[bytes | None]:
        if self.delay:
            await trio.sleep(self.delay * len(cids))
        blocks = await super().load_blocks(cids)
        if not self.lie:
            return blocks
        return [None if data is None else bytes([data[0] ^ 1]) + data[1:] for data in blocks]


async def serve(data_dir: DataDir, source: Path, delay: float, lie: bool) -> None:
    with Store(data_dir) as store:
        added = await trio.to_thread.run_sync(add_file, store, source)
        await trio.to_thread.run_sync(store.pin, added.root, "scripted peer")
        server = ScriptedServer(store)
        server.delay = delay
        server.lie = lie
        seed = data_dir.load_identity().seed
        network = Network(
            store,
            seed,
            NetworkConfig(listen_addrs=("/ip4/127.0.0.1/tcp/0",)),
            block_server=server,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(network.run)
            line = {
                "peer_id": network.peer_id,
                "addrs": network.listen_addrs(),
                "root": str(added.root),
            }
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            await trio.sleep_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("file", type=Path)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--lie", action="store_true")
    arguments = parser.parse_args()
    data_dir = DataDir(arguments.data_dir)
    data_dir.init()
    trio.run(serve, data_dir, arguments.file, arguments.delay, arguments.lie)


if __name__ == "__main__":
    main()
