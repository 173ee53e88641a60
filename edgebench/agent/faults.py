"""Fault-injection points for the crash tests (tests/agent/test_crash_points.py).

The agent's operator, never a job, chooses a fault: ``EDGEBENCH_AGENT_FAULT=<point>``
in the agent's own environment makes the process die at that point with
SIGKILL's exit status and no clean-up, as a power cut or the OOM killer would.
Every point sits between two durable steps whose order matters; the tests kill
the agent at each one and check that no job ends without its terminal event
reaching the store.
"""

from __future__ import annotations

import logging
import os

ENV = "EDGEBENCH_AGENT_FAULT"

# point -> where it is
POINTS = {
    "intake:before-ack": "a job is stored with its QUEUED event, the broker has not had the PUBACK",
    "finish:outcome-saved": "the runner's outcome is on disk, the terminal state and event not yet committed",
    "finish:committed": "the terminal state and event are committed, the outbox has not published it",
    "recover:committed": "after a restart, an interrupted job's terminal event is committed, not yet published",
    "cancel:committed": "a queued job's CANCELED state and event are committed, not yet published",
}

log = logging.getLogger(__name__)


def point(name: str) -> None:
    """Die here if the operator asked for it (``os._exit``: no finally blocks, no atexit)."""
    if os.environ.get(ENV) == name:
        log.critical("fault injection: dying at %s (%s)", name, POINTS.get(name, "unknown point"))
        logging.shutdown()
        os._exit(137)
