"""Kill the agent at every instant where the order of two durable steps matters.

Found by the hostile review (2026-12-01): ``_finish`` committed the terminal
state, then took a sequence number, then wrote the terminal event, each its own
commit; an agent killed in between restarted with the job SUCCEEDED and an
empty outbox, and the controller showed IN_PROGRESS for ever. Now a state
change and its event are one transaction, and the runner's outcome is on disk
before it. The agent dies at each fault point (agent/faults.py: ``os._exit``,
no clean-up, as a power cut) and restarts without the fault: every job must
end exactly once, with its measured result where the runner had finished.
"""

from __future__ import annotations

import signal

import pytest

from edgebench.agent.faults import ENV, POINTS
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.store import ResultStore
from edgebench.schemas import TERMINAL_STATES, JobState
from tests.agent.conftest import runner_processes, sleep_backend, wait_until, write_agent_config
from tests.helpers import sleep_job, wait_online


def _terminal_events(store: ResultStore, job_id: str) -> list[JobState]:
    return [e.state for e in store.events_for(job_id) if e.state in TERMINAL_STATES]


def _restart_clean(agent) -> None:  # type: ignore[no-untyped-def]
    agent.proc.wait(30)
    assert agent.proc.returncode == 137, f"the agent did not die at its fault point:\n{agent.log()[-2000:]}"
    agent.env = {}
    agent.start()


@pytest.mark.parametrize("point", ["intake:before-ack", "finish:outcome-saved", "finish:committed"])
def test_a_job_survives_a_crash_at(point: str, start_agent, controller_cfg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent("box1", config=write_agent_config(tmp_path / "a.yaml", backends=sleep_backend()))
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
        agent.stop()
        agent.env = {ENV: point}
        agent.start()
        wait_online(fc, "box1", agents=[agent])
        fc.dispatch([Dispatched("box1", sleep_job("j-crash", epochs=2, steps=5))])
        _restart_clean(agent)
        assert not fc.wait({("j-crash", "box1")}, 90), agent.log()[-3000:]
    [row] = store.results(job_id="j-crash")
    assert row.outcome == "OK" and row.img_per_s, (point, row)  # the measured result, not "interrupted"
    assert _terminal_events(store, "j-crash") == [JobState.SUCCEEDED]
    assert f"dying at {point}" in agent.log()


def test_an_interrupted_job_is_reported_through_a_crash_in_recovery(start_agent, controller_cfg,  # type: ignore[no-untyped-def]
                                                                    tmp_path) -> None:
    agent = start_agent("box1", config=write_agent_config(tmp_path / "a.yaml", backends=sleep_backend()))
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
        fc.dispatch([Dispatched("box1", sleep_job("j-long", epochs=2, steps=3000))])
        wait_until(lambda: runner_processes(agent), 30, "the runner")
        agent.stop(signal.SIGKILL)  # mid-job
        agent.env = {ENV: "recover:committed"}
        agent.start()  # recovery commits FAILED Interrupted, then dies before publishing it
        _restart_clean(agent)
        assert not fc.wait({("j-long", "box1")}, 90), agent.log()[-3000:]
    [row] = store.results(job_id="j-long")
    assert (row.outcome, row.error_type) == ("FAILED", "Interrupted")
    assert _terminal_events(store, "j-long") == [JobState.FAILED]


def test_a_canceled_queued_job_survives_a_crash(start_agent, controller_cfg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent("box1", config=write_agent_config(tmp_path / "a.yaml", backends=sleep_backend()))
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
        agent.stop()
        agent.env = {ENV: "cancel:committed"}
        agent.start()
        wait_online(fc, "box1", agents=[agent])
        fc.dispatch([Dispatched("box1", sleep_job("j-busy", epochs=2, steps=3000)),
                     Dispatched("box1", sleep_job("j-waits"))])
        wait_until(lambda: runner_processes(agent), 30, "the runner")
        fc.cancel("j-waits", ["box1"])
        _restart_clean(agent)
        assert not fc.wait({("j-waits", "box1")}, 90), agent.log()[-3000:]
        fc.cancel("j-busy", ["box1"])  # interrupted by the crash; reported after the restart anyway
        assert not fc.wait({("j-busy", "box1")}, 90)
    assert store.results(job_id="j-waits")[0].outcome == "CANCELED"
    assert _terminal_events(store, "j-waits") == [JobState.CANCELED]
    assert len(_terminal_events(store, "j-busy")) == 1


def test_every_fault_point_is_tested() -> None:
    tested = {"intake:before-ack", "finish:outcome-saved", "finish:committed", "recover:committed",
              "cancel:committed"}
    assert set(POINTS) == tested
