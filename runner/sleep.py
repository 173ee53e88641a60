"""Diagnostic backend: emits the protocol of a real run without a framework.

Each batch sleeps 10 ms (steps_per_epoch batches per epoch, default 5).
Used by lifecycle tests and the fleet-scale benchmark.
"""

import os
import time

from runner.timing import RunTimer

BATCH_S = 0.01


def run(spec, emitter, dataset_root):
    wl = spec["workload"]
    emitter.emit("hello", backend="sleep", libraries={}, pid=os.getpid())
    emitter.emit("data", source="synthetic", samples=0)
    steps = wl.get("steps_per_epoch") or 5
    runs = []
    for repeat in range(1, spec.get("repeats", 1) + 1):
        timer = RunTimer(emitter, repeat, wl["epochs"], spec["warmup_epochs"], wl["batch_size"])
        for epoch in range(1, wl["epochs"] + 1):
            timer.epoch_begin(epoch)
            for _ in range(steps):
                time.sleep(BATCH_S)
                timer.batch_end(loss=1.0)
            timer.epoch_end(loss=1.0, accuracy=0.5)
        runs.append(timer.run_record(spec.get("mode", "train"), 1.0, 0.5, {"sleep_per_batch_s": str(BATCH_S)}))
    emitter.emit("result", runs=runs, knobs={"sleep_per_batch_s": str(BATCH_S)}, data_source="synthetic",
                 global_batch_size=wl["batch_size"], per_device_batch_size=wl["batch_size"])
