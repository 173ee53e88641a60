"""The results store under hostile events, on SQLite and PostgreSQL.

Each case is a defect of the hostile review (2026-12-01) reproduced at the store:
a forged terminal event, a rejected copy's answer, events of jobs never
dispatched, a value a column cannot hold. Nothing may corrupt a job, create a
result, or make a reader crash; what is refused is kept aside with the reason.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgebench.controller.cli import app
from edgebench.controller.ingest import Inbound
from edgebench.controller.store import ResultStore
from edgebench.schemas import ErrorType, JobEvent, JobState
from tests.helpers import sleep_job


def _ev(job: str, seq: int, state: JobState, attempt: int = 1, **kw: object) -> JobEvent:
    return JobEvent(job_id=job, device_id="box", attempt=attempt, seq=seq, state=state,
                    at=datetime.now(timezone.utc), **kw)  # type: ignore[arg-type]


def _result_row(store: ResultStore, job: str) -> tuple[str, str] | None:
    rows = store.results(job_id=job)
    return (rows[0].state, rows[0].outcome) if rows else None


def test_a_forged_failed_after_success_changes_nothing(store_url: str) -> None:
    store = ResultStore(store_url)
    store.record_dispatch("box", sleep_job("j1"), msg_id="m-j1")
    assert store.ingest_events([_ev("j1", 0, JobState.QUEUED), _ev("j1", 1, JobState.IN_PROGRESS),
                                _ev("j1", 2, JobState.SUCCEEDED)]) == [True, True, True]
    assert store.ingest_event(_ev("j1", 999, JobState.FAILED, reason="forged")) is False
    assert store.job_states([("j1", "box")]) == {("j1", "box"): "SUCCEEDED"}
    assert _result_row(store, "j1") == ("SUCCEEDED", "OK")
    [letter] = store.dead_letters()
    assert "terminal states are final" in letter.reason and letter.job_id == "j1"
    assert [e.seq for e in store.events_for("j1")] == [0, 1, 2]  # the forgery is not in the job's history


def test_a_rejected_copy_does_not_replace_the_real_result(store_url: str) -> None:
    """The agent answers a bad copy of a running job (attempt 0, in_reply_to the
    copy's msg_id); before the fix it landed on the job's own stream and its
    REJECTED became the stored result. Also when the copy came before the job."""
    store = ResultStore(store_url)
    store.record_dispatch("box", sleep_job("j2"), msg_id="m-genuine")
    copy_first = _ev("j2", 0, JobState.REJECTED, attempt=0, in_reply_to="m-forged", error_type=ErrorType.INVALID,
                     reason="signature: missing")
    assert store.ingest_event(copy_first) is False
    for seq, state in enumerate((JobState.QUEUED, JobState.IN_PROGRESS, JobState.SUCCEEDED)):
        assert store.ingest_event(_ev("j2", seq, state))
    copy_later = _ev("j2", 1, JobState.REJECTED, attempt=0, in_reply_to="m-forged-2", error_type=ErrorType.INVALID)
    assert store.ingest_event(copy_later) is False
    assert _result_row(store, "j2") == ("SUCCEEDED", "OK")
    assert len(store.dead_letters()) == 2


def test_the_answer_to_our_own_job_rejects_it(store_url: str) -> None:
    store = ResultStore(store_url)
    store.record_dispatch("box", sleep_job("j3"), msg_id="m-j3")
    assert store.ingest_event(_ev("j3", 0, JobState.REJECTED, attempt=0, in_reply_to="m-j3",
                                  error_type=ErrorType.INVALID, field="backend", reason="not configured"))
    assert _result_row(store, "j3") == ("REJECTED", "REJECTED")


def test_events_of_jobs_never_dispatched_are_kept_apart(store_url: str, tmp_path: Path) -> None:
    store = ResultStore(store_url)
    junk_answer = _ev("-", 0, JobState.REJECTED, attempt=0, error_type=ErrorType.INVALID, reason="not JSON")
    assert store.ingest_events([junk_answer, _ev("nobody", 0, JobState.SUCCEEDED)]) == [False, False]
    assert store.results() == [] and store.count("jobs") == 0
    assert {d.job_id for d in store.dead_letters()} == {"-", "nobody"}


def test_a_conflicting_copy_under_a_stored_key_is_kept_aside(store_url: str) -> None:
    store = ResultStore(store_url)
    store.record_dispatch("box", sleep_job("j4"), msg_id="m-j4")
    assert store.ingest_event(_ev("j4", 0, JobState.QUEUED))
    queued = store.events_for("j4")[0]
    assert store.ingest_event(queued) is False  # an exact copy (QoS 1 redelivery): silently a duplicate
    assert store.dead_letters() == []
    other = _ev("j4", 0, JobState.IN_PROGRESS)
    assert store.ingest_event(other) is False
    assert any("different event under the stored key" in d.reason for d in store.dead_letters())


def test_a_result_for_another_job_than_dispatched_is_kept_aside(store_url: str) -> None:
    from tests.controller.fixtures_results import result_for  # a real stored result, rewritten

    store = ResultStore(store_url)
    store.record_dispatch("box", sleep_job("j5"), msg_id="m-j5")
    res = result_for("j5", "box", sleep_job("j5-other"))
    assert store.ingest_event(_ev("j5", 0, JobState.SUCCEEDED, result=res)) is False
    assert store.results(job_id="j5") == []
    assert "different job" in store.dead_letters()[0].reason


def test_text_no_column_can_hold_is_cleaned_not_fatal(store_url: str) -> None:
    """NUL (PostgreSQL refuses it in text) in a device's reason."""
    store = ResultStore(store_url)
    store.record_dispatch("box", sleep_job("j6"), msg_id="m-j6")
    assert store.ingest_event(_ev("j6", 0, JobState.FAILED, error_type=ErrorType.BACKEND_ERROR,
                                  reason="bad\x00byte"))
    [row] = store.results(job_id="j6")
    assert row.reason is not None and "\x00" not in row.reason


def test_one_bad_event_does_not_sink_its_batch(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An event the store fails on is kept aside with the error; the rest of the batch is stored."""
    store = ResultStore(store_url)
    for j in ("a", "b", "c"):
        store.record_dispatch("box", sleep_job(j), msg_id=f"m-{j}")
    real = store._ingest

    def flaky(conn, item):  # type: ignore[no-untyped-def]
        if item.event.job_id == "b":
            raise ValueError("boom")
        return real(conn, item)

    monkeypatch.setattr(store, "_ingest", flaky)
    batch = [Inbound(_ev(j, 0, JobState.QUEUED), "t", b"{}") for j in ("a", "b", "c")]
    assert store.ingest(batch) == [True, False, True]
    assert "ValueError: boom" in store.dead_letters()[0].reason


def _legacy_rows(db: Path) -> None:
    """What the old collector wrote for an unsolicited terminal event: a row with no description."""
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO results(job_id, device_id, attempt, state, outcome, reason, finished_at) "
                 "VALUES ('junk', 'box', 1, 'REJECTED', 'REJECTED', '[/x] not JSON', '2026-12-01 10:00:00')")
    conn.execute("INSERT INTO results(job_id, device_id, attempt, state, outcome, finished_at) "
                 "VALUES ('ghost', 'box', 1, 'FAILED', 'FAILED', '2026-12-01 10:00:01')")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("command", [["results"], ["report"], ["report", "-f", "md"], ["report", "-f", "json"],
                                     ["report", "-f", "csv"], ["results", "export", "-f", "csv"],
                                     ["results", "export", "-f", "parquet"]])
def test_every_reader_survives_rows_without_a_description(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "old.db"
    ResultStore(f"sqlite:///{db}").close()
    _legacy_rows(db)
    args = ["--store", f"sqlite:///{db}", *command]
    if command[:2] == ["results", "export"]:
        args += ["--out", str(tmp_path / "out")]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    if command == ["results", "export", "-f", "csv"]:
        rows = list(csv.DictReader((tmp_path / "out").open()))
        assert {r["job_id"] for r in rows} == {"junk", "ghost"}
    if command == ["report", "-f", "json"]:
        json.loads(out.output)
