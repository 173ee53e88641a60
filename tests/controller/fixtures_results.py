"""Real results from the committed report fixture, re-addressed for a test."""

from __future__ import annotations

import sqlite3
from functools import cache
from pathlib import Path

from edgebench.schemas import JobSpec, Result

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "report_store.sqlite"


@cache
def _stored() -> str:
    conn = sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True)
    try:
        (text,) = conn.execute("SELECT result_json FROM results WHERE result_json IS NOT NULL LIMIT 1").fetchone()
    finally:
        conn.close()
    return str(text)


def result_for(job_id: str, device_id: str, job: JobSpec) -> Result:
    """A real measured Result (CPU, from the fixture) claiming to be job_id on device_id, for ``job``."""
    res = Result.from_stored_json(_stored())
    return res.model_copy(update={"job_id": job_id, "device_id": device_id, "job": job})
