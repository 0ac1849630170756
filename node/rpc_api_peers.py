"""The peer methods and events of the control interface: ``peers.*``, ``peer.*``.

Part of the definitions of ``node.rpc_api`` (which lists the methods in
``METHODS`` and the events in ``EVENTS``); served by ``node.network_service``,
which answers the methods and publishes the events.
"""

from __future__ import annotations

from typing import Any, Final

from node.rpc_examples import EXAMPLE_AUTHOR
from node.rpc_params import ConnectParams, NoParams
from node.rpc_schema import (
    INVALID_INPUT,
    NETWORK_ERROR,
    EventSpec,
    Example,
    MethodSpec,
    ResultField,
)

# --- examples ------------------------------------------------------------------

_PEER_ADDR = f"/ip4/203.0.113.7/tcp/4747/p2p/{EXAMPLE_AUTHOR}"

# --- methods -------------------------------------------------------------------

PEERS_LIST: Final = MethodSpec(
    name="peers.list",
    params=NoParams,
    summary="The peers this node is connected to.",
    result=(
        ResultField(
            "peers",
            '[{"peer_id": PeerID, "addrs": [multiaddr], "streams": integer}]',
            "One entry per connected peer: its id, the remote ends of its connections"
            " and the streams open with it.",
        ),
    ),
    example=Example(
        {},
        {
            "peers": [
                {"peer_id": EXAMPLE_AUTHOR, "addrs": ["/ip4/203.0.113.7/tcp/4747"], "streams": 1}
            ]
        },
    ),
    errors=(NETWORK_ERROR,),
)

PEERS_CONNECT: Final = MethodSpec(
    name="peers.connect",
    params=ConnectParams,
    summary="Dial a peer and stay connected to it.",
    result=(ResultField("peer_id", "PeerID", "The peer connected to."),),
    example=Example({"address": _PEER_ADDR}, {"peer_id": EXAMPLE_AUTHOR}),
    errors=(INVALID_INPUT, NETWORK_ERROR),
    notes="Returns at once when already connected.",
)

PEERS_METHODS: Final[tuple[MethodSpec[Any], ...]] = (PEERS_LIST, PEERS_CONNECT)

# --- events --------------------------------------------------------------------

PEER_CONNECTED: Final = EventSpec(
    name="peer.connected",
    summary="A peer connected (published as its first connection opens).",
    data=(ResultField("peer_id", "PeerID", "The peer."),),
    example={"peer_id": EXAMPLE_AUTHOR},
)

PEER_DISCONNECTED: Final = EventSpec(
    name="peer.disconnected",
    summary="A peer's last connection closed (published as it closes).",
    data=(ResultField("peer_id", "PeerID", "The peer."),),
    example={"peer_id": EXAMPLE_AUTHOR},
)
