"""The results store: idempotent ingestion, failed jobs described from their spec."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from edgebench.controller.store import MIGRATIONS, ResultStore
from edgebench.schemas import ErrorType, JobEvent, JobState
from tests.helpers import sleep_job

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _event(seq: int, state: JobState, **kw: object) -> JobEvent:
    return JobEvent(job_id="j1", device_id="box", seq=seq, state=state, at=datetime.now(timezone.utc), **kw)  # type: ignore[arg-type]


def test_events_and_results_stored_once(tmp_path) -> None:
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    store.record_dispatch("box", sleep_job("j1"))
    assert store.ingest_event(_event(0, JobState.QUEUED))
    assert not store.ingest_event(_event(0, JobState.QUEUED))
    ev = _event(1, JobState.FAILED, error_type=ErrorType.OOM, reason="CUDA out of memory")
    assert store.ingest_event(ev)
    assert not store.ingest_event(ev)
    assert store.count("events") == 2
    [row] = store.results()
    assert row.outcome == "OOM"
    assert (row.backend, row.model, row.batch_size) == ("sleep", "mlp", 32)  # from the dispatched spec


def test_late_progress_does_not_reopen_a_finished_job(tmp_path) -> None:
    store = ResultStore(f"sqlite:///{tmp_path / 'r.db'}")
    store.record_dispatch("box", sleep_job("j1"))
    store.ingest_event(_event(5, JobState.CANCELED))
    store.ingest_event(_event(4, JobState.IN_PROGRESS))
    assert store.job_states([("j1", "box")]) == {("j1", "box"): "CANCELED"}


def test_migrations_are_recorded(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    latest = max(MIGRATIONS)
    assert ResultStore(url).schema_version() == latest
    assert ResultStore(url).migrate() == latest  # idempotent


def test_a_version_1_store_migrates_and_still_reports(tmp_path) -> None:
    """Stores are kept for years: one written by schema version 1 (the committed
    report fixture) gains the variant columns, backfilled from each job, and its
    results, which still carry the job fields copied beside the job, still parse."""
    import shutil
    import sqlite3

    db = tmp_path / "v1.sqlite"
    shutil.copy(FIXTURES / "report_store_gpu.sqlite", db)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == 1
    # one row as a version-1 knob sweep wrote it: the layout set, in the job and in the copy beside it
    job_id, text = conn.execute("SELECT job_id, result_json FROM results WHERE result_json IS NOT NULL").fetchone()
    doc = json.loads(text)
    doc["data_format"] = doc["job"]["data_format"] = "channels_first"
    doc["compile"] = doc["job"]["compile"] = False
    conn.execute("UPDATE results SET result_json=? WHERE job_id=?", (json.dumps(doc), job_id))
    conn.commit()
    conn.close()
    store = ResultStore(f"sqlite:///{db}")
    assert store.schema_version() == max(MIGRATIONS)
    rows = store.results()
    assert rows and all(r.result() is not None for r in rows if r.result_json)
    for r in rows:
        res = r.result()
        if res is not None:
            assert r.data_format == (res.job.data_format.value if res.job.data_format else None)
            assert r.compiled == res.job.compile
            assert res.backend == res.job.backend  # read through the embedded job
    knob_row = next(r for r in rows if r.job_id == job_id)
    assert (knob_row.data_format, knob_row.compiled) == ("channels_first", False)


def test_input_placement_is_part_of_a_cells_identity(tmp_path) -> None:
    """Keras-JAX with input host and with input device are two configurations (6,318 vs 3,944 img/s on an
    H200, 2026-12-03): a store of schema version 5 gains input_placement, backfilled from each job, and the
    report and the comparison keep the two apart instead of merging them into one cell."""
    import shutil
    import sqlite3

    from edgebench.controller.groups import GroupBy, group_rows
    from edgebench.controller.report import build_report

    db = tmp_path / "v1.sqlite"
    shutil.copy(FIXTURES / "report_store_gpu.sqlite", db)
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT job_id, result_json FROM results WHERE result_json IS NOT NULL "
                        "AND outcome = 'OK' LIMIT 2").fetchall()
    (first, text), (second, _) = rows
    doc = json.loads(text)
    for job_id, placement in ((first, "device"), (second, "host")):
        d = json.loads(json.dumps(doc))
        d["job"]["job_id"] = d["job_id"] = job_id
        d["job"]["input"] = placement
        conn.execute("UPDATE results SET result_json=? WHERE job_id=?", (json.dumps(d), job_id))
    conn.commit()
    conn.close()
    store = ResultStore(f"sqlite:///{db}")
    placed = {r.job_id: r.input_placement for r in store.results() if r.job_id in (first, second)}
    assert placed == {first: "device", second: "host"}
    facts = [f for f in store.select_facts(ok_only=False) if f.job_id in (first, second)]
    assert {f.input_placement for f in facts} == {"device", "host"}
    keys = list(group_rows(facts, GroupBy.hardware))
    assert len(keys) == 2 and {k.precision.rsplit(" · ", 1)[-1] for k in keys} == {"input device", "input host"}
    labels = {c.precision for c in build_report(store.results()).cells if c.precision.endswith(("host", "device"))}
    assert len(labels) == 2
