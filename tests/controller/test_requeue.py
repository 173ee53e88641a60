"""Re-queue suspect runs: which jobs run again, under which ids, and a real round on a live agent.

The suspect results are real: tests/fixtures/compare_store.sqlite's recorded runs, whose validity
records found the shared machine busy (13 of 16 ``ab`` rounds).
"""

from __future__ import annotations

import pytest

from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.plan import SweepFile, build_job
from edgebench.controller.requeue import requeue_rounds, retry_id, suspect, suspect_retries
from edgebench.controller.rollout import RolloutPolicy
from edgebench.controller.selection import Selection, select
from edgebench.controller.store import ResultStore
from tests.controller.render.stores import FIXTURES, reingest
from tests.helpers import wait_online


def test_retry_ids_stay_identifiers() -> None:
    assert retry_id("job-7", 1) == "job-7-rq1"
    assert retry_id("job-7-rq1", 2) == "job-7-rq2"
    long = "x" * 64
    assert len(retry_id(long, 3)) == 64 and retry_id(long, 3).endswith("-rq3")


def test_only_suspect_results_are_requeued(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    shutil.copy(FIXTURES / "compare_store.sqlite", tmp_path / "s.sqlite")
    store = ResultStore(f"sqlite:///{tmp_path / 's.sqlite'}")
    rows, _ = select(store, Selection(sweep=None, tags=("ab-a",)))
    plan = [Dispatched(r.device_id, r.result().job) for r in rows]  # type: ignore[union-attr]
    flagged = {item.job.job_id: suspect(store, item) for item in plan}
    assert sum(1 for v in flagged.values() if v) == 6  # 6 of the 8 ab-a rounds were suspect
    assert all("other processes kept" in v[0] for v in flagged.values() if v)
    retries = suspect_retries(store, plan, 1)
    assert sorted(r.job.job_id for r in retries) == sorted(f"{j}-rq1" for j, v in flagged.items() if v)
    original = {item.job.job_id: item.job for item in plan}
    for r in retries:  # the same job again, in its own sweep, under a new id
        source = original[r.job.job_id.removesuffix("-rq1")]
        assert r.job.model_copy(update={"job_id": source.job_id}) == source
    unknown = Dispatched("cpu-2core", plan[0].job.model_copy(update={"job_id": "never-ran"}))
    assert suspect(store, unknown) is None
    store.close()


def test_the_sweep_file_and_the_command_take_the_option() -> None:
    sweep = SweepFile.model_validate({"name": "s", "matrix": {"backend": ["sleep"], "workload": ["fashion-mnist-mlp"]},
                                      "requeue_suspect": 2})
    assert sweep.requeue_suspect == 2
    with pytest.raises(ValueError):
        SweepFile.model_validate({"name": "s", "requeue_suspect": 9})


def test_requeue_round_on_a_live_agent(start_agent, controller_cfg, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A real agent and Mosquitto: the job's stored result is made suspect (the recorded validity record of
    a real busy-machine run put on it), the round reruns it under -rq1, and the rerun's own record decides."""
    agents = [start_agent("rq-box")]
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fleet:
        wait_online(fleet, "rq-box", agents=agents)
        job = build_job({"backend": "sleep", "workload": "fashion-mnist-mlp", "epochs": 2, "steps_per_epoch": 20,
                         "synthetic": True}, "rq-job", "rq-sweep")
        # a copy: opening a store migrates it, and the committed fixture must stay as committed
        import shutil

        copy = tmp_path / "recorded.sqlite"
        shutil.copy(FIXTURES / "compare_store.sqlite", copy)
        recorded = ResultStore(f"sqlite:///{copy}")
        busy = next(r for r in recorded.results() if r.job_id == "ab-r02-cpu-2core-00").result()
        recorded.close()
        assert busy is not None and busy.telemetry is not None and busy.telemetry.validity.verdict == "suspect"
        fake = busy.model_copy(update={"job_id": "rq-job", "device_id": "rq-box", "job": job})
        reingest([type("Row", (), {"result": lambda self: fake, "device_id": "rq-box", "attempt": 1,
                                   "outcome": "OK"})()], store)
        plan = [Dispatched("rq-box", job)]
        summary = requeue_rounds(fleet, store, plan, RolloutPolicy(), 1, timeout_s=120)
    assert [r.job.job_id for r in summary.requeued] == ["rq-job-rq1"]
    rerun = store.results(job_id="rq-job-rq1")
    assert rerun and rerun[0].outcome == "OK" and len(summary.rounds) == 1
    assert summary.describe().startswith("re-queued 1 suspect run(s) in 1 round(s)")
