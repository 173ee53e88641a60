"""The recorded stores the report tests read (see scripts/make_report_fixture.py).

- tests/fixtures/report_store.sqlite: two CPU devices of this machine kind
  (cpu-2core, and cpu-1core whose agent ran under ``taskset -c 0``), three
  backends (keras-jax, keras-torch, torch), real training on random data,
  2 repeats each, recorded through real agents and a real Mosquitto.
- tests/fixtures/report_store_gpu.sqlite: one NVIDIA H200 (the `device`
  machine), the same three backends on MLP, CNN and synthetic ResNet-50, NVML
  telemetry and time series, and one real CUDA out-of-memory (torch, ResNet-50
  bs 512 capped at 2 % of the card).

- tests/fixtures/report_store_scaling.sqlite: a copy of
  docs/results/h200-2026-11-28/results-scaling.db (another engineer's run on a
  4x H200 machine): ImageNet ResNet-50 bs 256 per GPU, bf16, on 1, 2 and 4 GPUs
  with native torch DDP and Keras-JAX DataParallel.

Tests open copies, never the fixtures themselves (SQLite writes WAL files
next to a store it opens).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgebench.controller.store import ResultStore
from edgebench.schemas import ErrorType, JobEvent, JobState, Result, ThroughputSummary

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CPU_STORE = FIXTURES / "report_store.sqlite"
GPU_STORE = FIXTURES / "report_store_gpu.sqlite"
SCALING_STORE = FIXTURES / "report_store_scaling.sqlite"
CPU_DEVICES = ("cpu-1core", "cpu-2core")
BACKENDS = ("keras-jax", "keras-torch", "torch")


def _merge(target_url: str, sources: list[Path]) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_report_fixture", Path(__file__).resolve().parents[3] / "scripts" / "make_report_fixture.py")
    assert spec and spec.loader
    module = sys.modules.get(spec.name) or importlib.util.module_from_spec(spec)
    if spec.name not in sys.modules:
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    module.merge(target_url, sources)


def copy_store(tmp: Path, gpu: bool = False, cpu: bool = True, scaling: bool = False) -> ResultStore:
    """A private copy of the chosen recorded stores, merged into one."""
    chosen = [p for p, want in ((CPU_STORE, cpu), (GPU_STORE, gpu), (SCALING_STORE, scaling)) if want]
    path = tmp / ("report-" + "-".join(p.stem.removeprefix("report_store").strip("_") or "cpu" for p in chosen)
                  + ".sqlite")
    shutil.copy(chosen[0], path)
    path.chmod(0o644)
    url = f"sqlite:///{path}"
    if len(chosen) > 1:
        _merge(url, chosen[1:])
    return ResultStore(url)


def reingest(rows: list[Any], target: ResultStore, transform: Callable[[Result], Result] | None = None,
             job_suffix: str = "") -> int:
    """Store recorded results again through the real ingestion path (dispatch + terminal event), after
    ``transform`` (e.g. a planted slowdown, said so by the caller). Returns how many were stored."""
    n = 0
    for row in rows:
        res = row.result()
        if res is None:
            continue
        if transform is not None:
            res = transform(res)
        job_id = res.job_id + job_suffix
        job = res.job.model_copy(update={"job_id": job_id})
        res = res.model_copy(update={"job_id": job_id, "job": job})
        target.record_dispatch(row.device_id, job)
        ok = row.outcome == "OK"
        target.ingest_event(JobEvent(job_id=job_id, device_id=row.device_id, attempt=row.attempt, seq=1000,
                                     state=JobState.SUCCEEDED if ok else JobState.FAILED,
                                     at=res.finished_at, result=res if ok else None, sweep_id=job.sweep_id,
                                     error_type=None if ok else ErrorType.BACKEND_ERROR))
        n += 1
    return n


def scale_throughput(res: Result, factor: float) -> Result:
    """The same result with every throughput figure multiplied by ``factor`` (a planted change)."""
    def tp(t: ThroughputSummary) -> ThroughputSummary:
        return t.model_copy(update={k: getattr(t, k) * factor for k in
                                    ("window_img_per_s", "median_img_per_s", "mean_img_per_s", "std_img_per_s")})

    runs = [r.model_copy(update={"throughput": tp(r.throughput)}) for r in res.runs]
    spread = res.repeat_spread.model_copy(update={k: getattr(res.repeat_spread, k) * factor for k in
                                                  ("min_img_per_s", "max_img_per_s", "std_img_per_s")})
    return res.model_copy(update={"summary": tp(res.summary), "runs": runs, "repeat_spread": spread})
