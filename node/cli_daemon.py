"""The ``remixnet`` commands around the daemon: daemon, stop, status, rpc, events.

Attached to the ``cli`` group of ``node.cli`` (which imports this module at
its end). Like every command: one clear line and a non-zero exit for any error
a user can cause, ``--json`` for machine-readable output. The daemon commands
are thin layers over ``node.daemon``, ``node.daemon_process`` and the
blocking ``node.client.RpcClient``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Final, cast

import click
import trio

from node import render
from node.cli import cli, json_option, no_daemon, settings
from node.client import DaemonGone, RpcClient, connect_to_daemon
from node.config import KEYS, Config, ensure_config_file, load_config
from node.daemon_process import (
    DaemonLock,
    configure_logging,
    log_path,
    read_node_info,
    rpc_socket_path,
    running_pid,
    signal_ready,
    start_detached,
    terminate,
    wait_until_stopped,
)
from node.datadir import DataDir
from node.jsonrpc import RpcError

KEYS_BY_NAME: Final = {(key.section, key.name): key for key in KEYS}
EXIT_NOT_RUNNING: Final = 3  # `status` when no daemon runs (as LSB init scripts do)
READY_SECONDS: Final = 60.0


def require_daemon(data_dir: DataDir) -> RpcClient:
    client = connect_to_daemon(data_dir)
    if client is None:
        raise no_daemon(data_dir)
    return client


def call(client: RpcClient, method: str, params: Any = None) -> Any:
    """``client.call`` with the daemon's errors turned into one CLI line."""
    try:
        return client.call(method, params)
    except RpcError as error:
        raise click.ClickException(f"{method}: {error.message} (code {error.code})") from None
    except DaemonGone as error:
        raise click.ClickException(str(error)) from None


@cli.command()
@click.option("--detach", is_flag=True, help="Run in the background; log to DATA_DIR/daemon.log.")
@click.option("--init", "initialise", is_flag=True, help="Create the identity if there is none.")
@click.option("--ready-fd", type=int, hidden=True)
@click.option(
    "--seed",
    "seed_profile",
    is_flag=True,
    help="Run as a seed node: public listen address ([seed] listen), more connections,"
    " periodic DHT re-announcement of every pin.",
)
@click.option(
    "--listen",
    "listen",
    multiple=True,
    metavar="MULTIADDR",
    help="Listen on MULTIADDR instead of the configured addresses (repeatable).",
)
@json_option
def daemon(
    detach: bool,
    initialise: bool,
    ready_fd: int | None,
    seed_profile: bool,
    listen: tuple[str, ...],
) -> None:
    """Run the node until SIGINT, SIGTERM or `remixnet stop`.

    Settings come from DATA_DIR/config.toml (written with the defaults on
    first start; see docs/config.md). Prints the author id and where the
    JSON-RPC socket is once ready. With --seed, runs the seed profile: it
    listens on [seed] listen (0.0.0.0:4747 by default) and is meant to be in
    others' [network] bootstrap lists.
    """
    options = settings()
    data_dir = options.data_dir
    if initialise:
        data_dir.init()
    else:
        data_dir.require_initialised()
    ensure_config_file(data_dir)
    config = profile_config(load_config(data_dir), seed_profile=seed_profile, listen=listen)
    if detach:
        pid = running_pid(data_dir)
        if pid is not None:
            raise click.ClickException(
                f"a daemon is already running on {data_dir.root}" + (f" (pid {pid})" if pid else "")
            )
        extra = ["--json"] if options.json else []
        extra += ["--seed"] if seed_profile else []
        extra += [f"--listen={address}" for address in listen]
        pid = start_detached(data_dir, ready_seconds=READY_SECONDS, extra_args=extra)
        info = read_node_info(data_dir) or {}
        print_started(info, as_json=options.json, detached_pid=pid, log=log_path(data_dir))
        return
    lock = DaemonLock.acquire(data_dir)
    try:
        configure_logging(config.log)
        try:
            trio.run(run_foreground, data_dir, config, ready_fd, options.json)
        except BaseExceptionGroup as group:
            raise sole_exception(group) from None
    finally:
        lock.release()


