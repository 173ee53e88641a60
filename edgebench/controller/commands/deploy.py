"""``controller deploy HOST...`` (and ``--rollback``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from edgebench.controller.commands._options import config, console, fail
from edgebench.controller.deploy import (
    DeployError,
    DeploySettings,
    EngineTls,
    Outcome,
    Target,
    deploy,
    rollback,
    wait_online,
)


def _default_image() -> str:
    from edgebench.agent.fingerprint import agent_version

    return f"edgebench/agent:{agent_version()}"


def deploy_cmd(
    ctx: typer.Context,
    hosts: Annotated[list[str], typer.Argument(
        help="[DEVICE=]ENGINE: ssh://user@host, tcp://host:2376, unix:///var/run/docker.sock, or a host name "
             "(ssh). DEVICE defaults to the host name.", show_default=False)],
    image: Annotated[str | None, typer.Option(help="Agent image (default: edgebench/agent:<version>).")] = None,
    rollback_: Annotated[bool, typer.Option(
        "--rollback", help="Restore the image each agent container replaced.")] = False,
    agent_config: Annotated[Path | None, typer.Option(
        "--agent-config", help="Base agent.yaml (backends, image_allowlist, tags ...).", exists=True,
        dir_okay=False)] = None,
    broker: Annotated[str | None, typer.Option(
        help="Broker URL as the hosts reach it (default: the controller's).")] = None,
    gpus: Annotated[str, typer.Option(help="GPUs for the agent: all, none, or ids/UUIDs (0,1).")] = "all",
    dataset_root: Annotated[str | None, typer.Option(
        help="Dataset directory on the hosts, mounted read-only at the same path.")] = None,
    pki: Annotated[Path | None, typer.Option(
        help="edgebench.common.pki root: uploads devices/<id>/ credentials and signing/jobs.pub.", exists=True,
        file_okay=False)] = None,
    docker_socket: Annotated[str, typer.Option(help="The engine's socket on the hosts.")] = "/var/run/docker.sock",
    copy_image: Annotated[bool, typer.Option(
        help="Copy the image from the local engine to hosts that lack it (no registry needed).")] = False,
    tlscacert: Annotated[Path | None, typer.Option(help="tcp:// engines: CA certificate.")] = None,
    tlscert: Annotated[Path | None, typer.Option(help="tcp:// engines: client certificate.")] = None,
    tlskey: Annotated[Path | None, typer.Option(help="tcp:// engines: client key.")] = None,
    wait_online_s: Annotated[float, typer.Option(
        "--wait-online", help="Seconds to wait for the agents to announce themselves (0: don't).")] = 60.0,
    parallel: Annotated[int, typer.Option(help="Hosts deployed at once.")] = 8,
) -> None:
    """Deploy or upgrade the agent container on Docker hosts, or roll it back.

    Prints one row per host; exits 1 if any host failed."""
    cfg = config(ctx)
    try:
        targets = [Target.parse(h) for h in hosts]
    except DeployError as exc:
        raise fail(str(exc)) from None
    tls = None
    if tlscacert or tlscert or tlskey:
        if not (tlscacert and tlscert and tlskey):
            raise fail("--tlscacert, --tlscert and --tlskey go together")
        tls = EngineTls(tlscacert, tlscert, tlskey)
    base: dict[str, object] = {}
    if agent_config is not None:
        loaded = yaml.safe_load(agent_config.read_text()) or {}
        if not isinstance(loaded, dict):
            raise fail(f"{agent_config}: expected a mapping at the top level")
        base = loaded
    settings = DeploySettings(
        image=image or _default_image(), broker_url=broker or cfg.broker_url, fleet=cfg.fleet,
        agent_config=base, gpus=gpus, dataset_root=dataset_root, docker_socket=docker_socket, pki_dir=pki,
        tls=tls, copy_image=copy_image,
    )
    started = datetime.now(timezone.utc) - timedelta(seconds=5)  # a little clock skew
    work = rollback if rollback_ else deploy
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        outcomes = list(pool.map(lambda t: work(t, settings), targets))
    if wait_online_s > 0 and any(o.ok for o in outcomes):
        _check_online(ctx, outcomes, started, wait_online_s)
    _print(outcomes)
    if not all(o.ok for o in outcomes):
        raise typer.Exit(1)


def _check_online(ctx: typer.Context, outcomes: list[Outcome], since: datetime, timeout_s: float) -> None:
    from edgebench.common.mqtt import ConnectError
    from edgebench.controller.fleet import FleetClient
    from edgebench.controller.store import ResultStore

    cfg = config(ctx)
    ok = [o for o in outcomes if o.ok]
    try:
        with FleetClient(cfg, ResultStore(cfg.store_url)) as fleet:
            online = wait_online(fleet, [o.target.device_id for o in ok], since, timeout_s)
    except ConnectError as exc:
        for o in ok:
            o.detail = f"cannot check presence: {exc}"
        return
    for o in ok:
        o.online = online[o.target.device_id]
        if not o.online:
            o.ok = False
            o.detail = f"deployed, but not online on the broker within {timeout_s:g} s (docker logs " \
                       f"{o.target.container_name})"


def _print(outcomes: list[Outcome]) -> None:
    table = Table(title="deploy")
    for col in ("device", "engine", "outcome", "image", "previous", "online", "detail"):
        table.add_column(col)
    for o in outcomes:
        outcome = o.action if o.ok else f"[red]{o.action}[/red]"
        online = "" if o.online is None else ("yes" if o.online else "[red]no[/red]")
        table.add_row(o.target.device_id, o.target.url, outcome, escape(o.image), escape(o.previous or ""), online,
                      escape(o.detail))
    console.print(table)
