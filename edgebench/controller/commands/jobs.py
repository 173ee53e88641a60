"""``controller cancel`` and ``controller collect``."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from edgebench.common.mqtt import ConnectError
from edgebench.common.text import printable
from edgebench.controller.collector import run_collector
from edgebench.controller.commands._options import config, console, fail
from edgebench.controller.fleet import FleetClient
from edgebench.controller.store import ResultStore, jobs
from edgebench.schemas import JobEvent


def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="Job id to cancel.")],
    device: Annotated[list[str] | None, typer.Option("--device", "-d", help="Only on these devices.")] = None,
) -> None:
    """Cancel a queued or running job (it ends as CANCELED)."""
    import sqlalchemy as sa

    cfg = config(ctx)
    store = ResultStore(cfg.store_url)
    device_ids = list(device or [])
    if not device_ids:
        with store.engine.connect() as conn:
            device_ids = [r[0] for r in conn.execute(sa.select(jobs.c.device_id).where(jobs.c.job_id == job_id))]
    if not device_ids:
        raise fail(f"job {job_id!r} is not in the store; name the device with --device")
    try:
        with FleetClient(cfg, store) as fleet:
            fleet.cancel(job_id, device_ids)
    except ConnectError as exc:
        raise fail(str(exc)) from None
    console.print(f"cancel sent for {job_id} to {', '.join(device_ids)}")


def collect(
    ctx: typer.Context,
    shared_group: Annotated[str | None, typer.Option(
        help="Split events with the other collectors of this group (MQTT shared subscription).")] = None,
    instance: Annotated[str | None, typer.Option(
        help="This collector's name within its group (default: the host name); keeps its session.")] = None,
    reconcile_every: Annotated[float, typer.Option(
        help="Seconds between reconciliation passes (ask agents to replay jobs silent for too long); 0: never.")
    ] = 300.0,
) -> None:
    """Run as a long-lived collector: store every event and result as it arrives.

    Uses a persistent MQTT session, so results published while it was down are
    delivered when it comes back. Several collectors may run: ingestion is idempotent.
    With --shared-group, the broker gives each event to one collector of the group.
    """
    cfg = config(ctx)
    store = ResultStore(cfg.store_url)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def show(ev: JobEvent, new: bool) -> None:
        if new and ev.state.value not in ("IN_PROGRESS",):
            # ids are identifiers, but nothing a device sends is ever rendered as markup
            console.print(printable(f"{ev.at:%H:%M:%S} {ev.device_id} {ev.job_id} {ev.state.value}"),
                          highlight=False, markup=False)

    try:
        with FleetClient(cfg, store, collector=True, shared_group=shared_group, instance=instance) as fleet:
            group = f" (shared group {shared_group})" if shared_group else ""
            every = f"reconciling every {reconcile_every:g} s" if reconcile_every else "no reconciliation"
            console.print(f"collecting fleet {cfg.fleet} from {cfg.broker_url}{group} into {store.url} ({every})",
                          highlight=False, markup=False)
            run_collector(fleet, store, stop, show, reconcile_every_s=reconcile_every or None)
    except (ConnectError, ValueError) as exc:  # ValueError: an invalid --shared-group
        raise fail(str(exc)) from None
