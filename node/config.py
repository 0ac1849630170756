"""The node's configuration: ``config.toml`` in the data directory.

Every key is optional and has a default that works out of the box; the table
``KEYS`` is the single definition of the keys (their section, default,
validation and documentation), from which the commented default file is
written and against which ``docs/config.md`` is tested. ``remixnet daemon``
writes the default file on first start when there is none.

Invariants: ``load_config`` returns a fully validated ``Config`` or raises
``ConfigError`` with one line naming the file and the key; unknown sections
and keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from multiaddr import Multiaddr

from node.datadir import DataDir, DataDirError, fsync_directory
from protocol.errors import ProtocolError
from protocol.identity import public_key_of

CONFIG_FILE: Final = "config.toml"


class ConfigError(DataDirError):
    """``config.toml`` is not valid (a user error: one line, names the key)."""


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4747",)
    bootstrap: tuple[str, ...] = ()
    mdns: bool = False
    fetch_window_mib: int = 32
    fetch_give_up_seconds: int = 60
    max_connections: int = 300


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    rpc_clients: int = 256
    rpc_message_bytes: int = 1 << 20
    rpc_requests_per_client: int = 16
    rpc_queue: int = 1024


@dataclass(frozen=True, slots=True)
class RpcConfig:
    tcp: str = ""
    token_file: str = "rpc.token"


@dataclass(frozen=True, slots=True)
class GossipSettings:
    auto_fetch: str = "lineage-of-mine"
    sync_interval: int = 300


SEED_MODES: Final = ("off", "authors", "collabs", "followed", "everything")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class SeedSettings:
    """Seeding policies (``node.seed``) and the ``daemon --seed`` profile."""

    mode: str = "off"
    max_content_bytes: int = 0
    block_authors: tuple[str, ...] = ()
    block_peers: tuple[str, ...] = ()
    replication_concurrency: int = 4
    replication_attempts: int = 8
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4747",)
    max_connections: int = 2000
    reprovide_hours: int = 12


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: str = "text"


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    listen: str = ""


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """The storage quota and garbage collection (``node.gc``, ``node.storage_service``)."""

    quota: int = 0  # bytes of packs; 0 = no limit
    gc_high_water: float = 0.9  # collect garbage when this fraction of the quota is used
    gc_grace: int = 60  # seconds blocks just stored stay safe from GC (until pinned)


@dataclass(frozen=True, slots=True)
class Config:
    network: NetworkConfig = field(default_factory=NetworkConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    gossip: GossipSettings = field(default_factory=GossipSettings)
    seed: SeedSettings = field(default_factory=SeedSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    profile: str = "node"  # not a key: "seed" under `remixnet daemon --seed`

    def token_path(self, data_dir: DataDir) -> Path:
        """Where the TCP bearer token is kept (relative paths are in the data dir)."""
        return data_dir.root / Path(self.rpc.token_file).expanduser()

    def tcp_address(self) -> tuple[str, int] | None:
        """(host, port) of the TCP listener, or None when it is off."""
        return None if not self.rpc.tcp else _split_host_port(self.rpc.tcp)


Validator = Callable[[object], object]


@dataclass(frozen=True, slots=True)
class Key:
    section: str
    name: str
    doc: str
    validate: Validator

    @property
    def default(self) -> object:
        return getattr(getattr(Config(), self.section), self.name)


def _integer(low: int, high: int) -> Validator:
    def validate(value: object) -> object:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return validate


def _boolean(value: object) -> object:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _multiaddrs(*, peer: bool) -> Validator:
    def validate(value: object) -> object:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError("must be a list of multiaddr strings")
        for text in value:
            try:
                protocols = [protocol.name for protocol in Multiaddr(text).protocols()]
            except ValueError as error:
                raise ValueError(f"{text!r} is not a multiaddr ({error})") from None
            if "tcp" not in protocols:
                raise ValueError(f"{text!r} has no /tcp/ part")
            if peer and "p2p" not in protocols:
                raise ValueError(f"{text!r} must end in /p2p/<PeerID>")
        return tuple(value)

    return validate


def _split_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not HOST:PORT with an IP address") from None
    if not address.is_loopback:
        raise ValueError(f"{text!r} is not a loopback address: only 127.0.0.0/8 and ::1 allowed")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} has no valid port")
    return host, int(port)


def _tcp_listener(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError('must be a string: "" (off) or "127.0.0.1:PORT"')
    if value:
        _split_host_port(value)
    return value


def _auto_fetch(value: object) -> object:
    choices = ("none", "lineage-of-mine", "followed", "all")
    if value not in choices:
        raise ValueError("must be one of " + ", ".join(f'"{choice}"' for choice in choices))
    return value


def _choice(*choices: str) -> Validator:
    def validate(value: object) -> object:
        if value not in choices:
            raise ValueError("must be one of " + ", ".join(f'"{choice}"' for choice in choices))
        return value

    return validate


def _peer_ids(value: object) -> object:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("must be a list of PeerIDs (12D3KooW…)")
    for text in value:
        try:
            public_key_of(text)
        except ProtocolError:
            raise ValueError(f"{text!r} is not an Ed25519 PeerID (12D3KooW…)") from None
    return tuple(dict.fromkeys(value))


def _metrics_listener(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError('must be a string: "" (off) or "127.0.0.1:PORT"')
    if value:
        host, _port = _split_host_port(value)
        if host != "127.0.0.1":
            raise ValueError(f"{value!r}: the metrics endpoint listens on 127.0.0.1 only")
    return value


_BYTE_UNITS: Final = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}


def parse_byte_size(value: object) -> int:
    """``50GiB``, ``"1.5 TB"``, ``"500MB"`` or an integer -> bytes. Raises ``ValueError``."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), ""
    elif isinstance(value, str):
        text = value.strip().lower()
        digits = text.rstrip("kmgtib ")
        number_text, unit = digits.strip(), text[len(digits) :].strip()
        try:
            number = float(number_text)
        except ValueError:
            number = -1.0
    else:
        number, unit = -1.0, ""
    if number < 0 or unit not in _BYTE_UNITS or number != number:
        raise ValueError('must be a size in bytes: an integer or a string like "50GiB", "500MB"')
    size = int(number * _BYTE_UNITS[unit])
    if size > 1 << 60:
        raise ValueError("is too large")
    return size


