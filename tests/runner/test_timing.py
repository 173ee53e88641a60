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


def test_batch_ends_from_threads_out_of_order_give_ordered_durations() -> None:
    # As Keras 3 on JAX delivers them: from a thread pool, each once its step is done.
    em = ListEmitter()
    timer = RunTimer(em, repeat=0, epochs=1, warmup_epochs=0, batch_size=16)
    timer.epoch_begin(1)
    t0 = time.perf_counter()
    step_s = 0.01  # above MIN_SAMPLE_S: one sample per batch
    done_at = [t0 + step_s * (i + 1) for i in range(20)]  # step i completes at done_at[i]

    def deliver(i: int) -> None:
        time.sleep(max(0.0, done_at[i] - time.perf_counter()))
        timer.batch_end(threaded=True)

    order = list(range(20))
    random.Random(7).shuffle(order)
    threads = [threading.Thread(target=deliver, args=(i,)) for i in order]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    timer.epoch_end()
    assert len(timer.window_batch_s) == 20 and timer.summary()["n_batches"] == 20
    assert all(d >= 0 for d in timer.window_batch_s)
    assert sum(timer.window_batch_s) <= timer.epoch_stats[0]["seconds"] + 1e-6
    # each duration is about one step (thread wake-up jitter aside)
    assert sorted(timer.window_batch_s)[10] == pytest.approx(step_s, abs=0.006)
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
