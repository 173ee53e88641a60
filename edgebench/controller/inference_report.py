"""Inference views of stored results (docs/INFERENCE.md): format-neutral rows and tables
that the report's renderers can take, plus a plain Markdown rendering.

- :func:`rows`: one row per LoadGen run, device x runtime x configuration x precision x model
  x scenario, with LoadGen's percentiles, its verdict, equivalence and energy per inference;
  :func:`latest` keeps the newest run of each;
- :func:`best_per_device`: the fastest runtime per (device, model, scenario) among runs that
  are VALID *and* pass equivalence ("fast but wrong never wins"), with the losers' reasons;
- :func:`fleet`: like with like across devices: same model, scenario, precision and rules;
- :func:`latency_cdf`: (latency ms, fraction) points from LoadGen's percentiles, for a CDF chart;
- :func:`server_curve`: (scheduled QPS, p99 ms, valid) of Server runs, for throughput vs latency.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from edgebench.controller.cells import workload_label
from edgebench.schemas import Result

PCTS = ("p50", "p90", "p95", "p99", "p99.9")
_FRACTION = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p97": 0.97, "p99": 0.99, "p99.9": 0.999}


@dataclass(frozen=True)
class InferenceRow:
    job_id: str
    device_id: str
    runtime: str
    provider: str
    precision: str
    model: str
    scenario: str
    rules: str
    valid: bool
    invalid_reason: str
    equivalent: bool
    equivalence_detail: str
    max_rel_err: float
    headline_name: str
    headline: float | None
    latency_ms: dict[str, float]
    samples_per_s: float | None
    mj_per_inference: float | None
    energy_scope: str
    model_sha256: str
    dataset: str = ""
    batch_size: int = 1
    variant: str = ""  # what else tells runs of one runtime apart: "torch.compile reduce-overhead", "EP cuda"
    rules_detail: str = ""  # the LoadGen minimums in force: "min 2000 ms, ≥ 100 queries"
    finished_at: datetime | None = None

    @property
    def workload(self) -> str:
        return workload_label(self.model, self.dataset)

    @property
    def label(self) -> str:
        """The runtime as a comparison names it: "torch · compile reduce-overhead · bf16"."""
        return " · ".join(p for p in (self.runtime, self.variant, self.precision) if p)

    @property
    def rankable(self) -> bool:
        return self.valid and self.equivalent and self.headline is not None

    @property
    def lower_is_better(self) -> bool:
        return self.headline_name.endswith("_ms")


def rows(results: Iterable[Result]) -> list[InferenceRow]:
    out = []
    for res in results:
        for run in res.runs:
            inf = run.inference
            if inf is None:
                continue
            lg = inf.loadgen
            name, value = lg.headline
            mj: float | None = None
            scope = ""
            tel = res.telemetry
            if tel is not None and tel.energy_j and lg.sample_count:
                mj, scope = tel.energy_j * 1e3 / lg.sample_count, "gpu_board"
            elif inf.cpu_energy is not None and inf.cpu_energy.mj_per_inference is not None:
                mj, scope = inf.cpu_energy.mj_per_inference, "cpu_package"
            out.append(InferenceRow(
                job_id=res.job_id, device_id=res.device_id, runtime=inf.runtime, provider=inf.execution_provider,
                precision=res.precision.value, model=res.workload.model, scenario=lg.scenario,
                rules=lg.rules.value, valid=lg.valid, invalid_reason=lg.invalid_reason,
                equivalent=inf.equivalence.passed, equivalence_detail=inf.equivalence.detail,
                max_rel_err=inf.equivalence.max_rel_err, headline_name=name, headline=value,
                latency_ms={k: v / 1e6 for k, v in lg.latency_ns.items()}, samples_per_s=lg.samples_per_s,
                mj_per_inference=mj, energy_scope=scope, model_sha256=inf.model.sha256,
                dataset=res.workload.dataset, batch_size=res.workload.batch_size, variant=_variant(res),
                rules_detail=_rules_detail(lg.effective),
                finished_at=res.finished_at))
    return out


def _rules_detail(effective: dict[str, str]) -> str:
    """The minimums LoadGen ran under (a job may override the rules' own): part of what a run is."""
    parts = []
    if effective.get("min_duration_ms"):
        parts.append(f"min {effective['min_duration_ms']} ms")
    if effective.get("min_query_count"):
        parts.append(f"≥ {effective['min_query_count']} queries")
    if effective.get("max_duration_ms", "0") != "0":
        parts.append(f"max {effective['max_duration_ms']} ms")
    return ", ".join(parts)


def _variant(res: Result) -> str:
    inf = res.job.inference
    parts = []
    if inf is not None and inf.compile_mode:
        parts.append(f"compile {inf.compile_mode}")
    elif res.job.backend.value == "torch":
        parts.append("eager")
    if inf is not None and inf.execution_provider:
        parts.append(f"EP {inf.execution_provider}")
    return " · ".join(parts)


def latest(table: Iterable[InferenceRow]) -> list[InferenceRow]:
    """The newest run per device x runtime x configuration x precision x model x scenario x LoadGen
    minimums x artifact."""
    newest: dict[tuple[object, ...], InferenceRow] = {}
    for r in sorted(table, key=lambda r: (r.finished_at is None, r.finished_at or datetime.min)):
        # the artifact too: a perturbed or user-supplied file is another thing measured, not a rerun
        newest[(r.device_id, r.runtime, r.variant, r.precision, r.model, r.dataset, r.scenario, r.batch_size,
                r.rules, r.rules_detail, r.model_sha256)] = r
    return sorted(newest.values(), key=lambda r: (r.device_id, r.model, r.scenario, r.runtime, r.variant,
                                                  r.precision, r.batch_size))


def best_per_device(table: list[InferenceRow]) -> list[tuple[tuple[str, str, str], InferenceRow | None, list[str]]]:
    """[((device, model, scenario), best rankable row or None, why others were not ranked)]."""
    groups: dict[tuple[str, str, str], list[InferenceRow]] = {}
    for r in table:
        groups.setdefault((r.device_id, r.model, r.scenario), []).append(r)
    out = []
    for key in sorted(groups):
        candidates = [r for r in groups[key] if r.rankable]
        excluded = [f"{r.label}: {_why_not(r)}" for r in groups[key] if not r.rankable]
        best = None
        if candidates:
            best = (min if candidates[0].lower_is_better else max)(candidates, key=lambda r: r.headline or 0.0)
        out.append((key, best, excluded))
    return out


def _why_not(r: InferenceRow) -> str:
    if not r.valid:
        return f"INVALID ({r.invalid_reason or 'LoadGen'})"
    if not r.equivalent:
        return f"not equivalent ({r.equivalence_detail})"
    return "no figure"


def fleet(table: list[InferenceRow]) -> dict[tuple[str, str, str, str, str], list[InferenceRow]]:
    """Like with like across devices: (model, scenario, precision, runtime, rules) -> rows per device."""
    out: dict[tuple[str, str, str, str, str], list[InferenceRow]] = {}
    for r in table:
        out.setdefault((r.model, r.scenario, r.precision, r.runtime, r.rules), []).append(r)
    return out


def fleet_view(table: list[InferenceRow]) -> list[tuple[tuple[str, str, str, int, str], dict[str, InferenceRow]]]:
    """Like with like across devices: one row per (workload, scenario, runtime label, batch, rules),
    one entry per device (the same model, runtime configuration, precision and LoadGen rules)."""
    out: dict[tuple[str, str, str, int, str], dict[str, InferenceRow]] = {}
    for r in table:
        rules = f"{r.rules} ({r.rules_detail})" if r.rules_detail else r.rules
        out.setdefault((r.workload, r.scenario, r.label, r.batch_size, rules), {})[r.device_id] = r
    return sorted(out.items())



def latency_cdf(row: InferenceRow) -> list[tuple[float, float]]:
    points = [(row.latency_ms["min"], 0.0)] if "min" in row.latency_ms else []
    points += [(row.latency_ms[k], f) for k, f in _FRACTION.items() if k in row.latency_ms]
    if "max" in row.latency_ms:
        points.append((row.latency_ms["max"], 1.0))
    return sorted(points)


def server_curve(table: list[InferenceRow]) -> dict[tuple[str, str, str], list[tuple[float, float, bool]]]:
    out: dict[tuple[str, str, str], list[tuple[float, float, bool]]] = {}
    for r in table:
        if r.scenario == "Server" and r.headline is not None and "p99" in r.latency_ms:
            out.setdefault((r.device_id, r.runtime, r.precision), []).append((r.headline, r.latency_ms["p99"], r.valid))
    return {k: sorted(v) for k, v in out.items()}
