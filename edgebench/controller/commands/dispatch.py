"""``controller dispatch``: one job, a list, or a sweep file, to devices."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer

from edgebench.common.console import Column, Output, markup
from edgebench.controller.artifact_delivery import Delivery
from edgebench.controller.commands._options import BACKENDS, WORKLOAD_NAMES, JsonOpt, config, output, write_store
from edgebench.controller.errors import ControllerError, ControllerUsageError
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.plan import SweepFile, build_jobs, load_sweep, new_id
from edgebench.controller.progress import ProgressView
from edgebench.controller.requeue import requeue_rounds
from edgebench.controller.rollout import RolloutPolicy, run_rollout
from edgebench.controller.store import ResultStore
from edgebench.schemas import AgentStatus

SUMMARY = (
    Column("job_id", "job"), Column("device_id", "device"), Column("backend"), Column("workload"),
    Column("batch_size", "batch"), Column("outcome", style=lambda v: None if v == "OK" else "red"),
    Column("detail", "img/s or reason"),
)


def dispatch(
    ctx: typer.Context,
    device: Annotated[list[str] | None, typer.Option("--device", "-d", help="Target device id (repeatable).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="All online devices with this tag.")] = None,
    all_devices: Annotated[bool, typer.Option("--all", help="All online devices.")] = False,
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", help=f"Backend (repeatable): {BACKENDS}.", show_default=False)] = None,
    workload: Annotated[list[str] | None, typer.Option(
        "--workload", "-w", help=f"Catalogue workload (repeatable): {WORKLOAD_NAMES}.", show_default=False)] = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="Registered model (repeatable): name@version, name (latest) or sha256:DIGEST "
        "(`controller models list`).", show_default=False)] = None,
    batch_size: Annotated[list[int] | None, typer.Option(
        "--batch-size", help="Batch size (repeatable) [default: the workload's].", show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Epochs, warm-up included [default: the workload's].", show_default=False)] = None,
    samples: Annotated[int | None, typer.Option(
        help="Use only the first N training samples [default: all].", show_default=False)] = None,
    steps_per_epoch: Annotated[int | None, typer.Option(
        help="Fixed steps per epoch [default: the workload's].", show_default=False)] = None,
    synthetic: Annotated[bool, typer.Option(help="Random data of the real shapes.")] = False,
    precision: Annotated[str | None, typer.Option(
        help="fp32, bf16, fp16, or int8 for the inference runtimes [default: fp32].", show_default=False)] = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs per job, 0 = CPU [default: 0].", show_default=False)] = None,
    mode: Annotated[str | None, typer.Option(help="train or infer [default: train].", show_default=False)] = None,
    warmup_epochs: Annotated[int | None, typer.Option(
        help="Epochs excluded from the window [default: 1].", show_default=False)] = None,
    repeats: Annotated[int | None, typer.Option(
        help="Run N times, report the median [default: 1].", show_default=False)] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Per-job timeout, seconds [default: 3600].", show_default=False)] = None,
    scenario: Annotated[list[str] | None, typer.Option(
        help="LoadGen scenario for inference (repeatable): single-stream, multi-stream, offline, server.",
        show_default=False)] = None,
    rules: Annotated[str | None, typer.Option(
        help="LoadGen minimums: mlperf (600 s) or quick.", show_default=False)] = None,
    target_qps: Annotated[float | None, typer.Option(
        help="Server: arrival rate; Offline: expected samples/s.", show_default=False)] = None,
    target_latency_ms: Annotated[float | None, typer.Option(
        help="Server: the p99 latency bound, ms.", show_default=False)] = None,
    sweep: Annotated[Path | None, typer.Option("--sweep", help="Sweep YAML file.", exists=True)] = None,
    sweep_id: Annotated[str | None, typer.Option(
        help="Id for this sweep [default: generated when there is more than one job].", show_default=False)] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow progress until all jobs end.")] = True,
    wait_timeout: Annotated[float, typer.Option(help="Stop waiting after this many seconds.")] = 24 * 3600,
    rate_per_minute: Annotated[float | None, typer.Option(
        help="Staged rollout: release at most N jobs per minute, evenly paced.", show_default=False)] = None,
    abort_failure_percent: Annotated[float | None, typer.Option(
        help="Abort the rollout when more than P% of finished jobs failed: unreleased jobs are not "
             "dispatched, queued ones are canceled.", show_default=False)] = None,
    abort_min_jobs: Annotated[int, typer.Option(help="Judge the failure percentage only after M jobs finished.")] = 1,
    requeue_suspect: Annotated[int | None, typer.Option(
        min=0, max=5, help="Rerun jobs whose validity record is suspect, up to N times (default: the sweep's).",
        show_default=False)] = None,
    serve_artifacts: Annotated[bool, typer.Option(
        "--serve-artifacts/--no-serve-artifacts",
        help="Serve registered models' files while waiting (artifact_delivery http; docs/MODELS.md).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Dispatch jobs and (by default) follow them with a live progress view.

    Exits 1 when any job did not succeed (REJECTED, FAILED, TIMED_OUT, OOM, CANCELED) or is still
    running when --wait-timeout ends."""
    cfg = config(ctx)
    out = output(as_json)
    policy = RolloutPolicy(rate_per_minute, abort_failure_percent, abort_min_jobs)
    if sweep is not None:
        spec = load_sweep(sweep)
    else:
        if not backend or not (workload or model):
            raise ControllerUsageError("give --backend and --workload (or --model), or --sweep FILE")
        if workload and model:
            raise ControllerUsageError("give --workload or --model, not both")
        matrix: dict[str, list[object]] = {"backend": list(backend)}
        if workload:
            matrix["workload"] = list(workload)
        else:
            matrix["model"] = list(model or [])
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
    store = write_store(ctx)
    delivery = Delivery(cfg, store)
    cases = spec.cases()
    jobs = build_jobs(cases, sid, lambda ref, job_id: (delivery.job_reference(ref, job_id),
                                                       delivery.registry.resolve(ref).dataset))
    # the embedded artifact server, for as long as this command waits (docs/MODELS.md)
    served = cfg.artifact_delivery == "http" and any(j.model_artifact for j in jobs)
    serving = served and wait and serve_artifacts
    if served and not serving:
        out.warn(f"the jobs' model files are fetched from {delivery.base_url}: keep `controller models serve` "
                 "running until the agents have them (docs/MODELS.md)")
    with FleetClient(cfg, store) as fleet, delivery.server() if serving else nullcontext():
        targets = spec.targets
        device_ids = fleet.resolve_targets(list(device or []) or targets.devices, list(tag or []) or targets.tags,
                                           all_devices or targets.all)
        for warning in absent_targets(device_ids, fleet.statuses, store, cfg.fleet, cfg.job_expiry_s):
            out.warn(warning)
        plan = [Dispatched(d, job) for job in jobs for d in device_ids]
        # a job id is per device; broadcast would share it, explicit targets don't need to
        if sid:
            out.note(f"sweep [bold]{markup(sid)}[/bold]: {len(plan)} jobs on {len(device_ids)} device(s)")
        # all at once, or paced and watched when the policy says so (controller/rollout.py)
        progress = Output(console=out.err) if as_json else out  # under --json, progress is a diagnostic
        with ProgressView(plan, progress.console) if wait else nullcontext() as view:
            rollout = run_rollout(fleet, plan, policy, wait=wait, timeout_s=wait_timeout,
                                  on_event=view.on_event if view else None)
        requeue = spec.requeue_suspect if requeue_suspect is None else requeue_suspect
        if wait and requeue and not rollout.aborted:  # controller/requeue.py
            out.note(markup(requeue_rounds(fleet, store, plan, policy, requeue, timeout_s=wait_timeout).describe()))
    released = plan[:rollout.released]
    if not wait:
        if as_json:
            out.json({"sweep_id": sid, "jobs": [{"job_id": i.job.job_id, "device_id": i.device_id,
                                                 "backend": i.job.backend.value} for i in released]})
        else:
            for item in released:
                print(f"{item.job.job_id}\t{item.device_id}")
        return
    records = summary_records(store, plan, {(i.job.job_id, i.device_id) for i in rollout.not_released})
    failed = [r for r in records if r["outcome"] != "OK"]
    if as_json:
        out.json({"sweep_id": sid, "jobs": records, "succeeded": len(records) - len(failed),
                  "did_not_succeed": len(failed), "rollout": rollout.describe() if policy.staged else None,
                  "aborted": rollout.aborted})
    else:
        out.table(SUMMARY, records, title="results")
        if policy.staged:
            out.print(markup(rollout.describe()))
    if rollout.aborted:
        raise ControllerError(f"the rollout was aborted: {rollout.reason}")
    if rollout.still_open:
        raise ControllerError(f"{len(rollout.still_open)} job(s) still running after {wait_timeout:g} s; "
                              "`controller results` shows them when they end")
    if failed:
        raise ControllerError(f"{len(failed)} of {len(records)} job(s) did not succeed "
                              f"({', '.join(sorted({r['outcome'] for r in failed}))}): "
                              "`controller results show JOB` has the reason")


