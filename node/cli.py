"""The ``remixnet`` command: the group, its global options, ``init``, ``id`` and error handling.

A thin layer: parse arguments, ask a node, render the result. The commands
live in ``node.cli_content`` (the store: add, remix, show, cat, get, ls,
lineage, export, import, fsck), ``node.cli_daemon`` (daemon, stop, status,
rpc, events) and ``node.cli_collab`` (collabs and productions; these still
open the store directly), all imported at the end of this module. A store
command goes through the daemon when one runs on the data directory and
works on the store directly when none does (``Settings.backend``); either way
it prints the same. Every command takes ``--json``. Every error a user can
cause is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import click

from node import render
from node.cli_backend import Backend, DaemonError, describe
from node.cli_daemon_backend import DaemonBackend
from node.cli_store_backend import StoreBackend
from node.client import connect_to_daemon
from node.datadir import DataDir, DataDirError, default_data_dir
from node.store import NotFound, Store
from protocol.cid import Cid
from protocol.errors import ProtocolError

EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2

F = TypeVar("F", bound=Callable[..., Any])
# auto: the daemon when one answers, else the store; online: the daemon or fail; offline: the store.
Mode = Literal["auto", "online", "offline"]


def no_daemon(data_dir: DataDir) -> click.ClickException:
    return click.ClickException(
        f"no daemon is running on {data_dir.root} (start one with `remixnet daemon`)"
    )


@dataclass(slots=True)
class Settings:
    data_dir: DataDir
    json: bool = False
    mode: Mode = "auto"

    def open_store(self) -> Store:
        return Store(self.data_dir)

    @contextmanager
    def backend(self) -> Iterator[Backend]:
        """The running daemon, else the store itself (as ``mode`` says); closed on exit."""
        node: Backend | None = None
        if self.mode != "offline":
            client = connect_to_daemon(self.data_dir)
            if client is not None:
                node = DaemonBackend(client)
            elif self.mode == "online":
                raise no_daemon(self.data_dir)
        if node is None:
            node = StoreBackend(self.data_dir)
        try:
            yield node
        finally:
            node.close()


def json_option(command: F) -> F:
    """Add ``--json`` (machine-readable output on stdout) to a command."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
    @functools.wraps(command)
    def wrapper(*args: Any, as_json: bool, **kwargs: Any) -> Any:
        click.get_current_context().find_object(Settings).json = as_json  # type: ignore[union-attr]
        return command(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    found = click.get_current_context().find_object(Settings)
    assert found is not None
    return found


def parse_cid(text: str) -> Cid:
    return Cid.parse(text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Node data directory [default: $REMIXNET_DATA_DIR or the platform's user data dir].",
)
@click.option(
    "--online",
    "mode",
    flag_value="online",
    help="Go through the running daemon; fail when none runs.",
)
@click.option(
    "--offline",
    "mode",
    flag_value="offline",
    help="Work on the data directory directly, even when a daemon runs.",
)
@click.version_option(package_name="remixnet")
@click.pass_context
def cli(context: click.Context, data_dir: Path | None, mode: Mode | None) -> None:
    """remixnet: publish, remix and credit works of art, peer to peer.

    Commands that read or write the store go through the daemon when one runs
    on the data directory, and work on the data directory directly when none
    does.
    """
    root = DataDir(data_dir if data_dir is not None else default_data_dir())
    context.obj = Settings(root, mode=mode or "auto")


@cli.command()
@json_option
def init() -> None:
    """Create the data directory and the artist's identity (once)."""
    options = settings()
    identity, created = options.data_dir.init()
    with options.open_store():
        pass  # creates and migrates the database
    if options.json:
        render.print_json(
            {
                "author": identity.author_id,
                "data_dir": str(options.data_dir.root),
                "created": created,
            }
        )
        return
    verb = "initialised" if created else "already initialised"
    render.stdout.print(f"{verb} {options.data_dir.root}", markup=False)
    render.stdout.print(f"author id: {identity.author_id}", markup=False)


@cli.command(name="id")
@json_option
def identity_command() -> None:
    """Print this node's author id (its libp2p PeerID) and data directory."""
    options = settings()
    with options.backend() as node:
        author = node.author()
    if options.json:
        render.print_json({"author": author, "data_dir": str(options.data_dir.root)})
    else:
        render.stdout.print(author, markup=False)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn every user error into one line."""
    try:
        cli.main(args=argv, prog_name="remixnet", standalone_mode=False)
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except click.ClickException as error:
        fail(
            error.format_message(),
            EXIT_USAGE if isinstance(error, click.UsageError) else error.exit_code,
        )
    except click.exceptions.Exit as exit_request:
        sys.exit(exit_request.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()  # `remixnet cat … | head`: the reader left; nothing to report
        sys.exit(EXIT_ERROR)
    except (DataDirError, NotFound, DaemonError) as error:
        fail(str(error))
    except ProtocolError as error:
        fail(f"{describe(type(error))}: {error}")
    except OSError as error:
        fail(f"{error.filename}: {error.strerror}" if error.filename else str(error))


def fail(message: str, code: int = EXIT_ERROR) -> None:
    sys.stderr.write(f"remixnet: error: {message}\n")
    sys.exit(code)


# The other commands register themselves on ``cli`` (they import it from here):
# add, remix, show, cat, get, ls, lineage, fsck, export, import (cli_content); daemon, stop,
# status, rpc, events (cli_daemon); collab, production, credits, ack, graph (cli_collab);
# peers, connect (cli_network); follow, unfollow, following, feed, profile,
# notifications (cli_social); seed (cli_seed).
from node import (  # noqa: E402,F401
    cli_collab,
    cli_content,
    cli_daemon,
    cli_network,
    cli_pins,  # pin add|rm|ls, gc
    cli_seed,  # seed show|set|block|unblock
    cli_social,
)
