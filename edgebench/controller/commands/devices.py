"""``controller devices``: who is in the fleet, once or as a live table."""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timezone
from typing import Annotated, Any

import typer
from rich.table import Table

from edgebench.common.console import Column, Output, markup, render_table
from edgebench.controller.commands._options import JsonOpt, config, output
from edgebench.controller.fleet import FleetClient
from edgebench.controller.store import ResultStore
from edgebench.schemas import AgentStatus

COLUMNS = (
    Column("device_id", "device"),
    Column("state", "state", style=lambda v: "green" if v == "online" else "red"),
    Column("last_seen_s", "last seen", fmt=lambda v: f"{v:.0f} s ago"),
    Column("tags"),
    Column("available_backends", "backends"),
    Column("gpu_names", "GPUs", fmt=lambda v: ", ".join(v) or "none"),
    Column("busy_job_id", "busy with"),
    Column("queue_length", "queued"),
)


def presence_store() -> ResultStore | None:
    """Presence needs no results store: the fleet client then only listens (no database is opened)."""
    return None


def device_record(status: AgentStatus, now: datetime) -> dict[str, Any]:
    """One device as --json prints it: the retained status plus derived fields for the table."""
    doc = status.model_dump(mode="json")
    doc.update(state="online" if status.online else "offline", last_seen_s=round((now - status.at).total_seconds(), 1),
               available_backends=[b.backend for b in status.backends if b.available],
               gpu_names=[g.name for g in status.gpus])
    return doc


def records(statuses: dict[str, AgentStatus]) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    return [device_record(s, now) for s in sorted(statuses.values(), key=lambda s: s.device_id)]


def devices(
    ctx: typer.Context,
    wait: Annotated[float, typer.Option(help="Seconds to collect presence messages.")] = 1.0,
    watch: Annotated[bool, typer.Option("--watch", help="Keep the table live until Ctrl-C (off a terminal: one "
                                        "line per change).")] = False,
    duration: Annotated[float | None, typer.Option(
        help="With --watch: stop after this many seconds [default: until Ctrl-C].", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """List agents: online/offline, capabilities, GPUs, last seen, the job each is busy with."""
    cfg = config(ctx)
    out = output(as_json)
    with FleetClient(cfg, presence_store()) as fleet:
        if watch:
            _watch(fleet, out, cfg.fleet, duration)
            return
        statuses = fleet.discover(wait)
    if as_json:
        out.json(records(statuses))
        return
    if not statuses:
        out.note(f"no agents have announced themselves in fleet {markup(cfg.fleet)!r}")
        return
    out.table(COLUMNS, records(statuses), title=f"fleet {cfg.fleet}")


def _watch(fleet: FleetClient, out: Output, fleet_name: str, duration: float | None) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    deadline = None if duration is None else time.monotonic() + duration

    def running() -> bool:
        return not stop.is_set() and (deadline is None or time.monotonic() < deadline)

    if out.terminal and not out.as_json:
        from rich.live import Live

        with Live(_table(fleet.statuses, fleet_name), console=out.console, refresh_per_second=2) as live:
            while running():
                fleet.pump(0.5)
                live.update(_table(fleet.statuses, fleet_name))
        return
    # off a terminal: one line (or one JSON object) per status that changed. A
    # status re-sent with nothing but a newer time stamp is no change: printing
    # it would make every periodic status (and every re-announcement after a
    # reconnect) look like an event to a script reading the lines.
    seen: dict[str, str] = {}
    while running():
        fleet.pump(0.5)
        for s in sorted(fleet.statuses.values(), key=lambda s: s.device_id):
            key = s.model_dump_json(exclude={"at"})
            if seen.get(s.device_id) == key:
                continue
            seen[s.device_id] = key
            rec = device_record(s, datetime.now(timezone.utc))
            if out.as_json:
                out.json_line(rec)
            else:
                out.row(COLUMNS, rec)


def _table(statuses: dict[str, AgentStatus], fleet_name: str) -> Table:
    return render_table(COLUMNS, records(statuses), f"fleet {fleet_name} (live; Ctrl-C stops)")
