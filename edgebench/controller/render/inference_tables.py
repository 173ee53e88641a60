"""The report's inference sections (MLPerf LoadGen results), as format-neutral tables.

controller/inference_report.py makes the rows (one per device x runtime configuration x
precision x model x scenario, the latest run of each); this module lays them out in the
report's table model (controller/render/table.py) so every renderer draws them:

- latency percentiles per run, with LoadGen's verdict, equivalence and energy per inference,
  and a latency CDF chart (HTML) of the SingleStream / MultiStream / Server runs;
- the best runtime per device within accuracy tolerance: only runs LoadGen called VALID *and*
  that passed equivalence are ranked ("fast but wrong" never wins), the others say why not;
- a fleet view: one row per (workload, scenario, runtime configuration, batch, rules), one
  column per device, so only like is compared with like;
- Server runs: throughput (scheduled QPS) against p99 latency, a chart when there are any.
"""

from __future__ import annotations

from edgebench.controller.inference_report import (
    PCTS,
    InferenceRow,
    best_per_device,
    fleet_view,
    server_curve,
)
from edgebench.controller.render.table import Chart, Column, Section, Style, Table, Value, text


def _fmt(v: float) -> str:
    """4 significant digits below 1,000, whole numbers with separators above (never 8.61e+04)."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _num(v: float | None) -> Value:
    if v is None:
        return Value("–", style="na")
    return Value(_fmt(v), raw=v)


def headline(r: InferenceRow, style: Style = "") -> Value:
    """LoadGen's figure for the scenario, or INVALID (never a number for an INVALID run)."""
    if not r.valid:
        return Value("INVALID", raw=None, style="bad", title=r.invalid_reason[:300])
    if r.headline is None:
        return Value("–", style="na")
    unit = "ms" if r.lower_is_better else "/s"
    name = r.headline_name.replace("_ms", "").replace("_per_s", "")
    return Value(f"{_fmt(r.headline)} {unit}", raw=r.headline, style=style, extra=f"({name})")


def _rules(r: InferenceRow) -> Value:
    return Value(f"{r.rules} ({r.rules_detail})" if r.rules_detail else r.rules, raw=r.rules)


def _equivalence(r: InferenceRow) -> Value:
    if r.equivalent:
        return Value("pass", raw=True, title=r.equivalence_detail[:300])
    return Value("FAIL", raw=False, style="bad", title=r.equivalence_detail[:300],
                 extra=f"(max rel err {r.max_rel_err:.3g})")


def _energy(r: InferenceRow) -> Value:
    if r.mj_per_inference is None:
        return Value("–", style="na")
    return Value(f"{r.mj_per_inference:.3g}", raw=r.mj_per_inference, extra=f"({r.energy_scope})")


def latency_table(rows: list[InferenceRow]) -> Table:
    cols = (Column("device", "device"), Column("workload", "workload"), Column("scenario", "scenario"),
            Column("runtime", "runtime"), Column("batch_size", "batch", numeric=True),
            Column("provider", "provider"), Column("rules", "rules"),
            Column("figure", "LoadGen result", numeric=True),
            *[Column(f"{p}_ms", f"{p} ms", numeric=True, unit="ms") for p in PCTS],
            Column("samples_per_s", "samples/s", numeric=True, unit="1/s"),
            Column("mj_per_inference", "mJ/inference", numeric=True, unit="mJ"),
            Column("equivalence", "equivalence"))
    body = []
    for r in rows:
        body.append((text(r.device_id), text(r.workload), text(r.scenario), text(r.label),
                     text(r.batch_size), text(r.provider[:40]),
                     _rules(r), headline(r),
                     *[_num(r.latency_ms.get(p)) for p in PCTS], _num(r.samples_per_s), _energy(r),
                     _equivalence(r)))
    latency_rows = [r for r in rows if r.scenario in ("SingleStream", "MultiStream", "Server") and r.valid
                    and "p50" in r.latency_ms]
    chart = Chart("latency_cdf", latency_rows, "Latency CDF per run, from LoadGen's percentiles (min, p50 ... p99.9, "
                                              "max); log scale.") if latency_rows else None
    return Table("inference-latency", "Latency percentiles (MLPerf LoadGen)", cols, tuple(body),
                 lead="One row per device x runtime configuration x precision x model x scenario (the latest run). "
                      "LoadGen takes every timestamp and gives the verdict: an INVALID run shows no figure.",
                 chart=chart, compact=("device", "workload", "scenario", "runtime", "figure", "p90_ms",
                                       "equivalence"))


