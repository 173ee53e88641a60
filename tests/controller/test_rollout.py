"""Staged rollout: pacing and abort decisions on a fake clock, then the real
thing with an agent process on Mosquitto (some jobs REJECTED for a backend the
agent lacks)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from edgebench.controller.cli import app
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.rollout import Rollout, RolloutError, RolloutPolicy, run_rollout
from edgebench.controller.store import ResultStore
from edgebench.schemas import JobState
from tests.helpers import sleep_job, wait_online


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def _plan(n: int, device: str = "box") -> list[Dispatched]:
    return [Dispatched(device, sleep_job(f"j{i}")) for i in range(n)]


def _finish(r: Rollout, item: Dispatched, state: JobState) -> None:
    r.observe(item.job.job_id, item.device_id, state)


def test_without_a_policy_everything_goes_at_once() -> None:
    plan = _plan(5)
    r = Rollout(plan, RolloutPolicy(), FakeClock())
    assert r.due() == plan
    assert r.due() == [] and r.pending == 0 and r.seconds_to_next() is None


def test_rate_paces_evenly_and_never_bursts() -> None:
    clock = FakeClock()
    r = Rollout(_plan(200), RolloutPolicy(rate_per_minute=60), clock)
    released_at: list[float] = []
    for _ in range(1300):  # 130 s, polled every 0.1 s
        released_at += [clock.t] * len(r.due())
        clock.advance(0.1)
    assert len(released_at) == 130  # one per second
    for i, t in enumerate(released_at):  # any 60 s window holds at most 60
        assert sum(1 for u in released_at[i:] if u < t + 60 - 1e-3) <= 60  # (float noise of the 0.1 s ticks)
    # a controller that stalls for 10 s does not catch up with a burst
    clock.advance(10)
    assert len(r.due()) == 1 and r.due() == []
    assert r.seconds_to_next() == pytest.approx(1.0)


def test_abort_waits_for_min_jobs_then_cancels_only_unstarted_jobs() -> None:
    clock = FakeClock()
    plan = _plan(10)
    r = Rollout(plan, RolloutPolicy(rate_per_minute=600, abort_failure_percent=50, abort_min_jobs=4), clock)
    for _ in range(6):
        r.due()
        clock.advance(0.1)
    assert r.states[("j5", "box")] is JobState.DISPATCHED
    for item in plan[:3]:
        _finish(r, item, JobState.REJECTED)
    assert not r.aborted  # 3 failed of 3 finished, but fewer than 4 finished
    _finish(r, plan[4], JobState.QUEUED)
    _finish(r, plan[3], JobState.IN_PROGRESS)
    _finish(r, plan[3], JobState.SUCCEEDED)
    assert r.aborted and r.reason == "3 of 4 finished jobs failed (75% > 50%)"
    assert r.due() == [] and r.pending == 0 and r.seconds_to_next() is None
    cancels = r.take_cancels()
    assert [c.job.job_id for c in cancels] == ["j4", "j5"]  # QUEUED and DISPATCHED, not running ones
    assert r.take_cancels() == []  # once
    s = r.summary()
    assert (s.total, s.released, s.finished, s.failed, s.aborted) == (10, 6, 4, 3, True)
    assert [i.job.job_id for i in s.not_released] == ["j6", "j7", "j8", "j9"]
    assert s.still_open == {("j4", "box"), ("j5", "box")}
    assert "4 job(s) not dispatched, 2 queued job(s) canceled" in s.describe()


def test_threshold_must_be_passed_and_cancel_is_not_a_failure() -> None:
    plan = _plan(7)
    r = Rollout(plan, RolloutPolicy(abort_failure_percent=50, abort_min_jobs=2), FakeClock())
    r.due()
    _finish(r, plan[0], JobState.TIMED_OUT)
    _finish(r, plan[1], JobState.SUCCEEDED)
    assert not r.aborted  # 1 of 2: exactly 50 % does not pass 50 %
    _finish(r, plan[2], JobState.CANCELED)
    _finish(r, plan[3], JobState.CANCELED)
    _finish(r, plan[4], JobState.FAILED)
    _finish(r, plan[5], JobState.REJECTED)
    assert not r.aborted and (r.finished, r.failed) == (6, 3)  # canceled jobs finished, not failed
    _finish(r, plan[6], JobState.FAILED)
    assert r.aborted and r.reason == "4 of 7 finished jobs failed (57% > 50%)"


def test_events_never_move_a_job_backwards_and_strangers_are_ignored() -> None:
    plan = _plan(2)
    r = Rollout(plan, RolloutPolicy(abort_failure_percent=0), FakeClock())
    r.due()
    _finish(r, plan[0], JobState.SUCCEEDED)
    _finish(r, plan[0], JobState.IN_PROGRESS)  # late progress
    _finish(r, plan[0], JobState.FAILED)  # cannot happen twice
    r.observe("someone-else", "box", JobState.FAILED)
    assert r.states[("j0", "box")] is JobState.SUCCEEDED
    _finish(r, plan[1], JobState.IN_PROGRESS)
    _finish(r, plan[1], JobState.QUEUED)  # reordered delivery
    assert r.states[("j1", "box")] is JobState.IN_PROGRESS
    assert not r.aborted


@pytest.mark.parametrize("kwargs", [{"rate_per_minute": 0}, {"rate_per_minute": float("inf")},
                                    {"abort_failure_percent": 101}, {"abort_min_jobs": 0}])
def test_invalid_policies(kwargs: dict[str, float]) -> None:
    with pytest.raises(RolloutError):
        RolloutPolicy(**kwargs)  # type: ignore[arg-type]


# -- real agent on Mosquitto ------------------------------------------------------------------

def test_rollout_aborts_on_a_real_fleet(start_agent, controller_cfg) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent("box1")
    store = ResultStore(controller_cfg.store_url)
    long = sleep_job("long", epochs=2, steps=250)  # ~5 s: still running when the rollout aborts
    queued = sleep_job("queued")  # waits behind `long` on the one-job-at-a-time agent
    bad = [sleep_job(f"bad{i}", backend="keras-mxnet") for i in range(2)]  # not configured: REJECTED
    good = [sleep_job(f"good{i}") for i in range(4)]
    plan = [Dispatched("box1", j) for j in (long, queued, *bad, *good)]
    seen = []
    with FleetClient(controller_cfg, store) as fleet:
        wait_online(fleet, "box1", agents=[agent])
        summary = run_rollout(fleet, plan, RolloutPolicy(rate_per_minute=60, abort_failure_percent=50,
                                                         abort_min_jobs=2),
                              timeout_s=60, on_event=lambda ev, new: seen.append(ev))
    assert summary.aborted, agent.log()[-3000:]
    assert summary.reason == "2 of 2 finished jobs failed (100% > 50%)"
    assert [c.job.job_id for c in summary.canceled] == ["queued"]
    not_released = {i.job.job_id for i in summary.not_released}
    assert "good3" in not_released and not_released <= {"good0", "good1", "good2", "good3"}
    assert not summary.still_open
    states = store.job_states([(i.job.job_id, "box1") for i in plan])
    assert states == {("long", "box1"): "SUCCEEDED", ("queued", "box1"): "CANCELED",
                      ("bad0", "box1"): "REJECTED", ("bad1", "box1"): "REJECTED",
                      **{(g, "box1"): "SUCCEEDED" for g in {"good0", "good1", "good2"} - not_released}}
    assert not [ev for ev in seen if ev.job_id in not_released]  # never reached the agent


def test_dispatch_cli_reports_an_aborted_rollout(start_agent, controller_cfg) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent("box1")
    with FleetClient(controller_cfg, ResultStore(controller_cfg.store_url)) as fleet:
        wait_online(fleet, "box1", agents=[agent])
    out = CliRunner().invoke(app, [
        "--broker", controller_cfg.broker_url, "--fleet", controller_cfg.fleet, "--store", controller_cfg.store_url,
        "dispatch", "-d", "box1", "-b", "keras-mxnet", "-b", "sleep", "-w", "fashion-mnist-mlp", "--synthetic",
        "--steps-per-epoch", "2", "--rate-per-minute", "30", "--abort-failure-percent", "0", "--wait-timeout", "60",
    ])
    assert out.exit_code == 1, out.output + agent.log()[-3000:]
    assert "rollout ABORTED: 1 of 1 finished jobs failed (100% > 0%); 1 job(s) not dispatched" in out.output
    assert "NOT DISPATCHED" in out.output and "REJECTED" in out.output
