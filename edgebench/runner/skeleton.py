"""One run of one job, the same for every backend (runner/backend.py).

The skeleton owns the order of the protocol messages (hello, data, per repeat
setup/warm-up/measure with the window, result), the repeats, and the check
that the framework sees the GPUs the job asks for; the measured window itself
is runner/timing.py's. A backend only answers the calls below.
"""

import os
import platform
import sys
import traceback

from . import protocol
from .errors import Unsupported
from .timing import RunTimer


def run(ctx, backend_cls):
    """Run the job described by ctx with a backend of class backend_cls; send its result.

    Raises what the backend raised (runner/__main__.py turns it into an error line).
    """
    backend = backend_cls(ctx)
    if backend.drives_run:
        check_accelerators(ctx, backend)
        backend.run_job()  # a harness decides every timing (runner/inference, MLPerf LoadGen)
        return
    if ctx.infer:
        ctx.check_measured()
    check_input(ctx, backend)
    backend.check()
    try:
        backend.setup()
        ctx.emitter.send(protocol.hello(ctx.backend, backend.versions(), os.getpid(), platform.python_version(),
                                        shims=backend.shims, keras_home=backend.keras_home))
        check_accelerators(ctx, backend)
        backend.place()
        loaded = backend.load()
        ctx.emitter.send(protocol.data(loaded.source, loaded.samples))
        runs = [_repeat(ctx, backend, repeat) for repeat in range(1, ctx.repeats + 1)]
        # one set of knobs for the job: read after the repeats, when the framework
        # can say what it did (optimiser implementation, peak memory, devices)
        knobs = backend.knobs()
        for record in runs:
            record["knobs"] = knobs
        devices = backend.devices_used()
    except BaseException:
        _close_quietly(backend)  # the first error is the one to report
        raise
    backend.close()
    ctx.emitter.send(protocol.result(runs, knobs, loaded.source, ctx.global_batch_size,
                                     ctx.per_device_batch_size, devices))


def check_input(ctx, backend):
    """A job's ``input`` knob is honoured or refused, never ignored."""
    if ctx.input is not None and ctx.input not in backend.inputs:
        raise Unsupported("input %r: backend %s batches in-memory data on the %s only" % (
            ctx.input, ctx.backend, " or ".join(backend.inputs)), field="input")


def check_accelerators(ctx, backend):
    """A GPU job never silently runs on the CPU: refuse gpus > what the framework sees."""
    if ctx.gpus == 0:
        return
    count, seen = backend.accelerators()
    if count is not None and count < ctx.gpus:  # None: the backend cannot count (checked at its start)
        raise Unsupported("gpus=%d but %s" % (ctx.gpus, seen), field="gpus")


def _repeat(ctx, backend, repeat):
    ctx.emitter.send(protocol.phase(protocol.SETUP, 0, ctx.epochs, repeat))
    model = backend.build()
    extend = backend.extends_window
    timer = RunTimer(ctx.emitter, repeat, ctx.epochs, ctx.warmup_epochs, ctx.global_batch_size,
                     backend.timer_sync(), min_batches=ctx.min_batches if extend else 0,
                     min_window_s=ctx.min_window_s if extend else 0.0)
    if ctx.infer:
        backend.infer(model, timer)
        return timer.run_record("infer")
    loss, accuracy = backend.train(model, timer)
    return timer.run_record("train", loss, accuracy)


def _close_quietly(backend):
    try:
        backend.close()
    except Exception:  # noqa: BLE001 - reported on stderr; the original error wins
        traceback.print_exc(file=sys.stderr)