def best_table(rows: list[InferenceRow]) -> Table:
    cols = (Column("device", "device"), Column("workload", "workload"), Column("scenario", "scenario"),
            Column("best", "best runtime"), Column("figure", "LoadGen result", numeric=True),
            Column("not_ranked", "not ranked (why)"))
    body = []
    for (device, _model, scenario), best, excluded in best_per_device(rows):
        group = [r for r in rows if r.device_id == device and r.model == _model and r.scenario == scenario]
        workload = group[0].workload if group else _model
        body.append((text(device), text(workload), text(scenario),
                     text(best.label if best else "none: no VALID and equivalent run", "win" if best else "bad"),
                     headline(best, "win") if best else Value("–", style="na"),
                     text("; ".join(excluded)[:400] or "–")))
    return Table("inference-best", "Best runtime per device within accuracy tolerance", cols, tuple(body),
                 lead="Ranked among the runs LoadGen called VALID that also passed the equivalence check (outputs "
                      "of the reference framework on the same weights, within the precision's tolerance): a fast "
                      "but wrong runtime never wins. SingleStream / MultiStream: lowest tail latency; Offline / "
                      "Server: highest throughput.")


def fleet_table(rows: list[InferenceRow]) -> Table | None:
    view = fleet_view(rows)
    devices = sorted({r.device_id for r in rows})
    if len(devices) < 2:
        return None
    cols = (Column("workload", "workload"), Column("scenario", "scenario"), Column("runtime", "runtime"),
            Column("batch_size", "batch", numeric=True), Column("rules", "rules"),
            *[Column(d, d, numeric=True) for d in devices])
    body = []
    for (workload, scenario, label, batch, rules), by_device in view:  # rules: with its minimums
        ranked = [r for r in by_device.values() if r.rankable]
        best = None
        if len(ranked) > 1:
            best = (min if ranked[0].lower_is_better else max)(ranked, key=lambda r: r.headline or 0.0)
        cells = []
        for d in devices:
            r = by_device.get(d)
            if r is None:
                cells.append(Value("", style="na"))
            elif not r.equivalent:
                cells.append(Value("not equivalent", style="bad", title=r.equivalence_detail[:300]))
            else:
                cells.append(headline(r, "win" if r is best else ""))
        body.append((text(workload), text(scenario), text(label), text(batch), text(rules), *cells))
    return Table("inference-fleet", "Fleet view: like with like", cols, tuple(body),
                 lead="The same model, scenario, runtime configuration, precision, batch and LoadGen rules on each "
                      "device; the best device of a row is highlighted where two or more ran it VALID and "
                      "equivalent.")


def server_table(rows: list[InferenceRow]) -> Table | None:
    curves = server_curve(rows)
    if not curves:
        return None
    cols = (Column("device", "device"), Column("runtime", "runtime"), Column("qps", "scheduled QPS", numeric=True),
            Column("p99_ms", "p99 ms", numeric=True, unit="ms"), Column("valid", "LoadGen"))
    body = tuple((text(d), text(f"{rt} · {prec}"), _num(q), _num(p99), text("VALID" if ok else "INVALID",
                                                                              "" if ok else "bad"))
                 for (d, rt, prec), points in curves.items() for q, p99, ok in points)
    return Table("inference-server", "Server: throughput vs latency", cols, body,
                 chart=Chart("server_curve", curves, "Server runs: p99 latency against the scheduled QPS, per device "
                                                     "and runtime (hollow: INVALID)."))


def inference_section(rows: list[InferenceRow]) -> Section | None:
    if not rows:
        return None
    blocks = [latency_table(rows), best_table(rows)]
    for extra in (fleet_table(rows), server_table(rows)):
        if extra is not None:
            blocks.append(extra)
    return Section("inference", "Inference (MLPerf LoadGen)",
                   lead="Inference jobs under the official LoadGen (docs/INFERENCE.md). They are not among the "
                        "img/s tables: a SingleStream or MultiStream figure is a latency.", blocks=tuple(blocks))

