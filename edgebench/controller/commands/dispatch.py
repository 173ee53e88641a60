"""``controller dispatch``: one job, a list, or a sweep file, to devices."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgebench.common.mqtt import ConnectError
from edgebench.controller.commands._options import config, console, fail
from edgebench.controller.fleet import Dispatched, FleetClient, TargetError
from edgebench.controller.plan import PlanError, SweepFile, build_jobs, load_sweep, new_id
from edgebench.controller.progress import ProgressView
from edgebench.controller.rollout import RolloutError, RolloutPolicy, run_rollout
from edgebench.controller.store import ResultStore


def dispatch(
    ctx: typer.Context,
    device: Annotated[list[str] | None, typer.Option("--device", "-d", help="Target device id (repeatable).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="All online devices with this tag.")] = None,
    all_devices: Annotated[bool, typer.Option("--all", help="All online devices.")] = False,
    backend: Annotated[list[str] | None, typer.Option("--backend", "-b", help="Backend (repeatable).")] = None,
    workload: Annotated[
        list[str] | None, typer.Option("--workload", "-w", help="Catalogue workload (repeatable).")
    ] = None,
    batch_size: Annotated[list[int] | None, typer.Option("--batch-size", help="Batch size (repeatable).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs, warm-up included.")] = None,
    samples: Annotated[int | None, typer.Option(help="Use only the first N training samples.")] = None,
    steps_per_epoch: Annotated[int | None, typer.Option(help="Fixed steps per epoch.")] = None,
    synthetic: Annotated[bool, typer.Option(help="Random data of the real shapes.")] = False,
    precision: Annotated[str | None, typer.Option(help="fp32, bf16 or fp16.")] = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs per job (0 = CPU).")] = None,
    mode: Annotated[str | None, typer.Option(help="train or infer.")] = None,
    warmup_epochs: Annotated[int | None, typer.Option(help="Epochs excluded from the window.")] = None,
    repeats: Annotated[int | None, typer.Option(help="Run N times, report the median.")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Per-job timeout, seconds.")] = None,
    scenario: Annotated[list[str] | None, typer.Option(
        help="LoadGen scenario for inference (repeatable): single-stream, multi-stream, offline, server.")] = None,
    rules: Annotated[str | None, typer.Option(help="LoadGen minimums: mlperf (600 s) or quick.")] = None,
    target_qps: Annotated[float | None, typer.Option(help="Server: arrival rate; Offline: expected samples/s.")] = None,
    target_latency_ms: Annotated[float | None, typer.Option(help="Server: the p99 latency bound, ms.")] = None,
    sweep: Annotated[Path | None, typer.Option("--sweep", help="Sweep YAML file.", exists=True)] = None,
    sweep_id: Annotated[str | None, typer.Option(help="Id for this sweep (default: generated).")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow progress until all jobs end.")] = True,
    wait_timeout: Annotated[float, typer.Option(help="Stop waiting after this many seconds.")] = 24 * 3600,
    rate_per_minute: Annotated[
        float | None, typer.Option(help="Staged rollout: release at most N jobs per minute, evenly paced.")
    ] = None,
    abort_failure_percent: Annotated[float | None, typer.Option(
        help="Abort the rollout when more than P% of finished jobs failed: unreleased jobs are not "
             "dispatched, queued ones are canceled.")] = None,
    abort_min_jobs: Annotated[int, typer.Option(help="Judge the failure percentage only after M jobs finished.")] = 1,
) -> None:
    """Dispatch jobs and (by default) follow them with a live progress view."""
    cfg = config(ctx)
    try:
        policy = RolloutPolicy(rate_per_minute, abort_failure_percent, abort_min_jobs)
    except RolloutError as exc:
        raise fail(str(exc)) from None
    try:
        if sweep is not None:
            spec = load_sweep(sweep)
        else:
            if not backend or not workload:
                raise fail("give --backend and --workload, or --sweep FILE")
            matrix: dict[str, list[object]] = {"backend": list(backend), "workload": list(workload)}
            if batch_size:
                matrix["batch_size"] = list(batch_size)
            if scenario:
                matrix["scenario"] = list(scenario)
            defaults = {k: v for k, v in {
                "epochs": epochs, "samples": samples, "steps_per_epoch": steps_per_epoch,
                "synthetic": synthetic or None, "precision": precision, "gpus": gpus, "mode": mode,
                "warmup_epochs": warmup_epochs, "repeats": repeats, "timeout_s": timeout,
                "rules": rules, "target_qps": target_qps, "target_latency_ms": target_latency_ms,
            }.items() if v is not None}
            spec = SweepFile(name="cli", matrix=matrix, defaults=defaults)
        sid = sweep_id or (new_id(spec.name) if sweep is not None or len(spec.cases()) > 1 else None)
        jobs = build_jobs(spec.cases(), sid)
    except PlanError as exc:
        raise fail(str(exc)) from None
    store = ResultStore(cfg.store_url)
    try:
        with FleetClient(cfg, store) as fleet:
            targets = spec.targets
            try:
                device_ids = fleet.resolve_targets(
                    list(device or []) or targets.devices, list(tag or []) or targets.tags,
                    all_devices or targets.all,
                )
            except TargetError as exc:
                raise fail(str(exc)) from None
            plan = [Dispatched(d, job) for job in jobs for d in device_ids]
            # a job id is per device; broadcast would share it, explicit targets don't need to
            if sid:
                console.print(f"sweep [bold]{sid}[/bold]: {len(plan)} jobs on {len(device_ids)} device(s)")
            # all at once, or paced and watched when the policy says so (controller/rollout.py)
            with ProgressView(plan, console) if wait else nullcontext() as view:
                rollout = run_rollout(fleet, plan, policy, wait=wait, timeout_s=wait_timeout,
                                      on_event=view.on_event if view else None)
            if not wait:
                for item in plan[:rollout.released]:
                    print(f"{item.job.job_id}\t{item.device_id}")
    except ConnectError as exc:
        raise fail(str(exc)) from None
    if wait:
        _summary(store, plan, {(i.job.job_id, i.device_id) for i in rollout.not_released})
    if policy.staged:
        console.print(rollout.describe(), highlight=False)
    if rollout.aborted:
        raise fail("the rollout was aborted", code=1)
    if wait and rollout.still_open:
        raise fail(f"{len(rollout.still_open)} job(s) still running after {wait_timeout:g} s; "
                   "`controller results` shows them when they end", code=1)


def _summary(store: ResultStore, plan: list[Dispatched], not_dispatched: set[tuple[str, str]]) -> None:
    table = Table(title="results")
    for col in ("job", "device", "backend", "workload", "batch", "outcome", "img/s"):
        table.add_column(col)
    failed = 0
    for item in plan:
        rows = store.results(job_id=item.job.job_id, device_id=item.device_id)
        j = item.job
        if not rows:
            outcome = "NOT DISPATCHED" if (j.job_id, item.device_id) in not_dispatched else "?"
            table.add_row(j.job_id, item.device_id, j.backend.value, j.workload.model, str(j.workload.batch_size),
                          outcome, "")
            continue
        r = rows[0]
        if r.outcome != "OK":
            failed += 1
        detail = f"{r.img_per_s:,.1f}" if r.img_per_s else (r.reason or "")[:60]
        table.add_row(j.job_id, item.device_id, j.backend.value, f"{j.workload.model}/{j.workload.dataset}",
                      str(j.workload.batch_size), r.outcome, detail)
    console.print(table)
    if failed:
        console.print(f"{failed} job(s) did not succeed: `controller results show JOB` has the reason")