def profile_config(config: Config, *, seed_profile: bool, listen: tuple[str, ...]) -> Config:
    """``config`` as ``daemon --seed`` / ``--listen`` change it. Raises ``click.BadParameter``."""
    network = config.network
    if seed_profile:
        network = dataclasses.replace(
            network, listen=config.seed.listen, max_connections=config.seed.max_connections
        )
        config = dataclasses.replace(config, profile="seed")
    if listen:
        try:
            addresses = KEYS_BY_NAME[("network", "listen")].validate(list(listen))
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--listen") from None
        network = dataclasses.replace(network, listen=cast(tuple[str, ...], addresses))
    return dataclasses.replace(config, network=network)


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside nested nursery groups (so it gets its one-line message), else all."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def run_foreground(
    data_dir: DataDir, config: Config, ready_fd: int | None, as_json: bool
) -> None:
    # Imported here, not at the top: the daemon pulls in libp2p, which would
    # add ~0.4 s to the start of every other CLI command.
    from node.daemon import Daemon, default_services

    node_daemon = Daemon(data_dir, config, services=default_services(), handle_signals=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(node_daemon.run)
        print_started(node_daemon.info(), as_json=as_json, detached_pid=None, log=None)
        if ready_fd is not None:
            signal_ready(ready_fd)


def print_started(
    info: dict[str, object], *, as_json: bool, detached_pid: int | None, log: Path | None
) -> None:
    if as_json:
        render.print_json(info)
        return
    lines = []
    if detached_pid is not None:
        lines.append(f"started   pid {detached_pid}, log {log}")
    lines += [
        f"author    {info.get('author')}",
        f"peer id   {info.get('peer_id')}",
        f"data dir  {info.get('data_dir')}",
        f"rpc       {info.get('rpc_socket')}",
    ]
    if info.get("rpc_tcp"):
        lines.append(f"rpc tcp   {info['rpc_tcp']}")
    listening = info.get("listen_addrs")
    if isinstance(listening, list) and listening:
        lines += [f"listen    {address}" for address in listening]
    else:
        configured = info.get("configured_listen")
        shown = ", ".join(map(str, configured)) if isinstance(configured, list) else ""
        lines.append(f"listen    {shown or '-'} (configured; no network service runs)")
    if detached_pid is None:
        lines.append("ready")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


@cli.command()
@json_option
def status() -> None:
    """Show whether the daemon runs and how it is doing (exit code 3: not running)."""
    options = settings()
    data_dir = options.data_dir
    client = connect_to_daemon(data_dir)
    if client is None:
        pid = running_pid(data_dir)
        if pid is not None:
            raise click.ClickException(
                f"the daemon (pid {pid}) holds {data_dir.root} but does not answer on"
                f" {rpc_socket_path(data_dir)} (starting or stuck)"
            )
        if options.json:
            render.print_json({"running": False, "data_dir": str(data_dir.root)})
        else:
            render.stdout.print(f"not running ({data_dir.root})", markup=False)
        sys.exit(EXIT_NOT_RUNNING)
    with client:
        state = call(client, "node.status")
    if options.json:
        render.print_json({"running": True, **state})
        return
    store = state.get("store", {})
    traffic = state.get("traffic", {})
    rpc = state.get("rpc", {})
    rows = [
        ("running", f"yes, pid {state['pid']}, up {format_duration(state['uptime_s'])}"),
        ("version", state["version"]),
        ("author", state["author"]),
        ("data dir", state["data_dir"]),
        ("rpc", state["rpc_socket"]),
        ("rpc tcp", state["rpc_tcp"] or "off"),
        ("listen", ", ".join(state["listen_addrs"]) or "- (no network service runs)"),
        ("store", ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in store.items())),
        ("storage", storage_text(store)),
        ("pins", str(store.get("pins", 0))),
        (
            "traffic",
            f"{format_bytes(int(traffic.get('bytes_in', 0)))} in,"
            f" {format_bytes(int(traffic.get('bytes_out', 0)))} out",
        ),
        ("clients", f"{rpc.get('connections', 0)} connected"),
    ]
    if state.get("profile") == "seed":
        rows.insert(1, ("profile", "seed"))
    for name, service in state.get("services", {}).items():
        if name == "network":
            rows += network_rows(service)
            continue
        if name == "replication":
            rows.append(("replicate", replication_text(service)))
            continue
        if name == "seed":
            rows.append(("seeding", seeding_text(service)))
            continue
        rows.append((name, ", ".join(f"{key} {value}" for key, value in service.items())))
    for name, value in rows:
        render.stdout.print(f"{name:<9} {value}", markup=False)


def format_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def storage_text(store: dict[str, Any]) -> str:
    used = int(store.get("used_bytes", 0) or 0)
    quota = int(store.get("quota", 0) or 0)
    if not quota:
        return f"{format_bytes(used)} used, no quota"
    return f"{format_bytes(used)} used of {format_bytes(quota)} ({100 * used / quota:.0f}%)"


def replication_text(service: dict[str, Any]) -> str:
    if service.get("mode") == "off":
        return "off ([seed] mode; `remixnet seed set --mode`)"
    return (
        f"{service.get('queued', 0)} queued, {service.get('in_progress', 0)} in progress,"
        f" {service.get('failed', 0)} failed, {service.get('replicated', 0)} replicated"
        f" ({service.get('mode')})"
    )


def seeding_text(service: dict[str, Any]) -> str:
    return (
        f"{service.get('blocked_authors', 0)} authors and {service.get('blocked_peers', 0)}"
        f" peers blocked, {service.get('records_refused', 0)} records refused"
    )


def network_rows(network: dict[str, Any]) -> list[tuple[str, str]]:
    """The network service's statistics as a few readable rows of ``status``."""
    host = network.get("host", {})
    fetch = network.get("fetch", {})
    serve = network.get("serve", {})
    banned = network.get("banned_peers", [])
    return [
        ("peers", f"{host.get('connected_peers', 0)} connected"),
        ("fetched", ", ".join(f"{key} {value}" for key, value in fetch.items()) or "-"),
        ("served", ", ".join(f"{key} {value}" for key, value in serve.items()) or "-"),
        ("banned", ", ".join(map(str, banned)) or "none"),
    ]


