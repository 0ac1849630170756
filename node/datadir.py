"""The data directory: where a node keeps its identity, database and blocks.

Layout (all under one directory, by default platformdirs' user data dir)::

    identity.key   32-byte Ed25519 seed, mode 0600 (also the libp2p host key)
    remixnet.db    SQLite database (WAL mode)
    blocks/        content-addressed block files, sharded by CID
    tmp/           half-written files; anything here at start-up is garbage

The location comes from ``--data-dir``, else ``$REMIXNET_DATA_DIR``, else the
platform's user data directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.identity import SEED_SIZE, author_id, private_key_from_seed, public_key_bytes

ENV_VAR = "REMIXNET_DATA_DIR"
KEY_FILE = "identity.key"
DATABASE_FILE = "remixnet.db"


class DataDirError(Exception):
    """The data directory is missing, uninitialised or unusable (a user error)."""


def default_data_dir() -> Path:
    """``$REMIXNET_DATA_DIR`` if set, else the platform's user data directory."""
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return Path(platformdirs.user_data_dir("remixnet", appauthor=False))


@dataclass(frozen=True, slots=True)
class Identity:
    """The artist's signing key and the ids derived from it."""

    private_key: Ed25519PrivateKey
    seed: bytes

    @property
    def public_key(self) -> bytes:
        return public_key_bytes(self.private_key)

    @property
    def author_id(self) -> str:
        return author_id(self.public_key)


@dataclass(frozen=True, slots=True)
class DataDir:
    """Paths inside one node's data directory."""

    root: Path

    @property
    def key_file(self) -> Path:
        return self.root / KEY_FILE

    @property
    def database(self) -> Path:
        return self.root / DATABASE_FILE

    @property
    def blocks(self) -> Path:
        return self.root / "blocks"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def is_initialised(self) -> bool:
        return self.key_file.is_file()

    def init(self, seed: bytes | None = None) -> tuple[Identity, bool]:
        """Create the directory and a new identity unless one exists.

        Returns the identity and whether it was created now. The key is written
        to a temporary file with mode 0600, fsynced and renamed, so a crash
        leaves either no key or a whole one.
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.blocks.mkdir(exist_ok=True)
        self.tmp.mkdir(exist_ok=True)
        if self.is_initialised():
            return self.load_identity(), False
        seed = seed if seed is not None else os.urandom(SEED_SIZE)
        private_key_from_seed(seed)  # validates the length before anything is written
        partial = self.tmp / (KEY_FILE + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, seed)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, self.key_file)
        fsync_directory(self.root)
        return self.load_identity(), True

    def load_identity(self) -> Identity:
        """Read the key file. Raises ``DataDirError`` with a one-line reason."""
        if not self.is_initialised():
            raise DataDirError(f"{self.root} is not initialised: run `remixnet init`")
        mode = self.key_file.stat().st_mode & 0o777
        if mode & 0o077:
            raise DataDirError(
                f"{self.key_file} is readable by others (mode {mode:o}): chmod 600 it"
            )
        seed = self.key_file.read_bytes()
        if len(seed) != SEED_SIZE:
            raise DataDirError(f"{self.key_file} is not a remixnet key ({len(seed)} bytes)")
        return Identity(private_key_from_seed(seed), seed)

    def require_initialised(self) -> None:
        if not self.is_initialised():
            raise DataDirError(f"{self.root} is not initialised: run `remixnet init`")


def fsync_directory(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
