"""RunTimer: the measured window, and batch ends reported from other threads in any order."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from edgebench.runner.timing import MIN_SAMPLE_S, RunTimer


class ListEmitter:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(dict(message))


def test_warmup_epochs_stay_out_of_the_window() -> None:
    em = ListEmitter()
    timer = RunTimer(em, repeat=0, epochs=3, warmup_epochs=1, batch_size=8)
    for epoch in (1, 2, 3):
        timer.epoch_begin(epoch)
        for _ in range(4):
            time.sleep(0.002)
            timer.batch_end()
        timer.epoch_end(loss=1.0)
    s = timer.summary()
    assert s["images"] == 2 * 4 * 8 and s["n_batches"] == 8
    assert [e["edge"] for e in em.events if e["type"] == "window"] == ["begin", "end"]
    assert [ep["warmup"] for ep in timer.epoch_stats] == [True, False, False]
    assert sum(timer.window_batch_s) == pytest.approx(
        sum(ep["seconds"] for ep in timer.epoch_stats if not ep["warmup"]), rel=0.05
    )


class _ThreadClock:
    """perf_counter() as each thread sets it: completion times chosen by the test, so
    that the ordering logic is checked without depending on thread wake-up latency
    (which under load exceeds MIN_SAMPLE_S and merges samples)."""

    def __init__(self) -> None:
        self.local = threading.local()

    def perf_counter(self) -> float:
        return self.local.now

    def time(self) -> float:
        return time.time()


def test_batch_ends_from_threads_out_of_order_give_ordered_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    # As Keras 3 on JAX delivers them: from a thread pool, each once its step is done.
    from edgebench.runner import timing

    clock = _ThreadClock()
    monkeypatch.setattr(timing, "time", clock)
    em = ListEmitter()
    timer = RunTimer(em, repeat=0, epochs=1, warmup_epochs=0, batch_size=16)
    t0 = 1000.0
    clock.local.now = t0
    timer.epoch_begin(1)
    step_s = 0.01  # above MIN_SAMPLE_S: one sample per batch
    done_at = [t0 + step_s * (i + 1) for i in range(20)]  # step i completes at done_at[i]

    def deliver(i: int) -> None:
        clock.local.now = done_at[i]
        timer.batch_end(threaded=True)

    order = list(range(20))
    random.Random(7).shuffle(order)
    for i in order:  # arrivals in this (shuffled) order, each from its own thread
        th = threading.Thread(target=deliver, args=(i,))
        th.start()
        th.join()
    clock.local.now = done_at[-1] + 0.001
    timer.epoch_end()
    assert len(timer.window_batch_s) == 20 and timer.summary()["n_batches"] == 20
    assert timer.window_batch_s == pytest.approx([step_s] * 20)
    assert sum(timer.window_batch_s) <= timer.epoch_stats[0]["seconds"] + 1e-9
    assert timer.summary()["images"] == 20 * 16


def test_short_threaded_batches_are_grouped_into_samples_of_min_length() -> None:
    em = ListEmitter()
    timer = RunTimer(em, repeat=0, epochs=1, warmup_epochs=0, batch_size=32)
    timer.epoch_begin(1)
    for _ in range(60):
        time.sleep(0.0005)
        timer.batch_end(threaded=True)
    timer.epoch_end()
    s = timer.summary()
    assert s["n_batches"] == 60 and s["images"] == 60 * 32
    assert s["n_samples"] == len(timer.window_batch_s) < 60
    assert sum(timer.window_batch_images) == 60 * 32
    assert all(d >= MIN_SAMPLE_S for d in timer.window_batch_s[:-1])
    assert len(timer.window_batch_s) < 60
    # the median sample agrees with the epoch's own rate (no 0-length samples blowing it up)
    assert s["median_img_per_s"] == pytest.approx(timer.epoch_stats[0]["img_per_s"], rel=0.5)


def test_main_thread_batches_stay_one_sample_each() -> None:
    em = ListEmitter()
    timer = RunTimer(em, repeat=0, epochs=1, warmup_epochs=0, batch_size=8)
    timer.epoch_begin(1)
    for _ in range(30):
        time.sleep(0.0005)
        timer.batch_end()
    timer.epoch_end()
    assert len(timer.window_batch_s) == 30 and timer.summary()["n_batches"] == 30
    assert timer.summary()["n_samples"] == 30


def _run(timer: RunTimer, batches: int, step_s: float = 0.0, threaded: bool = False) -> list[int]:
    epochs = []
    for epoch in timer.epoch_numbers():
        epochs.append(epoch)
        timer.epoch_begin(epoch)
        for _ in range(batches):
            if step_s:
                time.sleep(step_s)
            timer.batch_end(threaded=threaded)
        timer.epoch_end(loss=1.0)
    return epochs


def test_no_minimum_runs_exactly_the_asked_epochs() -> None:
    timer = RunTimer(ListEmitter(), repeat=1, epochs=3, warmup_epochs=1, batch_size=8)
    assert timer.max_epochs == 3 and _run(timer, 4) == [1, 2, 3]
    assert timer.window_policy() == {"min_window_s": 0.0, "min_batches": 0, "asked_epochs": 2,
                                     "measured_epochs": 2, "extended_epochs": 0, "met": True}


def test_min_batches_extends_the_window_by_whole_epochs() -> None:
    em = ListEmitter()
    timer = RunTimer(em, repeat=1, epochs=2, warmup_epochs=1, batch_size=8, min_batches=10)
    assert _run(timer, 4) == [1, 2, 3, 4]  # 4, 8, then 12 measured batches
    s = timer.summary()
    assert s["n_batches"] == 12 and s["images"] == 12 * 8
    assert s["window_policy"] == {"min_window_s": 0.0, "min_batches": 10, "asked_epochs": 1, "measured_epochs": 3,
                                  "extended_epochs": 2, "met": True}
    # one window around all measured epochs
    edges = [e["edge"] for e in em.events if e["type"] == "window"]
    assert edges == ["begin", "end"]
    assert [e["type"] for e in em.events][-1] == "window"


def test_min_window_s_extends_until_the_duration_holds() -> None:
    timer = RunTimer(ListEmitter(), repeat=1, epochs=2, warmup_epochs=1, batch_size=8, min_window_s=0.05)
    _run(timer, 2, step_s=0.01)
    s = timer.summary()
    assert s["window_s"] >= 0.05 and s["window_policy"]["met"]
    assert s["window_policy"]["extended_epochs"] >= 1


def test_the_epoch_cap_ends_an_unreachable_window(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgebench.runner import timing

    monkeypatch.setattr(timing, "MAX_EPOCHS", 5)
    timer = RunTimer(ListEmitter(), repeat=1, epochs=2, warmup_epochs=1, batch_size=8, min_batches=10**6)
    assert _run(timer, 3) == [1, 2, 3, 4, 5]
    policy = timer.summary()["window_policy"]
    assert policy["measured_epochs"] == 4 and not policy["met"]


@pytest.mark.parametrize("threaded", [False, True])
def test_blocks_tile_the_window_and_agree_with_its_rate(threaded: bool) -> None:
    timer = RunTimer(ListEmitter(), repeat=1, epochs=4, warmup_epochs=1, batch_size=16)
    _run(timer, 15, step_s=0.001, threaded=threaded)
    s = timer.summary()
    blocks = timer.blocks()
    assert len(blocks) == len(s["block_img_per_s"]) and 5 <= len(blocks) <= 10
    assert sum(n for n, _ in blocks) == s["images"]
    assert sum(t for _, t in blocks) == pytest.approx(s["window_s"], rel=1e-9)
    pooled = sum(n for n, _ in blocks) / sum(t for _, t in blocks)
    assert pooled == pytest.approx(s["window_img_per_s"], rel=1e-9)
    assert all(rate > 0 for rate in s["block_img_per_s"])


def test_a_short_window_has_one_block_per_batch() -> None:
    timer = RunTimer(ListEmitter(), repeat=1, epochs=2, warmup_epochs=1, batch_size=4)
    _run(timer, 3, step_s=0.001)
    assert len(timer.summary()["block_img_per_s"]) == 3


def test_the_summary_is_what_the_schema_accepts() -> None:
    from edgebench.schemas.result import ThroughputSummary

    timer = RunTimer(ListEmitter(), repeat=1, epochs=2, warmup_epochs=1, batch_size=4, min_batches=5)
    _run(timer, 3, step_s=0.001)
    summary = ThroughputSummary.model_validate(timer.summary(), strict=False)
    assert summary.window_policy is not None and summary.window_policy.extended_epochs == 1
    assert summary.block_img_per_s and len(summary.block_img_per_s) == 6
    assert summary.block_images == [4] * 6


def test_the_controller_fills_the_catalogue_window_defaults() -> None:
    from edgebench.controller.plan import build_job
    from edgebench.runner.catalogue import WINDOW_DEFAULTS

    job = build_job({"backend": "torch", "workload": "fashion-mnist-mlp"}, "j-defaults")
    assert (job.min_batches, job.min_window_s) == (WINDOW_DEFAULTS["min_batches"], WINDOW_DEFAULTS["min_window_s"])
    quick = build_job({"backend": "torch", "workload": "fashion-mnist-mlp", "min_batches": 0, "min_window_s": 0},
                      "j-quick")
    assert (quick.min_batches, quick.min_window_s) == (0, 0)


def test_results_from_before_the_window_policy_still_parse() -> None:
    from edgebench.schemas import JobSpec
    from edgebench.schemas.result import ThroughputSummary

    old = {"window_img_per_s": 10.0, "median_img_per_s": 10.0, "mean_img_per_s": 10.0, "std_img_per_s": 0.0,
           "n_batches": 4, "images": 40, "window_s": 4.0}
    summary = ThroughputSummary.model_validate(old)
    assert summary.block_img_per_s is None and summary.window_policy is None
    job = JobSpec.model_validate({"job_id": "j", "backend": "torch", "workload": {
        "model": "mlp", "dataset": "fashion_mnist", "batch_size": 32, "epochs": 2, "optimizer": "adam",
        "learning_rate": 0.001}}, strict=False)
    assert job.min_batches is None and job.min_window_s is None  # no minimum: the runner measures what was asked
