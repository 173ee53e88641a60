"""``controller devices``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer
from rich.table import Table

from edgebench.common.mqtt import ConnectError
from edgebench.controller.commands._options import config, console, fail
from edgebench.controller.fleet import FleetClient
from edgebench.controller.store import ResultStore


def devices(
    ctx: typer.Context,
    wait: Annotated[float, typer.Option(help="Seconds to collect presence messages.")] = 1.0,
) -> None:
    """List agents: online/offline, capabilities, GPUs, last seen."""
    cfg = config(ctx)
    store = ResultStore(cfg.store_url)
    try:
        with FleetClient(cfg, store) as fleet:
            statuses = fleet.discover(wait)
    except ConnectError as exc:
        raise fail(str(exc)) from None
    if not statuses:
        console.print(f"no agents have announced themselves in fleet {cfg.fleet!r}")
        return
    now = datetime.now(timezone.utc)
    table = Table(title=f"fleet {cfg.fleet}")
    for col in ("device", "state", "last seen", "tags", "backends", "GPUs", "busy with"):
        table.add_column(col)
    for s in sorted(statuses.values(), key=lambda s: s.device_id):
        ago = (now - s.at).total_seconds()
        state = "[green]online[/green]" if s.online else "[red]offline[/red]"
        backends = ", ".join(b.backend for b in s.backends if b.available)
        gpus = ", ".join(g.name for g in s.gpus) or "none"
        table.add_row(s.device_id, state, f"{ago:.0f} s ago", ", ".join(s.tags), backends, gpus,
                      s.busy_job_id or "")
    console.print(table)