def _fraction(low: float, high: float) -> Validator:
    def validate(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number from {low} to {high}")
        if not low <= value <= high:
            raise ValueError(f"must be a number from {low} to {high}")
        return float(value)

    return validate


def _file_name(value: object) -> object:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError("must be a file name or path")
    return value


KEYS: Final = (
    Key(
        "network",
        "listen",
        "Multiaddrs the node listens on for peers (TCP; port 0: any free port).",
        _multiaddrs(peer=False),
    ),
    Key(
        "network",
        "bootstrap",
        "Peers dialled at start, usually seed nodes: multiaddrs ending in /p2p/<PeerID>.",
        _multiaddrs(peer=True),
    ),
    Key("network", "mdns", "Find peers on the local network with mDNS.", _boolean),
    Key(
        "network",
        "fetch_window_mib",
        "MiB requested from peers and not yet stored, per fetch (bounds memory).",
        _integer(1, 1024),
    ),
    Key(
        "network",
        "fetch_give_up_seconds",
        "Seconds a fetch waits without any progress (no provider, no block) before failing.",
        _integer(1, 3600),
    ),
    Key("limits", "rpc_clients", "RPC clients connected at once.", _integer(1, 100_000)),
    Key(
        "limits",
        "rpc_message_bytes",
        "Largest JSON-RPC request accepted, in bytes.",
        _integer(1024, 64 << 20),
    ),
    Key(
        "limits",
        "rpc_requests_per_client",
        "Requests one RPC connection may have in progress at once.",
        _integer(1, 10_000),
    ),
    Key(
        "limits",
        "rpc_queue",
        "Messages waiting to be sent to one RPC client; a subscriber that lets it fill up"
        " is disconnected.",
        _integer(8, 1_000_000),
    ),
    Key(
        "rpc",
        "tcp",
        'Also serve JSON-RPC on TCP at "127.0.0.1:PORT" (loopback only; needs the token);'
        ' "" = off.',
        _tcp_listener,
    ),
    Key(
        "rpc",
        "token_file",
        "File holding the TCP bearer token (mode 0600; relative to the data directory);"
        " created when missing.",
        _file_name,
    ),
    Key(
        "gossip",
        "auto_fetch",
        'Content fetched for records announced by peers: "none", "lineage-of-mine" (remixes'
        ' of my works), "followed" (those and works of followed authors) or "all".',
        _auto_fetch,
    ),
    Key(
        "gossip",
        "sync_interval",
        "Seconds between catch-up syncs with a few connected peers (besides one on each"
        " connection).",
        _integer(1, 86_400),
    ),
    Key(
        "network",
        "max_connections",
        "Connections to peers at most, inbound and outbound (under `daemon --seed`:"
        " seed.max_connections).",
        _integer(60, 100_000),
    ),
    Key(
        "seed",
        "mode",
        'What this node replicates (fetches, pins, provides) with its ancestors: "off",'
        ' "authors" (works of followed authors), "collabs" (contributions to followed collabs),'
        ' "followed" (both) or "everything". Edit live with `remixnet seed set`.',
        _choice(*SEED_MODES),
    ),
    Key(
        "seed",
        "max_content_bytes",
        "Largest content replicated for one record, in bytes; 0 = no limit.",
        _integer(0, 1 << 50),
    ),
    Key(
        "seed",
        "block_authors",
        "Authors whose records are neither stored, forwarded nor served"
        " (`remixnet seed block author ID`).",
        _peer_ids,
    ),
    Key(
        "seed",
        "block_peers",
        "Peers refused and disconnected, whose announcements are dropped"
        " (`remixnet seed block peer ID`).",
        _peer_ids,
    ),
    Key(
        "seed",
        "replication_concurrency",
        "Records replicated at once.",
        _integer(1, 64),
    ),
    Key(
        "seed",
        "replication_attempts",
        "Attempts per record before replication gives up on it (exponential backoff between).",
        _integer(1, 100),
    ),
    Key(
        "seed",
        "listen",
        "Multiaddrs a `daemon --seed` listens on (public by default; `--listen` overrides).",
        _multiaddrs(peer=False),
    ),
    Key(
        "seed",
        "max_connections",
        "Connections to peers at most under `daemon --seed`.",
        _integer(60, 100_000),
    ),
    Key(
        "seed",
        "reprovide_hours",
        "Hours between DHT announcements of every pinned root under `daemon --seed`.",
        _integer(1, 23),
    ),
    Key(
        "log",
        "level",
        'Least severe log messages written: "debug", "info", "warning", "error".',
        _choice(*LOG_LEVELS),
    ),
    Key(
        "log",
        "format",
        '"text" (one readable line per message) or "json" (one JSON object per line).',
        _choice("text", "json"),
    ),
    Key(
        "metrics",
        "listen",
        'Serve Prometheus metrics (GET /metrics) on "127.0.0.1:PORT"; "" = off.',
        _metrics_listener,
    ),
    Key(
        "storage",
        "quota",
        'Bytes the block packs may hold: an integer or a string like "50GiB" or "500MB";'
        " 0 = no limit. Fetches that would exceed it fail once garbage collection cannot"
        " make room.",
        parse_byte_size,
    ),
    Key(
        "storage",
        "gc_high_water",
        "Collect garbage automatically once this fraction of the quota is used.",
        _fraction(0.01, 1.0),
    ),
    Key(
        "storage",
        "gc_grace",
        "Seconds blocks just stored (by `add`, an import, a fetch) are safe from garbage"
        " collection even before they are pinned.",
        _integer(0, 86_400),
    ),
)

_SECTIONS: Final = ("network", "limits", "rpc", "gossip", "seed", "log", "metrics", "storage")


def config_path(data_dir: DataDir) -> Path:
    return data_dir.root / CONFIG_FILE


def parse_config(text: str, *, source: str = CONFIG_FILE) -> Config:
    """Validate TOML text into a ``Config``. Raises ``ConfigError``."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: {error}") from None
    for section, table in document.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {section} must be a [{section}] table")
    values: dict[str, dict[str, object]] = {section: {} for section in _SECTIONS}
    known = {(key.section, key.name): key for key in KEYS}
    for section in _SECTIONS:
        for name, value in document.get(section, {}).items():
            key = known.get((section, name))
            if key is None:
                raise ConfigError(f"{source}: unknown key {name!r} in [{section}]")
            try:
                values[section][name] = key.validate(value)
            except ValueError as error:
                raise ConfigError(f"{source}: [{section}] {name}: {error}") from None
    return Config(
        network=NetworkConfig(**values["network"]),  # type: ignore[arg-type]
        limits=LimitsConfig(**values["limits"]),  # type: ignore[arg-type]
        rpc=RpcConfig(**values["rpc"]),  # type: ignore[arg-type]
        gossip=GossipSettings(**values["gossip"]),  # type: ignore[arg-type]
        seed=SeedSettings(**values["seed"]),  # type: ignore[arg-type]
        log=LogSettings(**values["log"]),  # type: ignore[arg-type]
        metrics=MetricsSettings(**values["metrics"]),  # type: ignore[arg-type]
        storage=StorageSettings(**values["storage"]),  # type: ignore[arg-type]
    )


def load_config(data_dir: DataDir) -> Config:
    """The data directory's configuration; defaults when there is no file."""
    path = config_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read it ({error})") from None
    return parse_config(text, source=str(path))


def _toml_value(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def section_text(section: str, values: object) -> str:
    """``[section]`` with every key of ``section`` set to its value in ``values``, commented."""
    lines = [f"[{section}]"]
    for key in KEYS:
        if key.section == section:
            lines.append(f"# {key.doc}")
            lines.append(f"{key.name} = {_toml_value(getattr(values, key.name))}")
    return "\n".join(lines) + "\n"


def default_config_text() -> str:
    """The commented default ``config.toml`` (every key, with its default value)."""
    lines = [
        "# remixnet node configuration (docs/config.md describes every key).",
        "# Every key is optional: delete one to get its default back.",
    ]
    for section in _SECTIONS:
        lines += ["", f"[{section}]"]
        for key in KEYS:
            if key.section == section:
                lines.append(f"# {key.doc}")
                lines.append(f"{key.name} = {_toml_value(key.default)}")
    return "\n".join(lines) + "\n"


def ensure_config_file(data_dir: DataDir) -> bool:
    """Write the default ``config.toml`` unless one exists; True if written now.

    Written to a temporary file, fsynced and renamed, so a crash leaves no
    half-written configuration.
    """
    path = config_path(data_dir)
    if path.exists():
        return False
    write_atomically(path, default_config_text().encode(), mode=0o644)
    return True


def ensure_token(path: Path) -> str:
    """The TCP bearer token in ``path`` (mode 0600), created when missing.

    Raises ``ConfigError`` when the file is readable by others or empty.
    """
    if not path.exists():
        write_atomically(path, (secrets.token_urlsafe(32) + "\n").encode(), mode=0o600)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise ConfigError(f"{path} is empty: delete it to get a new token")
    return token


def write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data``: temporary file, fsync, rename, fsync of the directory."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what was asked for
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)
    fsync_directory(path.parent)
