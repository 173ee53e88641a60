"""``controller report --history`` on a recorded run history: series per device group, level shifts found at
the right run with what changed, and none claimed where the recorded noise cannot support one.

tests/fixtures/compare_store.sqlite, sweep ``hist-r00`` .. ``hist-r17``: 18 real runs of one torch MLP job
on ``cpu-1core`` (its agent under ``taskset -c 1``) of this shared 2-vCPU machine, one after another
(scripts/make_report_fixture.py --profile history). They range from 21,064 to 108,894 img/s with the
machine's other load (their validity records say so). The steps are PLANTED by re-ingesting the same
runs into a fresh store through the real ingestion path, runs 12 onward with every throughput scaled and
torch's version changed in their fingerprint, as a library upgrade would: each test says which.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgebench.controller.cli import app
from edgebench.controller.groups import GroupBy
from edgebench.controller.history import build_history, explain, fingerprint_changes
from edgebench.controller.render.history_output import load_history
from edgebench.controller.selection import Selection, select, select_facts
from edgebench.controller.store import ResultStore
from edgebench.schemas import Result
from tests.controller.render.stores import FIXTURES, copy_store, reingest, scale_throughput

runner = CliRunner()
STEP_AT = 12  # the first planted run, counting from 0


def _history_rows(tmp: Path) -> list:  # type: ignore[type-arg]
    path = tmp / "recorded.sqlite"
    shutil.copy(FIXTURES / "compare_store.sqlite", path)
    path.chmod(0o644)
    store = ResultStore(f"sqlite:///{path}")
    rows, _ = select(store, Selection(devices=("cpu-1core",)))
    store.close()
    rows.sort(key=lambda r: r.finished_at)
    assert len(rows) == 18
    return rows


def _planted(tmp: Path, factor: float, name: str) -> ResultStore:
    """The recorded history again, runs STEP_AT.. scaled by ``factor`` and on torch 2.14.0 (PLANTED)."""
    rows = _history_rows(tmp)
    store = ResultStore(f"sqlite:///{tmp / name}")
    reingest(rows[:STEP_AT], store)

    def upgrade(res: Result) -> Result:
        fp = res.fingerprint.model_copy(update={"libraries": {**res.fingerprint.libraries, "torch": "2.14.0+cpu"}})
        return scale_throughput(res, factor).model_copy(update={"fingerprint": fp})

    reingest(rows[STEP_AT:], store, upgrade)
    return store


def test_the_recorded_history_shows_no_level_shift(tmp_path: Path) -> None:
    store = ResultStore(f"sqlite:///{tmp_path / 'copy.sqlite'}")
    reingest(_history_rows(tmp_path), store)
    hist = load_history(store, Selection())
    (series,) = hist.series
    assert len(series.runs) == 18 and series.key.backend == "torch" and series.key.group.hardware.startswith("CPU ")
    # a load spike slowed runs 5-9 (their validity records: other processes at 1.4-1.6 CPUs), but not enough,
    # on its own, to pass as a level shift
    assert series.shifts == () and hist.regressions() == []


def test_a_planted_step_is_found_at_the_right_run_with_what_changed(tmp_path: Path) -> None:
    # PLANTED: runs 12-17 at 0.2 x their recorded throughput (a 5-fold slowdown, as a build that falls
    # back to a slow path would give), and torch 2.13.0+cpu -> 2.14.0+cpu in their fingerprints
    store = _planted(tmp_path, 0.2, "step.sqlite")
    hist = load_history(store, Selection())
    (series,) = hist.series
    (shift,) = series.shifts
    assert shift.regression and shift.index == STEP_AT
    assert shift.first.job_id == "hist-r12-cpu-1core-00" and shift.last_before.job_id == "hist-r11-cpu-1core-00"
    assert shift.ratio == pytest.approx(0.2, rel=0.35) and shift.p < 0.01
    assert "torch 2.13.0+cpu -> 2.14.0+cpu" in shift.changes
    md = runner.invoke(app, ["--store", store.url, "report", "--history", "--format", "md"]).output
    assert "hist-r12-cpu-1core-00" in md and "torch 2.13.0+cpu -&gt; 2.14.0+cpu" in md
    doc = json.loads(runner.invoke(app, ["--store", store.url, "report", "--history", "-f", "json"]).output)
    assert doc["kind"] == "edgebench-history"
    (s,) = doc["series"]
    assert s["shifts"][0]["index"] == STEP_AT and s["shifts"][0]["regression"] is True


def test_a_planted_15_percent_step_is_not_claimed_through_this_noise(tmp_path: Path) -> None:
    # PLANTED: runs 12-17 at 0.85 x. The recorded runs spread 5-fold: no rank test can tell 15 % from
    # that, and the history says nothing rather than a guess (benchmarks/report_scale.py finds 12 % steps
    # at the right run where runs vary by 3 %)
    store = _planted(tmp_path, 0.85, "small.sqlite")
    assert load_history(store, Selection()).regressions() == []


def test_history_formats_groupings_and_suspect_runs(tmp_path: Path) -> None:
    store = _planted(tmp_path, 0.2, "formats.sqlite")
    for fmt, needle in (("terminal", "Regressions and improvements"), ("md", "| workload | backend |"),
                        ("csv", "workload,backend,config,runs"), ("html", "<svg")):
        out = runner.invoke(app, ["--store", store.url, "report", "--history", "--format", fmt])
        assert out.exit_code == 0, out.output
        assert needle in out.output, fmt
    html = runner.invoke(app, ["--store", store.url, "report", "--history", "-f", "html"]).output
    assert "<script" not in html and "level shifts" in html
    rows = select_facts(store, Selection())
    assert len(build_history(rows, group_by=GroupBy.device).series[0].runs) == 18
    # every recorded run but one is suspect (the shared machine): leaving them out leaves too few runs
    left = build_history(rows, exclude_suspect=True)
    assert left.excluded_suspect == 17 and left.series[0].shifts == ()
    assert explain(left, store).series[0].runs == left.series[0].runs


def test_fingerprint_differences_name_driver_image_and_libraries(tmp_path: Path) -> None:
    src = copy_store(tmp_path, cpu=False, gpu=True)
    try:
        res = next(r.result() for r in src.results() if r.outcome == "OK")
    finally:
        src.close()
    assert res is not None
    fp = res.fingerprint
    other = res.model_copy(update={"fingerprint": fp.model_copy(update={
        "gpus": [g.model_copy(update={"driver": "590.1"}) for g in fp.gpus], "container_digest": "sha256:beef",
        "libraries": {**fp.libraries, "numpy": "3.0.0"}})})
    changes = fingerprint_changes(res, other)
    assert f"driver {fp.gpus[0].driver} -> 590.1" in changes
    assert "image digest none -> sha256:beef" in changes
    assert any(c.startswith("numpy ") and c.endswith("-> 3.0.0") for c in changes)
    assert fingerprint_changes(res, res)[0].startswith("no fingerprint difference")
    assert fingerprint_changes(None, res) == ("fingerprint unavailable",)
