"""``controller reconcile`` and ``controller dead-letters``: recover lost events, inspect what was kept aside."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Annotated

import typer

from edgebench.common.console import Column
from edgebench.controller.commands._options import JsonOpt, config, out, read_store
from edgebench.controller.fleet import FleetClient
from edgebench.controller.reconcile import reconcile as reconcile_pass


def reconcile(
    ctx: typer.Context,
    all_open: Annotated[bool, typer.Option("--all-open", help="Ask about every open job, not only overdue ones.")]
    = False,
    wait: Annotated[float, typer.Option(help="Seconds to collect the agents' answers.")] = 10.0,
) -> None:
    """Ask agents to replay jobs that stayed open for longer than they could (events lost by the broker).

    `controller collect` does this every few minutes by itself. Example:
    controller reconcile --all-open --wait 30
    """
    cfg = config(ctx)
    store = read_store(ctx)
    before = {(j.job_id, j.device_id) for j in store.open_jobs()}
    with FleetClient(cfg, store) as fleet:
        fleet.discover(1.0)
        report = reconcile_pass(fleet, store, everything=all_open)
        deadline = time.monotonic() + (wait if report.count else 0)
        while time.monotonic() < deadline:
            fleet.pump(0.2)
    after = {(j.job_id, j.device_id) for j in store.open_jobs()}
    resolved = before - after
    out.print(f"asked {len(report.asked)} device(s) about {report.count} job(s); {len(resolved)} resolved, "
              f"{len(after)} still open; {len(report.skipped_offline)} skipped (device offline)")


LETTER_COLUMNS = (Column("id"), Column("received_at", "received", fmt=lambda v: f"{v:%Y-%m-%d %H:%M:%S}" if v else "?"),
                  Column("device_id", "device"), Column("job_id", "job"), Column("reason"))


def dead_letters(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    as_json: JsonOpt = False,
    purge: Annotated[bool, typer.Option(help="Delete them all (after listing).")] = False,
) -> None:
    """What devices sent that the store kept aside (unknown jobs, refused transitions, unparsable messages)."""
    store = read_store(ctx)
    letters = store.dead_letters(limit)
    if as_json:
        print(json.dumps([{
            "id": d.id, "received_at": d.received_at.isoformat() if d.received_at else None, "topic": d.topic,
            "device_id": d.device_id, "job_id": d.job_id, "reason": d.reason,
            "payload": d.payload.decode("utf-8", "replace")[:2000] if d.payload else None} for d in letters],
            indent=2))
    elif letters:
        out.table(LETTER_COLUMNS, [{"id": d.id, "received_at": d.received_at, "device_id": d.device_id or "-",
                                    "job_id": d.job_id or "-", "reason": d.reason} for d in letters],
                  title="dead letters (newest first)")
    else:
        out.note("no dead letters")
    if purge:
        n = store.purge_dead_letters(datetime.now(timezone.utc))
        out.note(f"deleted {n} dead letter(s)")