def absent_targets(device_ids: list[str], statuses: dict[str, AgentStatus], store: ResultStore, fleet: str,
                   expiry_s: float) -> list[str]:
    """Warnings for targets that are not online now: their jobs wait in the broker until they connect."""
    known = {s.device_id: s for s in store.devices()}
    now = datetime.now(timezone.utc)
    warnings = []
    for d in device_ids:
        status = statuses.get(d) or known.get(d)
        waits = f"its jobs wait in the broker for up to {expiry_s / 3600:g} h"
        if status is None:
            # a broker queues jobs only for a client that has a persistent session, i.e. has connected before
            warnings.append(f"device {markup(d)} has never announced itself in fleet {markup(fleet)} "
                            f"(a typo, another fleet, or an agent still starting?); its jobs wait in the broker "
                            f"only if it has connected to it before (up to {expiry_s / 3600:g} h); under --wait "
                            f"it is asked about them again when it announces itself")
        elif not status.online or d not in statuses:
            ago = (now - status.at).total_seconds()
            warnings.append(f"device {markup(d)} is offline (last seen {status.at:%Y-%m-%d %H:%M:%S} UTC, "
                            f"{_age(ago)} ago); {waits}")
    return warnings


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def summary_records(store: ResultStore, plan: list[Dispatched], not_dispatched: set[tuple[str, str]]
                    ) -> list[dict[str, Any]]:
    """One record per planned job: its outcome and img/s (or reason) from the store."""
    records = []
    for item in plan:
        j = item.job
        rec: dict[str, Any] = {"job_id": j.job_id, "device_id": item.device_id, "backend": j.backend.value,
                               "workload": f"{j.workload.model}/{j.workload.dataset}",
                               "batch_size": j.workload.batch_size, "img_per_s": None, "error_type": None,
                               "reason": None}
        rows = store.results(job_id=j.job_id, device_id=item.device_id)
        if not rows:
            rec["outcome"] = "NOT DISPATCHED" if (j.job_id, item.device_id) in not_dispatched else "NO RESULT"
            rec["detail"] = ""
        else:
            r = rows[0]
            rec.update(outcome=r.outcome, img_per_s=r.img_per_s, error_type=r.error_type, reason=r.reason,
                       detail=f"{r.img_per_s:,.1f}" if r.img_per_s else (r.reason or ""))
        records.append(rec)
    return records