def format_duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds_left = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds_left, "s")]
    shown = [f"{value}{unit}" for value, unit in parts if value] or ["0s"]
    return "".join(shown[:2])


@cli.command()
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the daemon to exit.",
)
@json_option
def stop(wait_seconds: float) -> None:
    """Stop the daemon (node.shutdown over RPC, else SIGTERM) and wait until it has exited."""
    options = settings()
    data_dir = options.data_dir
    pid = running_pid(data_dir)
    if pid is None:
        report_stop(options.json, {"stopped": False, "running": False, "pid": None})
        return
    how = "rpc"
    try:
        client = connect_to_daemon(data_dir)
        if client is None:
            raise ConnectionRefusedError("no RPC socket")
        with client:
            client.call("node.shutdown")
    except (OSError, RpcError):
        if not pid:
            raise click.ClickException(
                f"the daemon on {data_dir.root} does not answer and has not written its pid yet"
            ) from None
        how = "sigterm"
        terminate(pid)
    if not wait_until_stopped(data_dir, wait_seconds, pid):
        raise click.ClickException(f"the daemon (pid {pid}) did not stop within {wait_seconds:g} s")
    report_stop(options.json, {"stopped": True, "running": False, "pid": pid, "via": how})


def report_stop(as_json: bool, outcome: dict[str, object]) -> None:
    if as_json:
        render.print_json(outcome)
    elif outcome["stopped"]:
        render.stdout.print(f"stopped the daemon (pid {outcome['pid']})", markup=False)
    else:
        render.stdout.print("not running", markup=False)


def parse_rpc_arguments(arguments: tuple[str, ...]) -> Any:
    """``remixnet rpc`` params: one JSON array/object, ``key=value`` pairs, or positional values.

    A value is taken as JSON when it parses as JSON, else as a string, so
    ``limit=5`` is a number and ``tag=poetry`` a string.
    """

    def value_of(text: str) -> object:
        try:
            return json.loads(text)
        except ValueError:
            return text

    if not arguments:
        return None
    if len(arguments) == 1 and arguments[0].lstrip()[:1] in ("{", "["):
        try:
            params = json.loads(arguments[0])
        except ValueError as error:
            raise click.UsageError(f"params are not valid JSON: {error}") from None
        return params
    named = [argument for argument in arguments if "=" in argument]
    if named and len(named) != len(arguments):
        raise click.UsageError("give params either all as key=value or all by position")
    if named:
        return {key: value_of(value) for key, _, value in (a.partition("=") for a in named)}
    return [value_of(argument) for argument in arguments]


@cli.command(name="rpc", context_settings={"ignore_unknown_options": True})
@click.argument("method")
@click.argument("arguments", nargs=-1, metavar="[JSON | KEY=VALUE... | VALUE...]")
def rpc_command(method: str, arguments: tuple[str, ...]) -> None:
    """Call METHOD on the running daemon and print its result as JSON (see docs/rpc.md).

    \b
    remixnet rpc node.status
    remixnet rpc records.list tag=poetry limit=5
    remixnet rpc content.cat '{"cid": "bafk...", "max_bytes": 100}'
    """
    params = parse_rpc_arguments(arguments)
    with require_daemon(settings().data_dir) as client:
        result = call(client, method, params)
    render.print_json(result)


@cli.command()
@click.argument("names", nargs=-1, metavar="[EVENT...]")
@json_option
def events(names: tuple[str, ...]) -> None:
    """Print the daemon's events as they happen until interrupted (--json: JSON lines).

    With EVENT names only those (record.added, progress, …; see docs/rpc.md).
    """
    options = settings()
    with require_daemon(options.data_dir) as client:
        reply = call(client, "events.subscribe", {"events": list(names) if names else None})
        if not options.json:
            render.stderr.print(f"listening for {', '.join(reply['events'])}", markup=False)
        try:
            for event in client.notifications():
                if options.json:
                    sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
                else:
                    sys.stdout.write(describe_event(event) + "\n")
                sys.stdout.flush()
        except DaemonGone as error:
            raise click.ClickException(str(error)) from None


def describe_event(event: dict[str, Any]) -> str:
    """One line for a human: time, event name, the gist of its data."""
    name = event.get("event")
    data = event.get("data") or {}
    moment = time.strftime("%H:%M:%S")
    if name == "record.added":
        record = data.get("record", {})
        author = render.short_author(str(record.get("author", "")))
        title = record.get("title") or record.get("name") or ""
        return (
            f"{moment} record.added {record.get('id')} {record.get('type')}"
            f" {json.dumps(title, ensure_ascii=False)} by {author} ({data.get('origin')})"
        )
    if name == "progress":
        total = data.get("total")
        return (
            f"{moment} progress {data.get('operation')} {data.get('target')}"
            f" {data.get('done')}/{total if total is not None else '?'} bytes"
        )
    return f"{moment} {name} {json.dumps(data, sort_keys=True)}"
