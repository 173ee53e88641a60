"""Diagnostic backend: emits the protocol of a real run without a framework.

Each batch sleeps 10 ms (steps_per_epoch batches per epoch, default 5).
Used by lifecycle tests and the fleet-scale benchmark.

Fault injection (for tests of the agent's failure paths). The agent's
operator, not the job, chooses a fault: set ``EDGEBENCH_SLEEP_FAULT`` in the
environment of the ``sleep`` backend (``backends: {sleep: {env: {...}}}`` in
the agent's YAML). Nothing that travels in a job can turn it on, and the
variable only affects this diagnostic backend. The fault strikes at the start
of the first measured epoch, so the job has been IN_PROGRESS for a while:

- ``oom``: raise runner.errors.OutOfMemory (the run ends FAILED, error_type OOM);
- ``crash``: write a line to stderr and exit with status 3 without a result
  or error line (the agent reports RunnerCrash with the stderr tail);
- ``hang``: start a child process (as frameworks start data-loader workers)
  and go silent forever (the agent's step timeout or a cancel ends both).
"""

import os
import sys
import time

from .errors import OutOfMemory
from .timing import RunTimer

BATCH_S = 0.01
FAULT_ENV = "EDGEBENCH_SLEEP_FAULT"


def _inject(fault):
    if fault == "oom":
        raise OutOfMemory("simulated: %s=oom" % FAULT_ENV)
    if fault == "crash":
        sys.stderr.write("sleep runner: simulated crash (%s=crash)\n" % FAULT_ENV)
        sys.stderr.flush()
        os._exit(3)
    if fault == "hang":
        import subprocess

        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        while True:
            time.sleep(3600)
    raise ValueError("unknown %s=%r (oom, crash or hang)" % (FAULT_ENV, fault))


def run(spec, emitter, dataset_root):
    wl = spec["workload"]
    fault = os.environ.get(FAULT_ENV, "")
    emitter.emit("hello", backend="sleep", libraries={}, pid=os.getpid())
    emitter.emit("data", source="synthetic", samples=0)
    steps = wl.get("steps_per_epoch") or 5
    runs = []
    for repeat in range(1, spec.get("repeats", 1) + 1):
        timer = RunTimer(emitter, repeat, wl["epochs"], spec["warmup_epochs"], wl["batch_size"])
        for epoch in range(1, wl["epochs"] + 1):
            timer.epoch_begin(epoch)
            if fault and timer.measuring:
                _inject(fault)
            for _ in range(steps):
                time.sleep(BATCH_S)
                timer.batch_end(loss=1.0)
            timer.epoch_end(loss=1.0, accuracy=0.5)
        runs.append(timer.run_record(spec.get("mode", "train"), 1.0, 0.5, {"sleep_per_batch_s": str(BATCH_S)}))
    emitter.emit("result", runs=runs, knobs={"sleep_per_batch_s": str(BATCH_S)}, data_source="synthetic",
                 global_batch_size=wl["batch_size"], per_device_batch_size=wl["batch_size"])
