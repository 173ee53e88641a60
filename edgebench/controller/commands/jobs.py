"""``controller jobs``, ``controller cancel`` and ``controller collect``."""

from __future__ import annotations

import signal
import threading
from datetime import datetime, timezone
from typing import Annotated, Any

import typer

from edgebench.common.console import Column, markup
from edgebench.controller.collector import run_collector
from edgebench.controller.commands._options import JsonOpt, config, out, output, read_store, write_store
from edgebench.controller.commands.report import safe_url
from edgebench.controller.errors import ControllerError
from edgebench.controller.fleet import FleetClient
from edgebench.controller.reconcile import DEFAULT_POLICY, ReconcilePolicy
from edgebench.controller.store import OpenJob
from edgebench.schemas import AgentStatus, JobEvent

COLUMNS = (
    Column("device_id", "device"),
    Column("device_state", "device state", style=lambda v: "green" if v == "online" else "red"),
    Column("job_id", "job"),
    Column("state", style=lambda v: "cyan" if v == "RUNNING" else None),
    Column("backend"),
    Column("age_s", "last event", fmt=lambda v: "" if v is None else f"{v:.0f} s ago"),
    Column("sweep_id", "sweep"),
)


def open_job_records(store_jobs: list[OpenJob], statuses: dict[str, AgentStatus],
                     now: datetime) -> list[dict[str, Any]]:
    """Queued and running jobs per device: the store's open jobs, told apart by the devices' retained statuses.

    The store knows what was dispatched and the last event of each job; a device's
    status says which job it is busy with now and how many it has queued (a job it
    holds that this store never dispatched, from another controller, shows too)."""
    rows: list[dict[str, Any]] = []
    listed: set[tuple[str, str]] = set()
    for j in store_jobs:
        status = statuses.get(j.device_id)
        state = j.state.value
        if status is not None and status.busy_job_id == j.job_id:
            state = "RUNNING"
        rows.append({"job_id": j.job_id, "device_id": j.device_id, "sweep_id": j.spec.sweep_id,
                     "backend": j.spec.backend.value, "state": state, "updated_at": j.updated_at,
                     "age_s": round((now - j.updated_at).total_seconds(), 1) if j.updated_at else None,
                     "device_state": _device_state(status),
                     "device_queue_length": status.queue_length if status else None})
        listed.add((j.job_id, j.device_id))
    for s in statuses.values():
        if s.busy_job_id and (s.busy_job_id, s.device_id) not in listed:
            rows.append({"job_id": s.busy_job_id, "device_id": s.device_id, "sweep_id": None, "backend": None,
                         "state": "RUNNING", "updated_at": None, "age_s": None,
                         "device_state": _device_state(s), "device_queue_length": s.queue_length})
    return sorted(rows, key=lambda r: (r["device_id"], r["state"] != "RUNNING", r["age_s"] is None,
                                       -(r["age_s"] or 0)))


def _device_state(status: AgentStatus | None) -> str:
    if status is None:
        return "never announced"
    return "online" if status.online else "offline"


def jobs(
    ctx: typer.Context,
    device: Annotated[str | None, typer.Option("--device", "-d", help="Only this device.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to collect the devices' statuses.")] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Queued and running jobs per device (the store's open jobs and the devices' retained statuses)."""
    cfg = config(ctx)
    store = read_store(ctx)
    with FleetClient(cfg, store) as fleet:
        statuses = fleet.discover(wait)
    if device is not None:
        statuses = {k: v for k, v in statuses.items() if k == device}
    open_jobs = [j for j in store.open_jobs() if device is None or j.device_id == device]
    records = open_job_records(open_jobs, statuses, datetime.now(timezone.utc))
    o = output(as_json)
    if as_json:
        o.json(records)
        return
    if not records:
        o.note("no queued or running jobs")
        return
    o.table(COLUMNS, records, title=f"open jobs in fleet {cfg.fleet}")


def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="Job id to cancel.")],
    device: Annotated[list[str] | None, typer.Option("--device", "-d", help="Only on these devices.")] = None,
) -> None:
    """Cancel a queued or running job (it ends as CANCELED)."""
    cfg = config(ctx)
    store = write_store(ctx)
    device_ids = list(device or []) or store.job_devices(job_id)
    if not device_ids:
        raise ControllerError(f"job {job_id!r} is not in the store; name the device with --device")
    with FleetClient(cfg, store) as fleet:
        fleet.cancel(job_id, device_ids)
    out.print(f"cancel sent for {markup(job_id)} to {markup(', '.join(device_ids))}")


def collect(
    ctx: typer.Context,
    shared_group: Annotated[str | None, typer.Option(
        help="Split events with the other collectors of this group (MQTT shared subscription).")] = None,
    instance: Annotated[str | None, typer.Option(
        help="This collector's name within its group (default: the host name); keeps its session.")] = None,
    reconcile_every: Annotated[float, typer.Option(
        help="Seconds between reconciliation passes (ask agents to replay jobs silent for too long); 0: never.")
    ] = 300.0,
    reconcile_grace: Annotated[float, typer.Option(
        help="Seconds beyond a running job's step timeout before its silence counts as lost events.")] = 60.0,
    reconcile_queued_after: Annotated[float, typer.Option(
        help="Seconds a dispatched or queued job may stay silent before its agent is asked about it.")] = 600.0,
) -> None:
    """Run as a long-lived collector: store every event and result as it arrives.

    Uses a persistent MQTT session, so results published while it was down are
    delivered when it comes back. Several collectors may run: ingestion is idempotent.
    With --shared-group, the broker gives each event to one collector of the group.
    """
    cfg = config(ctx)
    store = write_store(ctx)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def show(ev: JobEvent, new: bool) -> None:
        if new and ev.state.value not in ("IN_PROGRESS",):
            # nothing a device sends is ever rendered as markup or printed raw
            out.print(f"{ev.at:%H:%M:%S} {markup(ev.device_id)} {markup(ev.job_id)} {ev.state.value}")

    try:
        fleet_client = FleetClient(cfg, store, collector=True, shared_group=shared_group, instance=instance)
    except ValueError as exc:  # an invalid --shared-group
        raise typer.BadParameter(str(exc), param_hint="--shared-group") from None
    with fleet_client as fleet:
        group = f" (shared group {shared_group})" if shared_group else ""
        every = f"reconciling every {reconcile_every:g} s" if reconcile_every else "no reconciliation"
        out.print(markup(f"collecting fleet {cfg.fleet} from {cfg.broker_url}{group} into {safe_url(store.url)} "
                         f"({every})"))
        policy = ReconcilePolicy(grace_s=reconcile_grace, queued_after_s=reconcile_queued_after,
                                 every_s=reconcile_every or DEFAULT_POLICY.every_s)
        run_collector(fleet, store, stop, show, policy=policy, reconcile_every_s=reconcile_every or None)
