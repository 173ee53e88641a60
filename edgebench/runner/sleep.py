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

Its jobs run exactly the epochs they ask for (no window extension), and it
"sees" the GPUs the agent gave it (CUDA_VISIBLE_DEVICES) without using them,
so GPU scheduling can be exercised on machines without a framework.
"""

import os
import sys
import time

from . import protocol
from .backend import Backend, Loaded
from .errors import OutOfMemory

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


def _visible_gpus():
    return [part for part in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if part.strip()]


class SleepBackend(Backend):
    # Its batches are sleeps: a longer window would measure nothing and only slow the
    # lifecycle tests and control-plane benchmarks that time these jobs exactly.
    extends_window = False

    def versions(self):
        return {}

    def accelerators(self):
        given = _visible_gpus()
        return len(given), "the sleep backend was given %d GPU(s) (CUDA_VISIBLE_DEVICES=%s)" % (
            len(given), ",".join(given) or "")

    def load(self):
        return Loaded("synthetic", 0)

    def build(self):
        return None

    def train(self, model, timer):
        fault = os.environ.get(FAULT_ENV, "")
        steps = self.ctx.steps_per_epoch or 5
        for epoch in timer.epoch_numbers():
            timer.epoch_begin(epoch)
            if fault and timer.measuring:
                _inject(fault)
            for _ in range(steps):
                time.sleep(BATCH_S)
                timer.batch_end(loss=1.0)
            timer.epoch_end(loss=1.0, accuracy=0.5)
        return 1.0, 0.5

    def infer(self, model, timer):
        self.train(model, timer)

    def knobs(self):
        return {"sleep_per_batch_s": str(BATCH_S)}

    def devices_used(self):
        return protocol.devices_used("sleep", "cpu", ["cpu"], "diagnostic backend: sleeps %g s per batch, "
                                     "computes nothing" % BATCH_S)
