"""Seeding policies: what a node replicates, and whom it blocks.

The policies are the ``[seed]`` keys ``mode``, ``max_content_bytes``,
``block_authors`` and ``block_peers`` of ``config.toml``. ``SeedPolicies``
holds them live in the daemon: gossip asks it before storing or forwarding a
record, the block server before serving a block or a peer, the network
service before keeping a peer connected, and replication what to fetch.

Edits (``seed.set``, ``seed.block``, ``seed.unblock``, over RPC or by the CLI
with no daemon) rewrite the ``[seed]`` table of ``config.toml`` atomically
(temporary file, fsync, rename) and then take effect. Why ``config.toml``
and not a SQLite table: one source of truth that an operator can read, diff
and deploy with their configuration management, and that `seed show`, a
restart and a hand edit all agree on. Only the ``[seed]`` table is rewritten;
the rest of the file, comments included, is kept byte for byte.

Invariants:
* a record by a blocked author is neither stored (``Gossip.accept``, which
  sync uses too, and a fetch by id), nor forwarded (gossip validation), nor
  served (``BlockServer.refuses_block``), nor fetched again by sync once
  refused (up to ``MAX_REFUSED_MEMORY`` ids); blocking an author deletes their
  records held here, unpins their content and remembers its ids in
  ``blocked_content`` so that it is refused to peers until GC removes it;
* a blocked peer is disconnected as soon as it connects, its streams
  are refused and its announcements dropped;
* what ``config.toml`` says after an edit is exactly the policy in force.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import trio

from node.config import (
    Config,
    ConfigError,
    SeedSettings,
    config_path,
    parse_config,
    section_text,
    write_atomically,
)
from node.datadir import DataDir
from node.gossip import Gossip
from node.jsonrpc import RpcError
from node.network_service import NetworkService
from node.rpc_api_seed import (
    SEED_BLOCK,
    SEED_SET,
    SEED_SHOW,
    SEED_UNBLOCK,
    SeedBlockParams,
    SeedSetParams,
    SeedShowParams,
)
from node.rpc_schema import INVALID_INPUT
from node.rpc_server import Call
from node.store import Store
from node.sync_service import SyncService
from protocol.cid import Cid
from protocol.identity import public_key_of
from protocol.records import Collab, Contribution, SignedRecord

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from node.daemon import Node

logger = logging.getLogger(__name__)

_TABLE_HEADER: Final = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(#.*)?$")
MAX_REFUSED_MEMORY: Final = 100_000  # ids of blocked records remembered, besides blocked_content


@dataclass(frozen=True, slots=True)
class SeedPolicy:
    """The policy part of ``[seed]``."""

    mode: str = "off"
    max_content_bytes: int = 0
    block_authors: frozenset[str] = frozenset()
    block_peers: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: SeedSettings) -> SeedPolicy:
        return cls(
            settings.mode,
            settings.max_content_bytes,
            frozenset(settings.block_authors),
            frozenset(settings.block_peers),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "max_content_bytes": self.max_content_bytes,
            "block_authors": sorted(self.block_authors),
            "block_peers": sorted(self.block_peers),
        }

    def covers_authors(self) -> bool:
        return self.mode in ("authors", "followed")

    def covers_collabs(self) -> bool:
        return self.mode in ("collabs", "followed")


# -- config.toml ------------------------------------------------------------------


def replace_table(text: str, section: str, table: str) -> str:
    """``text`` with its ``[section]`` table (header to next header) replaced by ``table``."""
    lines = text.splitlines(keepends=True)
    start: int | None = None
    end = len(lines)
    for number, line in enumerate(lines):
        match = _TABLE_HEADER.match(line)
        if match is None:
            continue
        if start is None and match.group(1) == section:
            start = number
        elif start is not None:
            end = number
            break
    if start is None:
        return (text.rstrip("\n") + "\n\n" if text.strip() else "") + table
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + table + ("\n" + tail if tail else "")


def write_policy(data_dir: DataDir, policy: SeedPolicy) -> Config:
    """Write ``policy`` into ``config.toml``'s ``[seed]`` table (atomically); the new config.

    Blocking. Raises ``ConfigError`` when the file does not parse, or when
    its ``[seed]`` keys are written in a way this edit cannot replace.
    """
    path = config_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read it ({error})") from None
    current = parse_config(text, source=str(path))
    settings = dataclasses.replace(
        current.seed,
        mode=policy.mode,
        max_content_bytes=policy.max_content_bytes,
        block_authors=tuple(sorted(policy.block_authors)),
        block_peers=tuple(sorted(policy.block_peers)),
    )
    new_text = replace_table(text, "seed", section_text("seed", settings))
    uneditable = ConfigError(
        f"{path}: its [seed] keys are written in a form remixnet cannot edit"
        " (dotted keys or an inline table?): edit them by hand"
    )
    try:
        written = parse_config(new_text, source=str(path))
    except ConfigError:
        raise uneditable from None
    if SeedPolicy.from_settings(written.seed) != policy:
        raise uneditable
    write_atomically(path, new_text.encode(), mode=0o644)
    return written


def load_policy(data_dir: DataDir) -> SeedPolicy:
    """The policy ``config.toml`` holds now (defaults without a file). Raises ``ConfigError``."""
    path = config_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return SeedPolicy()
    return SeedPolicy.from_settings(parse_config(text, source=str(path)).seed)


class PolicyError(ValueError):
    """An edit that makes no sense (blocking oneself)."""


def changed_policy(
    policy: SeedPolicy, method: str, params: SeedSetParams | SeedBlockParams, me: str
) -> tuple[SeedPolicy, bool]:
    """``policy`` after ``seed.set``/``seed.block``/``seed.unblock``; whether it changed."""
    if isinstance(params, SeedSetParams):
        new = dataclasses.replace(
            policy,
            mode=params.mode if params.mode is not None else policy.mode,
            max_content_bytes=(
                params.max_content_bytes
                if params.max_content_bytes is not None
                else policy.max_content_bytes
            ),
        )
        return new, new != policy
    peer_id = me if params.id == "me" else params.id
    if peer_id == me:
        raise PolicyError("this node cannot block itself")
    blocking = method == SEED_BLOCK.name
    if params.kind == "author":
        blocked = policy.block_authors
        updated = blocked | {peer_id} if blocking else blocked - {peer_id}
        return dataclasses.replace(policy, block_authors=updated), updated != blocked
    blocked = policy.block_peers
    updated = blocked | {peer_id} if blocking else blocked - {peer_id}
    return dataclasses.replace(policy, block_peers=updated), updated != blocked


def edit_offline(
    data_dir: DataDir, method: str, params: SeedSetParams | SeedBlockParams, me: str
) -> dict[str, object]:
    """Apply an edit to ``config.toml`` with no daemon running (the CLI); the method's result.

    Blocking an author also deletes their records from the store; see ``purge_author``.
    """
    policy = load_policy(data_dir)
    new, changed = changed_policy(policy, method, params, me)
    if changed:
        write_policy(data_dir, new)
    result = new.to_json()
    if isinstance(params, SeedBlockParams):
        result["changed"] = changed
        if changed and params.kind == "author" and method == SEED_BLOCK.name:
            with Store(data_dir) as store:
                purge_author(store, public_key_of(params.id))
    return result


# -- the store ----------------------------------------------------------------------


def purge_author(store: Store, author: bytes) -> int:
    """Delete ``author``'s records, unpin their content, remember both as blocked.

    Blocking. Content also named by a record of another author stays pinned.
    Returns the number of records deleted.
    """
    with store.database.transaction() as db:
        rows = db.execute("SELECT id, content FROM records WHERE author = ?", (author,)).fetchall()
        db.executemany(
            "INSERT OR IGNORE INTO blocked_content (cid, author) VALUES (?, ?)",
            [(bytes(cid), author) for row in rows for cid in row if cid is not None],
        )
        db.execute(
            "DELETE FROM pins WHERE cid IN (SELECT content FROM records WHERE author = ?)"
            " AND cid NOT IN (SELECT content FROM records WHERE author != ?"
            " AND content IS NOT NULL)",
            (author, author),
        )
        db.execute(
            "DELETE FROM replication_queue WHERE record_id IN"
            " (SELECT id FROM records WHERE author = ?)",
            (author,),
        )
        deleted: int = db.execute("DELETE FROM records WHERE author = ?", (author,)).rowcount
    return deleted


def unblock_author(store: Store, author: bytes) -> None:
    with store.database.transaction() as db:
        db.execute("DELETE FROM blocked_content WHERE author = ?", (author,))


def blocked_cids(store: Store) -> set[Cid]:
    rows = store.database.query("SELECT cid FROM blocked_content")
    return {Cid.from_bytes(bytes(row[0])) for row in rows}


def coverage(store: Store, policy: SeedPolicy, record: SignedRecord) -> str | None:
    """Why ``policy`` replicates ``record`` ("author", "collab", "everything"), or None.

    Blocking (reads the follows). Only contributions carry content to replicate.
    """
    body = record.body
    if policy.mode == "off" or record.author_id in policy.block_authors:
        return None
    if isinstance(body, Collab) and policy.covers_collabs():
        return "collab" if _collab_followed(store, record.id) else None
    if not isinstance(body, Contribution):
        return None
    if policy.mode == "everything":
        return "everything"
    if policy.covers_authors() and (
        store.database.query_one("SELECT 1 FROM follows WHERE author = ?", (record.author,))
        is not None
    ):
        return "author"
    if policy.covers_collabs() and body.collab is not None and _collab_followed(store, body.collab):
        return "collab"
    return None


def _collab_followed(store: Store, collab: Cid) -> bool:
    row = store.database.query_one(
        "SELECT 1 FROM followed_collabs WHERE collab = ?", (collab.to_bytes(),)
    )
    return row is not None


# -- the daemon ---------------------------------------------------------------------

PolicyListener = Callable[[SeedPolicy, SeedPolicy], None]


def seed_service(node: Node) -> SeedPolicies:
    """The ``ServiceFactory`` of the policies (after the network and gossip services).

    Wires the policy hooks into the services built before it: the network
    (peers, records fetched by id), its block server and fetcher, gossip (the
    admission of records, from gossip and sync alike) and sync (which records
    it need not fetch again).
    """
    policies = SeedPolicies(node)
    for service in node.services:
        if isinstance(service, NetworkService):
            service.policies = policies
            service.network.server.refuses_block = policies.refuses_block
            service.network.server.refuses_peer = policies.refuses_peer
            service.network.fetcher.refuses_peer = policies.refuses_peer
        gossip = getattr(service, "gossip", None)
        if isinstance(gossip, Gossip):
            gossip.refuse_record = policies.refuses_record
        sync = getattr(service, "sync", None)
        if isinstance(sync, SyncService):
            sync.skips_record = policies.refused_already
    return policies


class SeedPolicies:
    """The policies in force in a daemon, and their edits. Built by ``seed_service``."""

    name = "seed"

    def __init__(self, node: Node) -> None:
        self.node = node
        self.policy = SeedPolicy.from_settings(node.config.seed)
        self._refused: set[Cid] = set()  # records and content of blocked authors
        self._lock = trio.Lock()
        self._listeners: list[PolicyListener] = []
        self._stats = {"records_refused": 0, "blocks_refused": 0, "peers_refused": 0}
        node.methods.register(SEED_SHOW, self.show)
        node.methods.register(SEED_SET, self.set_policy)
        node.methods.register(SEED_BLOCK, self.block)
        node.methods.register(SEED_UNBLOCK, self.unblock)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        store = self.node.store
        for author in self.policy.block_authors:  # blocked by hand in config.toml
            await trio.to_thread.run_sync(purge_author, store, public_key_of(author))
        self._refused |= await trio.to_thread.run_sync(blocked_cids, store)
        task_status.started()
        await trio.sleep_forever()

    def on_change(self, listener: PolicyListener) -> None:
        """Call ``listener(old, new)`` (on the trio thread) after every change."""
        self._listeners.append(listener)

    # -- the hooks (called on the trio thread or in workers; never block) ------------

    def refuses_record(self, record: SignedRecord, peer_id: str | None = None) -> bool:
        """Whether ``record`` (received from ``peer_id``) must be neither stored nor forwarded."""
        if record.author_id in self.policy.block_authors or (
            peer_id is not None and peer_id in self.policy.block_peers
        ):
            self._stats["records_refused"] += 1
            if len(self._refused) < MAX_REFUSED_MEMORY:
                self._refused.add(record.id)
            return True
        return False

    def refused_already(self, cid: Cid) -> bool:
        """Whether ``cid`` is a record (or content) refused under the policies in force.

        What sync need not fetch again; not counted as a refusal.
        """
        return cid in self._refused

    def refuses_block(self, cid: Cid) -> bool:
        """Whether the block ``cid`` must not be served (a blocked author's record or content)."""
        if self.refused_already(cid):
            self._stats["blocks_refused"] += 1
            return True
        return False

    def refuses_peer(self, peer_id: str) -> bool:
        if peer_id in self.policy.block_peers:
            self._stats["peers_refused"] += 1
            return True
        return False

    # -- RPC ------------------------------------------------------------------------

    async def show(self, params: SeedShowParams, call: Call) -> dict[str, object]:
        info = {}
        for service in self.node.services:
            node_info = getattr(service, "node_info", None)
            if callable(node_info):
                info.update(node_info())
        addresses = info.get("listen_addrs", [])
        return {**self.policy.to_json(), "bootstrap_addrs": addresses}

    async def set_policy(self, params: SeedSetParams, call: Call) -> dict[str, object]:
        return await self.edit(SEED_SET.name, params)

    async def block(self, params: SeedBlockParams, call: Call) -> dict[str, object]:
        return await self.edit(SEED_BLOCK.name, params)

    async def unblock(self, params: SeedBlockParams, call: Call) -> dict[str, object]:
        return await self.edit(SEED_UNBLOCK.name, params)

    async def edit(self, method: str, params: SeedSetParams | SeedBlockParams) -> dict[str, object]:
        """Apply one edit: write ``config.toml``, then put the new policy in force."""
        async with self._lock:  # one read-modify-write of config.toml at a time
            old = self.policy
            try:
                new, changed = changed_policy(old, method, params, self.node.identity.author_id)
            except PolicyError as error:
                raise RpcError(INVALID_INPUT, str(error), {"reason": "self"}) from None
            if changed:
                await trio.to_thread.run_sync(write_policy, self.node.data_dir, new)
                await self._apply(old, new)
        result = new.to_json()
        if isinstance(params, SeedBlockParams):
            result["changed"] = changed
        return result

    async def _apply(self, old: SeedPolicy, new: SeedPolicy) -> None:
        store = self.node.store
        for author in sorted(new.block_authors - old.block_authors):
            key = public_key_of(author)
            deleted = await trio.to_thread.run_sync(purge_author, store, key)
            logger.info("blocked author %s: %d records deleted", author, deleted)
        for author in sorted(old.block_authors - new.block_authors):
            await trio.to_thread.run_sync(unblock_author, store, public_key_of(author))
        self.policy = new
        self._refused = await trio.to_thread.run_sync(blocked_cids, store)
        for listener in self._listeners:
            listener(old, new)

    def statistics(self) -> Mapping[str, object]:
        return {
            "mode": self.policy.mode,
            "max_content_bytes": self.policy.max_content_bytes,
            "blocked_authors": len(self.policy.block_authors),
            "blocked_peers": len(self.policy.block_peers),
            **self._stats,
        }
