"""The results store: idempotent ingestion, failed jobs described from their spec."""

from __future__ import annotations

from datetime import datetime, timezone

from edgebench.controller.store import ResultStore
from edgebench.schemas import ErrorType, JobEvent, JobState
from tests.helpers import sleep_job


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
    assert ResultStore(url).schema_version() == 1
    assert ResultStore(url).migrate() == 1  # idempotent
