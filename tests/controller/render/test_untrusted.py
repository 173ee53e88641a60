"""Untrusted strings and rows with missing fields, in every output.

Devices send reasons, library versions, validity reasons, and (for jobs they were never sent) job ids:
none of it may become markup in the terminal (rich), Markdown or HTML. A results row whose job the
store never saw has no backend, workload or precision: no reader may crash on it. The rows here are a
real recorded result (tests/fixtures/report_store.sqlite) with hostile strings put into it, and events
for undispatched jobs, stored through the real ingestion path.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from edgebench.controller.cli import app
from edgebench.controller.export import flat_rows
from edgebench.controller.history import build_history
from edgebench.controller.render.html import render_html
from edgebench.controller.render.markdown import render_markdown
from edgebench.controller.render.tabular import render_csv, render_json
from edgebench.controller.render.terminal import render_terminal
from edgebench.controller.report import build_report
from edgebench.controller.selection import Selection, select, select_facts
from edgebench.controller.store import ResultStore, results
from edgebench.schemas import ErrorType, JobEvent, JobState
from edgebench.schemas.validity import Validity
from tests.controller.render.stores import copy_store, reingest

HOSTILE_VERSION = "<img src=x onerror=alert(1)> [bold red]boom[/bold red] **b** | c $x^2$"
HOSTILE_REASON = "[link=http://evil.example]click[/link] <script>alert(2)</script> | `tick` _u_"

runner = CliRunner()


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> ResultStore:
    tmp = tmp_path_factory.mktemp("hostile")
    source = copy_store(tmp, cpu=True)
    rows = [r for r in source.results() if r.outcome == "OK"][:3]
    store = ResultStore(f"sqlite:///{tmp / 'hostile.sqlite'}")

    def poison(res):  # type: ignore[no-untyped-def]
        fp = res.fingerprint.model_copy(update={"libraries": {**res.fingerprint.libraries, "torch": HOSTILE_VERSION}})
        tel = res.telemetry.model_copy(update={"validity": Validity(verdict="suspect", reasons=[HOSTILE_REASON],
                                                                    notes=[HOSTILE_VERSION])})
        return res.model_copy(update={"fingerprint": fp, "telemetry": tel})

    reingest(rows, store, poison)
    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    # a failed job with a hostile reason, and events for jobs the store never dispatched (no spec: NULL fields)
    job = rows[0].result().job.model_copy(update={"job_id": "failed-1"})  # type: ignore[union-attr]
    store.record_dispatch("cpu-2core", job)
    store.ingest_event(JobEvent(job_id="failed-1", device_id="cpu-2core", seq=9, state=JobState.FAILED, at=at,
                                reason=HOSTILE_REASON, error_type=ErrorType.BACKEND_ERROR))
    # Rows as stores kept them before unsolicited events went to dead_letters: a job this store never
    # dispatched, so no backend, workload or precision, and a job id no identifier check ever saw.
    # (Today's ingestion keeps such events aside: they are written here as those old rows were.)
    with store.engine.begin() as conn:
        for i, outcome in enumerate(("FAILED", "TIMED_OUT", "OK")):
            conn.execute(results.insert().values(job_id=f"<b>ghost-{i}</b>", device_id="cpu-2core", attempt=1,
                                                 state="FAILED", outcome=outcome, reason=HOSTILE_REASON,
                                                 finished_at=at))
    assert store.ingest_event(JobEvent(job_id="ghost-new", device_id="cpu-2core", seq=1, state=JobState.FAILED,
                                       at=at, reason=HOSTILE_REASON)) is False  # kept aside now
    return store


def _report(store: ResultStore):  # type: ignore[no-untyped-def]
    rows, statuses = select(store, Selection())
    assert any(r.backend is None for r in rows)  # the ghost rows are there, with missing fields
    return build_report(rows, "torch", statuses=statuses)


def test_rows_with_missing_fields_never_crash_a_reader(hostile_store: ResultStore) -> None:
    rep = _report(hostile_store)
    assert len(rep.cells) == 4 and any("without a job description" in n for n in rep.notes)
    for text in (render_markdown(rep), render_csv(rep), render_json(rep), render_html(rep)):
        assert text
    rows, statuses = select(hostile_store, Selection())
    flat = flat_rows(rows, statuses)
    assert len(flat) == len(rows) and any(r["backend"] is None for r in flat)
    assert len(build_history(select_facts(hostile_store, Selection())).series) == 3
    for args in (["report"], ["report", "--history"], ["results"], ["results", "export", "--out", "/dev/null"]):
        out = runner.invoke(app, ["--store", hostile_store.url, *args])
        assert out.exit_code == 0, (args, out.output)


def test_markup_in_device_strings_stays_text_in_the_terminal(hostile_store: ResultStore) -> None:
    console = Console(record=True, width=400, force_terminal=True)
    render_terminal(_report(hostile_store), console)
    text = console.export_text()
    assert "[bold red]boom[/bold red]" in text  # printed, not applied
    assert "[link=http://evil.example]click[/link]" in text
    assert "\x1b]8;" not in console.export_text(styles=True)  # no hyperlink escape was made


def test_markdown_escapes_html_and_markup(hostile_store: ResultStore) -> None:
    md = render_markdown(_report(hostile_store))
    assert "<img" not in md and "<script" not in md and "<b>" not in md
    assert "&lt;img src=x onerror=alert(1)&gt;" in md and "&lt;script&gt;" in md
    assert "\\*\\*b\\*\\*" in md and "\\[link=http://evil.example\\]" in md and "\\`tick\\`" in md
    # a "|" inside a value never splits a table row
    for line in md.splitlines():
        if "onerror" in line and line.startswith("|"):
            assert line.count(" | ") == line.replace("\\|", "").count(" | ")


def test_html_escapes_everything(hostile_store: ResultStore) -> None:
    html = render_html(_report(hostile_store))
    assert "<img src=x" not in html and "<script>" not in html and "<b>ghost" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_csv_and_json_carry_the_strings_as_data(hostile_store: ResultStore, tmp_path: Path) -> None:
    rep = _report(hostile_store)
    doc = json.loads(render_json(rep))
    assert any(HOSTILE_REASON in c["validity_reasons"] for c in doc["cells"])
    rows = list(csv.DictReader(io.StringIO(render_csv(rep))))
    assert len(rows) == len(rep.cells)
    out = runner.invoke(app, ["--store", hostile_store.url, "results", "export", "--out", str(tmp_path / "x.csv")])
    assert out.exit_code == 0
    exported = list(csv.DictReader((tmp_path / "x.csv").open()))
    assert any(r["lib_torch"] == HOSTILE_VERSION for r in exported)
    assert any(r["job_id"] == "<b>ghost-0</b>" for r in exported)
