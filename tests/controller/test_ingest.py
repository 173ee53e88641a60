"""The controller's job state machine (controller/ingest.py), pure."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from edgebench.controller.ingest import MAX_REDISPATCH, decide
from edgebench.schemas import ErrorType, JobEvent, JobState

S = JobState


def ev(state: JobState, attempt: int = 1, **kw: object) -> JobEvent:
    return JobEvent(job_id="j", device_id="d", attempt=attempt, seq=0, state=state, at=datetime.now(timezone.utc),
                    **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("current", "new", "action"), [
    (S.DISPATCHED, S.QUEUED, "apply"),
    (S.DISPATCHED, S.IN_PROGRESS, "apply"),
    (S.DISPATCHED, S.SUCCEEDED, "apply"),
    (S.QUEUED, S.IN_PROGRESS, "apply"),
    (S.IN_PROGRESS, S.IN_PROGRESS, "apply"),  # progress: the job was heard of
    (S.IN_PROGRESS, S.QUEUED, "stale"),  # a replayed early event
    (S.IN_PROGRESS, S.SUCCEEDED, "apply"),
    (S.IN_PROGRESS, S.FAILED, "apply"),
    (S.QUEUED, S.CANCELED, "apply"),
    (S.SUCCEEDED, S.IN_PROGRESS, "stale"),  # late progress
    (S.SUCCEEDED, S.FAILED, "aside"),  # the forged FAILED (seq 999) of the hostile review
    (S.FAILED, S.SUCCEEDED, "aside"),
    (S.CANCELED, S.SUCCEEDED, "aside"),
    (S.QUEUED, S.REJECTED, "aside"),  # the agent had accepted it
    (S.IN_PROGRESS, S.REJECTED, "aside"),
    (S.DISPATCHED, S.REJECTED, "apply"),  # an old agent's REJECTED on attempt 1
    (S.QUEUED, S.DISPATCHED, "aside"),
])
def test_transitions(current: JobState, new: JobState, action: str) -> None:
    assert decide(current, ev(new), answers_our_message=False).action == action


def test_an_answer_counts_only_when_it_answers_our_message() -> None:
    rejected = ev(S.REJECTED, attempt=0, in_reply_to="m1", error_type=ErrorType.INVALID)
    assert decide(S.DISPATCHED, rejected, answers_our_message=True).action == "apply"
    refused = decide(S.DISPATCHED, rejected, answers_our_message=False)
    assert refused.action == "aside" and "did not send" in refused.reason
    # an answer to our own message cannot undo an accepted job either
    assert decide(S.QUEUED, rejected, answers_our_message=True).action == "aside"
    assert decide(S.SUCCEEDED, rejected, answers_our_message=True).action == "aside"


def test_an_answer_is_only_rejected_lost_or_expired() -> None:
    for state in (S.SUCCEEDED, S.QUEUED, S.IN_PROGRESS, S.CANCELED):
        assert decide(S.DISPATCHED, ev(state, attempt=0, in_reply_to="m"), answers_our_message=True).action == "aside"
    expired = ev(S.FAILED, attempt=0, in_reply_to="m", error_type=ErrorType.EXPIRED)
    assert decide(S.IN_PROGRESS, expired, answers_our_message=True).action == "apply"


def test_a_lost_job_is_dispatched_again_then_ends_lost() -> None:
    lost = ev(S.FAILED, attempt=0, in_reply_to="m", error_type=ErrorType.LOST)
    for n in range(MAX_REDISPATCH):
        assert decide(S.DISPATCHED, lost, answers_our_message=True, redispatches=n).action == "redispatch"
    assert decide(S.DISPATCHED, lost, answers_our_message=True, redispatches=MAX_REDISPATCH).action == "apply"
    assert decide(S.SUCCEEDED, lost, answers_our_message=True).action == "aside"
