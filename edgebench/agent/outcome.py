"""A finished run's outcome, saved to the job's directory before it is committed.

The runner's result exists only in the agent's memory until the terminal state
and event commit. Saving it first (write, fsync, rename: atomic) means that an
agent killed in between publishes the measured result after its restart
instead of reporting the job interrupted: nothing measured is lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgebench.agent.jobrun import JobOutcome
from edgebench.schemas import ErrorType, JobState, Result

OUTCOME_FILE = "outcome.json"


def save_outcome(job_dir: Path, outcome: JobOutcome) -> None:
    doc = {
        "state": outcome.state.value,
        "reason": outcome.reason,
        "error_type": outcome.error_type.value if outcome.error_type else None,
        "log_tail": outcome.log_tail,
        "result": outcome.result.model_dump(mode="json") if outcome.result is not None else None,
    }
    job_dir.mkdir(parents=True, exist_ok=True)
    tmp = job_dir / (OUTCOME_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, job_dir / OUTCOME_FILE)
    try:  # the rename itself, on power loss
        fd = os.open(job_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def load_outcome(job_dir: Path) -> JobOutcome | None:
    """The saved outcome, or None if there is none or it cannot be read back."""
    try:
        doc = json.loads((job_dir / OUTCOME_FILE).read_text(encoding="utf-8"))
        result = Result.model_validate_json(json.dumps(doc["result"])) if doc.get("result") else None
        return JobOutcome(
            state=JobState(doc["state"]),
            reason=doc.get("reason"),
            error_type=ErrorType(doc["error_type"]) if doc.get("error_type") else None,
            log_tail=doc.get("log_tail"),
            result=result,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
