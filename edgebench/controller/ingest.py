"""What the controller does with an event a device sent: the job state machine.

Pure logic (no I/O); controller/store.py applies its verdicts inside one
transaction per batch. The rules (docs/JOBS.md):

- An event is about a job this store dispatched to that device, or it is kept
  aside (dead letters): events for unknown jobs never create results.
- ``attempt`` 0 is an answer to one message. It counts only if it answers a
  message this store sent to that device about that job (``in_reply_to``); a
  REJECTED answer to anybody else's copy of a job (forged, unsigned, mangled)
  never touches the real one.
- REJECTED is possible only before the agent accepted the job (DISPATCHED).
- Terminal states are final: a second, different terminal event is kept aside;
  a late progress event is stored but changes nothing.
- A job the agent says it never received (FAILED, error_type Lost, the answer to
  a replay request) is dispatched again, up to ``MAX_REDISPATCH`` times, before
  it ends as Lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgebench.schemas import TERMINAL_STATES, ErrorType, JobEvent, JobState

MAX_REDISPATCH = 2

# Non-terminal states in the order an execution passes them.
_RANK = {JobState.DISPATCHED: 0, JobState.QUEUED: 1, JobState.IN_PROGRESS: 2}

Action = Literal["apply", "stale", "aside", "redispatch"]


@dataclass(frozen=True)
class Inbound:
    """An event as received: the parsed event and the bytes it came in (kept for dead letters)."""

    event: JobEvent
    topic: str = ""
    payload: bytes = b""


@dataclass(frozen=True)
class Decision:
    action: Action  # apply: store and move the job; stale: store only; aside: dead letter; redispatch
    reason: str = ""


def decide(current: JobState, event: JobEvent, *, answers_our_message: bool, redispatches: int = 0) -> Decision:
    """The verdict for ``event`` on a job now in ``current`` (``answers_our_message``:
    for attempt 0, whether ``in_reply_to`` is a message this store sent about the job)."""
    new = event.state
    if event.attempt == 0:
        if not answers_our_message:
            return Decision("aside", "an answer to a message this store did not send to the device"
                            f" (in_reply_to {event.in_reply_to or 'missing'})")
        if new is JobState.FAILED and event.error_type is ErrorType.LOST:
            if current in TERMINAL_STATES:
                return Decision("aside", f"job already {current.value}: the Lost answer comes too late")
            if redispatches < MAX_REDISPATCH:
                return Decision("redispatch", "the agent never received the job: dispatched again")
            return Decision("apply")
        if new is not JobState.REJECTED and not (new is JobState.FAILED and event.error_type is ErrorType.EXPIRED):
            return Decision("aside", f"an answer (attempt 0) cannot be {new.value}")
    if current in TERMINAL_STATES:
        if new in TERMINAL_STATES:
            return Decision("aside", f"job already {current.value}: terminal states are final ({new.value} refused)")
        return Decision("stale")  # late progress or a replayed early event
    if new is JobState.REJECTED and current is not JobState.DISPATCHED:
        return Decision("aside", f"REJECTED after the agent accepted the job ({current.value}): refused")
    if new in TERMINAL_STATES:
        return Decision("apply")
    if new is JobState.DISPATCHED:
        return Decision("aside", "DISPATCHED is the controller's own state, not a device's")
    return Decision("apply") if _RANK[new] >= _RANK[current] else Decision("stale")
