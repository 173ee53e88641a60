"""``controller deploy HOST...`` (and ``--rollback``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer
import yaml

from edgebench.common.console import Column
from edgebench.common.version import docker_tag
from edgebench.controller.commands._options import JsonOpt, config, out, output
from edgebench.controller.commands.devices import presence_store
from edgebench.controller.deploy import (
    DeploySettings,
    EngineTls,
    Outcome,
    Target,
    deploy,
    rollback,
    wait_online,
)
from edgebench.controller.errors import ControllerError, ControllerUsageError

COLUMNS = (
    Column("device_id", "device"), Column("engine"),
    Column("outcome", style=lambda v: "red" if "failed" in str(v) else None),
    Column("image"), Column("previous"),
    Column("online", fmt=lambda v: "" if v is None else ("yes" if v else "no"),
           style=lambda v: "red" if v is False else None),
    Column("detail"),
)


def _default_image() -> str:
    return f"edgebench/agent:{docker_tag()}"


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
    as_json: JsonOpt = False,
) -> None:
    """Deploy or upgrade the agent container on Docker hosts (the 'docker' extra), or roll it back.

    Prints one row per host; exits 1 if any host failed."""
    cfg = config(ctx)
    try:
        targets = [Target.parse(h) for h in hosts]
    except ControllerError as exc:  # DeployError: a host that cannot be parsed is a usage error
        raise ControllerUsageError(str(exc)) from None
    tls = None
    if tlscacert or tlscert or tlskey:
        if not (tlscacert and tlscert and tlskey):
            raise ControllerUsageError("--tlscacert, --tlscert and --tlskey go together")
        tls = EngineTls(tlscacert, tlscert, tlskey)
    base: dict[str, object] = {}
    if agent_config is not None:
        loaded = yaml.safe_load(agent_config.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ControllerUsageError(f"{agent_config}: expected a mapping at the top level")
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
    records = [{"device_id": o.target.device_id, "engine": o.target.url, "ok": o.ok, "action": o.action,
                "outcome": o.action if o.ok or o.action == "failed" else f"{o.action}, failed", "image": o.image,
                "previous": o.previous, "online": o.online, "detail": o.detail} for o in outcomes]
    if as_json:
        output(True).json(records)
    else:
        out.table(COLUMNS, records, title="deploy")
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise ControllerError(f"{len(failed)} of {len(outcomes)} host(s) failed")


def _check_online(ctx: typer.Context, outcomes: list[Outcome], since: datetime, timeout_s: float) -> None:
    from edgebench.common.mqtt import ConnectError
    from edgebench.controller.fleet import FleetClient

    cfg = config(ctx)
    ok = [o for o in outcomes if o.ok]
    try:
        with FleetClient(cfg, presence_store()) as fleet:
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

