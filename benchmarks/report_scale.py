#!/usr/bin/env python3
"""``controller compare`` and ``controller report --history`` over 100,000 stored results, SQLite and PostgreSQL.

Builds a store of N results (default 100,000) through the real ingestion path
(``ResultStore.ingest_events``, batched like a collector; dispatch records
inserted in bulk), then times, each as a fresh ``controller`` process (import
time included) and in-process (the library call alone):

- ``compare`` of the first half of the history against the second (time
  ranges: every result is read), as Markdown and as JSON (which lists every
  job id of every cell),
- ``compare`` of two nightly sweeps,
- ``report --history`` over every result (Markdown, and JSON with every run).

The results are clones of real recorded ones (tests/fixtures/report_store_gpu.sqlite,
one H200, and tests/fixtures/report_store.sqlite's cpu-2core device): 40 devices in
3 device groups (the H200 at two power limits, the CPU), one sweep per night over 200 nights,
each figure the recorded one times a log-normal factor (sd 3 %), and a planted 12 % step in a quarter of the
series from night 150, which the history must find. Their time series are dropped
(a stored result is then about 5 KB instead of 30): compare and history never read
result_json (controller/facts.py), so its size changes only the time to build the store.

    .venv/bin/python benchmarks/report_scale.py --out /tmp/scale           # SQLite and PostgreSQL
    .venv/bin/python benchmarks/report_scale.py --n 20000 --backends sqlite

Writes OUT/report_scale.json; docs/PERFORMANCE.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgebench.controller.store import ResultStore, jobs  # noqa: E402
from edgebench.schemas import JobEvent, JobState, Result  # noqa: E402

TEMPLATES = (REPO / "tests/fixtures/report_store_gpu.sqlite", REPO / "tests/fixtures/report_store.sqlite")
NIGHTS = 200
STEP_NIGHT = 150
STEP = 0.88
DEVICES_PER_GROUP = 10


def templates() -> list[Result]:
    out = []
    for path in TEMPLATES:
        copy = Path("/tmp") / f"report-scale-template-{path.name}"
        shutil.copy(path, copy)
        store = ResultStore(f"sqlite:///{copy}")
        for row in store.results():
            # one recorded device per template kind: cpu-1core ran pinned to one core, which its
            # fingerprint cannot show, so its figures would be a second level inside one group
            res = row.result() if row.outcome == "OK" and row.device_id != "cpu-1core" else None
            if res is not None:
                out.append(res.model_copy(update={"timeseries": None}))
        store.close()
        copy.unlink()
    return out


def _scaled(res: Result, factor: float) -> Result:
    def tp(t: Any) -> Any:
        return t.model_copy(update={k: getattr(t, k) * factor for k in
                                    ("window_img_per_s", "median_img_per_s", "mean_img_per_s", "std_img_per_s")})

    return res.model_copy(update={"summary": tp(res.summary),
                                  "runs": [r.model_copy(update={"throughput": tp(r.throughput)}) for r in res.runs]})


def build(url: str, n: int, seed: int = 7) -> dict[str, Any]:
    """n results: templates x devices x nights, in ingestion batches of 500."""
    rng = random.Random(seed)
    base = templates()
    # 4 device groups: the H200 templates on gpu-a/gpu-b devices (two power limits), the CPU ones on cpu-a/cpu-b
    gpu = [t for t in base if t.gpus > 0]
    cpu = [t for t in base if t.gpus == 0]
    groups = []
    for name, tmpl, limit in (("gpu-a", gpu, 700.0), ("gpu-b", gpu, 500.0), ("cpu-a", cpu, None),
                              ("cpu-b", cpu, None)):
        for d in range(DEVICES_PER_GROUP):
            groups.append((f"{name}-{d:02d}", tmpl, limit, name))
    per_night = max(1, n // NIGHTS)
    stepped = {t.job_id for i, t in enumerate(base) if i % 4 == 0}
    store = ResultStore(url)
    start = datetime(2026, 5, 1, 2, 0, tzinfo=timezone.utc)
    made = 0
    t0 = time.perf_counter()
    batch: list[JobEvent] = []
    specs: list[dict[str, Any]] = []

    def flush() -> None:
        with store.engine.begin() as conn:
            conn.execute(jobs.insert(), specs)
        store.ingest_events(batch)
        batch.clear()
        specs.clear()

    for night in range(NIGHTS):
        sweep = f"nightly-{(start + timedelta(days=night)):%Y%m%d}"
        for k in range(per_night):
            if made >= n:
                break
            device, tmpl, limit, _ = groups[(night * per_night + k) % len(groups)]
            t = tmpl[(night * per_night + k) // len(groups) % len(tmpl)]
            factor = math.exp(rng.gauss(0.0, 0.03)) * (STEP if night >= STEP_NIGHT and t.job_id in stepped else 1.0)
            job_id = f"{sweep}-{made:06d}"
            job = t.job.model_copy(update={"job_id": job_id, "sweep_id": sweep})
            at = start + timedelta(days=night, seconds=30 * k)
            fp = t.fingerprint
            if limit is not None and fp.gpus:
                fp = fp.model_copy(update={"gpus": [g.model_copy(update={"power_limit_w": limit}) for g in fp.gpus]})
            res = _scaled(t, factor).model_copy(update={"job_id": job_id, "device_id": device, "job": job,
                                                        "fingerprint": fp, "finished_at": at})
            specs.append({"job_id": job_id, "device_id": device, "sweep_id": sweep, "backend": job.backend.value,
                          "spec_json": job.model_dump_json(), "state": "DISPATCHED", "dispatched_at": at,
                          "updated_at": at})
            batch.append(JobEvent(job_id=job_id, device_id=device, seq=5, state=JobState.SUCCEEDED, at=at,
                                  result=res, sweep_id=sweep))
            made += 1
            if len(batch) >= 500:
                flush()
    if batch:
        flush()
    built_s = time.perf_counter() - t0
    store.close()
    return {"results": made, "build_s": round(built_s, 1), "ingest_per_s": round(made / built_s),
            "planted_series": sum(1 for t in base if t.job_id in stepped) * 2 - sum(
                1 for t in cpu if t.job_id in stepped),  # GPU templates in two groups, CPU ones in one
            "nights": NIGHTS,
            "sweeps": [f"nightly-{start:%Y%m%d}", f"nightly-{start + timedelta(days=NIGHTS - 1):%Y%m%d}"],
            "middle": (start + timedelta(days=NIGHTS // 2)).isoformat()}


def _cli(url: str, *args: str) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgebench.controller.cli", "--store", url, *args],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200"})
    return time.perf_counter() - t0, proc.returncode, (proc.stdout + proc.stderr)[-600:]


def measure(url: str, facts: dict[str, Any]) -> dict[str, Any]:
    from edgebench.controller.compare import compare, parse_side
    from edgebench.controller.render.history_output import history_doc
    from edgebench.controller.selection import Selection

    first, last = facts["sweeps"]
    mid = facts["middle"][:10]
    out: dict[str, Any] = {}
    cases = {
        "compare_halves": ["compare", f"..{mid}", f"{mid}..", "--format", "md"],
        "compare_halves_json": ["compare", f"..{mid}", f"{mid}..", "--format", "json"],  # every job id listed
        "compare_two_sweeps": ["compare", first, last, "--format", "md"],
        "history_md": ["report", "--history", "--format", "md"],
        "history_json": ["report", "--history", "--format", "json"],  # every run of every series
    }
    for name, args in cases.items():
        runs = [_cli(url, *args) for _ in range(3)]
        walls = sorted(r[0] for r in runs)
        out[name] = {"cli_wall_s_median": round(walls[1], 2), "cli_wall_s_runs": [round(w, 2) for w in walls],
                     "rc": runs[0][1]}
        if runs[0][1] != 0:
            out[name]["tail"] = runs[0][2]
    # in-process: the library calls alone (no interpreter start, no imports)
    store = ResultStore(url)
    t0 = time.perf_counter()
    comp = compare(parse_side(f"..{mid}", url), parse_side(f"{mid}..", url))
    out["compare_halves"]["library_s"] = round(time.perf_counter() - t0, 2)
    out["compare_halves"]["cells"] = len(comp.cells)
    out["compare_halves"]["verdicts"] = comp.counts()
    t0 = time.perf_counter()
    hist, _doc = history_doc(store, Selection())
    out["history_md"]["library_s"] = round(time.perf_counter() - t0, 2)
    out["history_md"]["series"] = len(hist.series)
    out["history_md"]["runs"] = sum(len(s.runs) for s in hist.series)
    regressions = hist.regressions()
    out["history_md"]["regressions"] = len(regressions)
    step_day = (datetime(2026, 5, 1) + timedelta(days=STEP_NIGHT)).date()
    # found at the right run: the first run on or after the planted night, the one before it earlier
    out["history_md"]["regressions_at_planted_run"] = sum(
        1 for r in regressions if r.first.finished_at and r.last_before.finished_at
        and r.last_before.finished_at.date() < step_day <= r.first.finished_at.date())
    out["history_md"]["planted_series"] = facts["planted_series"]
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/report-scale"))
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--backends", default="sqlite,postgresql")
    args = ap.parse_args()
    # a TERM stops the throw-away PostgreSQL server too (the finally below), like an interrupt
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "n": args.n, "load_avg_start": os.getloadavg(),
    }
    for backend in args.backends.split(","):
        if backend == "sqlite":
            db = args.out / "scale.sqlite"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            url = f"sqlite:///{db}"
            facts = build(url, args.n)
            facts["db_bytes"] = db.stat().st_size
            result["sqlite"] = {"build": facts, **measure(url, facts)}
        elif backend == "postgresql":
            from tests.pg import PgServer

            server = PgServer().start()
            try:
                url = server.create_database()
                facts = build(url, args.n)
                result["postgresql"] = {"build": facts, **measure(url, facts)}
            finally:
                server.stop()
        print(json.dumps(result.get(backend), indent=1), flush=True)
    result["load_avg_end"] = os.getloadavg()
    (args.out / "report_scale.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out / 'report_scale.json'}")


if __name__ == "__main__":
    main()
