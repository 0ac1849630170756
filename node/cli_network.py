"""The ``remixnet`` commands on the network: peers, connect.

Attached to the ``cli`` group of ``node.cli`` (which imports this module at
its end). They need a running daemon (the network lives in it) and fail with
one line when none runs. Fetching is ``remixnet get`` (``node.cli_content``),
which fetches from peers what the local store lacks.
"""

from __future__ import annotations

from typing import Any

import click

from node import render
from node.cli import cli, json_option, no_daemon, settings
from node.client import DaemonGone, connect_to_daemon
from node.jsonrpc import RpcError
from node.rpc_api_peers import PEERS_CONNECT, PEERS_LIST


def call_daemon(method: str, params: dict[str, Any] | None = None) -> Any:
    """``method`` called on the running daemon; its errors become one CLI line."""
    data_dir = settings().data_dir
    client = connect_to_daemon(data_dir)
    if client is None:
        raise no_daemon(data_dir)
    with client:
        try:
            return client.call(method, params)
        except RpcError as error:
            raise click.ClickException(error.message) from None
        except DaemonGone as error:
            raise click.ClickException(str(error)) from None


@cli.command()
@json_option
def peers() -> None:
    """List the peers the daemon is connected to."""
    options = settings()
    connected = call_daemon(PEERS_LIST.name)["peers"]
    if options.json:
        render.print_json(connected)
        return
    if not connected:
        render.stderr.print("no peers connected", markup=False)
    for peer in connected:
        addrs = ", ".join(peer["addrs"]) or "-"
        render.stdout.print(f"{peer['peer_id']}  {addrs}", markup=False)


@cli.command()
@click.argument("multiaddr")
@json_option
def connect(multiaddr: str) -> None:
    """Dial the peer at MULTIADDR (/ip4/HOST/tcp/PORT/p2p/PEER_ID) and stay connected."""
    options = settings()
    peer_id = call_daemon(PEERS_CONNECT.name, {"address": multiaddr})["peer_id"]
    if options.json:
        render.print_json({"peer_id": peer_id})
    else:
        render.stdout.print(f"connected to {peer_id}", markup=False)
