"""config.toml parsing and docs/config.md; docs/rpc.md against the method definitions."""

from __future__ import annotations

import json
import re

import pytest

from node import rpc_docs
from node.cli_daemon import parse_rpc_arguments
from node.config import KEYS, Config, ConfigError, default_config_text, parse_config
from node.rpc_api import ERRORS, EVENTS, METHODS
from tests.conftest import REPO

PEER = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"


def test_default_file_parses_to_the_defaults() -> None:
    assert parse_config(default_config_text()) == Config()
    assert parse_config("") == Config()


def test_values_are_read_and_checked() -> None:
    config = parse_config(
        '[network]\nlisten = ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/4747"]\n'
        f'bootstrap = ["/ip4/10.0.0.1/tcp/4747/p2p/{PEER}"]\n'
        '[limits]\nrpc_clients = 3\n[rpc]\ntcp = "127.0.0.1:5190"\n'
    )
    assert config.network.listen == ("/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/4747")
    assert config.limits.rpc_clients == 3
    assert config.tcp_address() == ("127.0.0.1", 5190)
    assert parse_config('[rpc]\ntcp = "[::1]:0"').tcp_address() == ("::1", 0)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[network\n", "config.toml"),
        ("[nettwork]\n", "[nettwork]"),
        ("[limits]\nrpc_client = 3\n", "'rpc_client'"),
        ("[limits]\nrpc_clients = 0\n", "rpc_clients"),
        ("[limits]\nrpc_clients = true\n", "rpc_clients"),
        ('[network]\nlisten = ["/ip4/nope/tcp/1"]\n', "listen"),
        ('[network]\nlisten = ["/ip4/1.2.3.4/udp/1"]\n', "/tcp/"),
        ('[network]\nbootstrap = ["/ip4/1.2.3.4/tcp/1"]\n', "/p2p/"),
        ('[rpc]\ntcp = "0.0.0.0:5190"\n', "loopback"),
        ('[rpc]\ntcp = "127.0.0.1:99999"\n', "port"),
        ("network = 1\n", "table"),
    ],
)
def test_errors_are_one_line_naming_the_key(text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    message = str(caught.value)
    assert named in message
    assert "\n" not in message


def test_docs_config_lists_every_key_with_its_default() -> None:
    doc = (REPO / "docs" / "config.md").read_text()
    for key in KEYS:
        default = key.default
        shown = json.dumps(list(default) if isinstance(default, tuple) else default)
        row = f"| `{key.name}` | `{shown}` |"
        assert row in doc, f"docs/config.md lacks {row}"
        assert f"## `[{key.section}]`" in doc
    documented = set(re.findall(r"^\| `([a-z_]+)` \| `", doc, re.M))
    assert documented == {key.name for key in KEYS}


def test_docs_rpc_is_generated_from_the_definitions() -> None:
    text = rpc_docs.DOC_PATH.read_text()
    assert rpc_docs.regenerate(text) == text, "run: python -m node.rpc_docs --write"
    for spec in METHODS:
        assert f"### `{spec.name}`" in text
    for event in EVENTS:
        assert f"### `{event.name}`" in text
    for error in ERRORS:
        assert f"| {error.code} |" in text


def test_examples_agree_with_the_definitions() -> None:
    for spec in METHODS:
        spec.parse_params(dict(spec.example.params))  # raises if the example is invalid
        assert set(spec.example.result) == {field.name for field in spec.result}, spec.name
        assert spec.summary.endswith(".")
    for event in EVENTS:
        assert set(event.example) == {field.name for field in event.data}, event.name


def test_rpc_command_arguments() -> None:
    assert parse_rpc_arguments(()) is None
    assert parse_rpc_arguments(('{"cid": "x"}',)) == {"cid": "x"}
    assert parse_rpc_arguments(('["x", 1]',)) == ["x", 1]
    assert parse_rpc_arguments(("tag=poetry", "limit=5", "title=a=b")) == {
        "tag": "poetry",
        "limit": 5,
        "title": "a=b",
    }
    assert parse_rpc_arguments(("bafk", "0", "null")) == ["bafk", 0, None]


def test_the_systemd_unit_runs_the_daemon() -> None:
    unit = (REPO / "docs" / "remixnet.service").read_text()
    assert re.search(r"^ExecStart=.*/remixnet daemon\b", unit, re.M)
    assert "Type=notify" in unit
    assert "WantedBy=default.target" in unit
