"""The runner -> agent protocol: JSON lines on the runner's real stdout.

The vocabulary is declared here once: a constant per message kind and a
constructor per kind that names every field. Backends and the skeleton build
messages only through these constructors and hand them to
:meth:`Emitter.send`; the agent parses the same kinds into typed records
(edgebench/agent/runner_messages.py), and tests/runner/test_protocol_sync.py
keeps both sides and edgebench/schemas in step.

Messages, in the order a run sends them (``t``, the send time in epoch
seconds, is added to each by the emitter):

- ``hello``: backend, library versions, pid, python version (legacy stacks add
  the shims they applied and their private KERAS_HOME);
- ``data``: data source (real or synthetic) and sample count;
- per repeat: ``phase`` (setup, warmup, measure), ``window`` (begin, end),
  ``progress`` (about once a second), ``epoch`` (one per epoch);
- ``result`` (runs, knobs, batch sizes, where the job ran) or ``error``
  (a typed error, runner/errors.py).

The runner moves the real stdout aside at start-up so that framework noise
(progress bars, prints) cannot corrupt the protocol: fd 1 then points at
stderr, and protocol lines go to the saved descriptor.

Python 3.6 compatible, standard library only.
"""

import json
import os
import sys
import threading
import time

HELLO = "hello"
DATA = "data"
PHASE = "phase"
WINDOW = "window"
PROGRESS = "progress"
EPOCH = "epoch"
RESULT = "result"
ERROR = "error"
KINDS = (HELLO, DATA, PHASE, WINDOW, PROGRESS, EPOCH, RESULT, ERROR)

# Phases the runner reports (schemas.events.Progress.phase has these and more).
SETUP = "setup"
WARMUP = "warmup"
MEASURE = "measure"
PHASES = (SETUP, WARMUP, MEASURE)

WINDOW_EDGES = ("begin", "end")
DATA_SOURCES = ("real", "synthetic")
# schemas.result.DevicesUsed.kind
DEVICE_KINDS = ("cpu", "gpu", "other")

# Strings the runner sends are cut to these lengths (the agent bounds them again).
MAX_MESSAGE_CHARS = 4000
MAX_DETAIL_CHARS = 2000


def hello(backend, libraries, pid, python, shims=None, keras_home=None):
    msg = {"type": HELLO, "backend": backend, "libraries": dict(libraries), "pid": int(pid), "python": python}
    if shims is not None:
        msg["shims"] = list(shims)
    if keras_home is not None:
        msg["keras_home"] = keras_home
    return msg


def data(source, samples):
    if source not in DATA_SOURCES:
        raise ValueError("data source %r is not one of %s" % (source, DATA_SOURCES))
    return {"type": DATA, "source": source, "samples": int(samples)}


def phase(phase_, epoch_, epochs, repeat):
    if phase_ not in PHASES:
        raise ValueError("phase %r is not one of %s" % (phase_, PHASES))
    return {"type": PHASE, "phase": phase_, "epoch": int(epoch_), "epochs": int(epochs), "repeat": int(repeat)}


def window(edge, repeat):
    if edge not in WINDOW_EDGES:
        raise ValueError("window edge %r is not one of %s" % (edge, WINDOW_EDGES))
    return {"type": WINDOW, "edge": edge, "repeat": int(repeat)}


def progress(repeat, epoch_, epochs, batch, img_per_s, loss, phase_):
    return {"type": PROGRESS, "repeat": int(repeat), "epoch": int(epoch_), "epochs": int(epochs),
            "batch": int(batch), "img_per_s": img_per_s, "loss": loss, "phase": phase_}


def epoch(repeat, stat):
    """One epoch's record; ``stat`` as RunTimer.epoch_end makes it (schemas.result.EpochStat)."""
    msg = {"type": EPOCH, "repeat": int(repeat)}
    for key in ("epoch", "warmup", "images", "batches", "seconds", "img_per_s", "loss", "accuracy"):
        msg[key] = stat[key]
    return msg


def devices_used(framework, kind, devices, detail=""):
    """Where the job ran, as the framework reports it (schemas.result.DevicesUsed)."""
    if kind not in DEVICE_KINDS:
        raise ValueError("device kind %r is not one of %s" % (kind, DEVICE_KINDS))
    return {"framework": str(framework)[:64], "kind": kind, "devices": [str(d)[:200] for d in devices][:256],
            "detail": str(detail)[:MAX_DETAIL_CHARS]}


def result(runs, knobs, data_source, global_batch_size, per_device_batch_size, devices):
    """The last message of a successful run; ``devices`` from :func:`devices_used` (or None)."""
    return {"type": RESULT, "runs": runs, "knobs": dict((str(k), str(v)) for k, v in knobs.items()),
            "data_source": data_source, "global_batch_size": int(global_batch_size),
            "per_device_batch_size": int(per_device_batch_size), "devices_used": devices}


def error(error_type, message):
    return {"type": ERROR, "error_type": error_type, "message": str(message)[:MAX_MESSAGE_CHARS]}


class Emitter(object):
    def __init__(self, fd):
        self._out = os.fdopen(fd, "w", 1)
        self._lock = threading.Lock()  # batch hooks may emit from Keras's callback threads

    @classmethod
    def take_stdout(cls):
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)  # anything printed from now on lands on stderr
        return cls(saved)

    def send(self, message):
        """Write one message made by a constructor above."""
        fields = dict(message)
        fields["t"] = time.time()
        line = json.dumps(fields, allow_nan=False, default=_default) + "\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()


class NullEmitter(object):
    """Swallows every message (used where nothing listens)."""

    def send(self, message):
        pass


def _default(obj):
    # numpy scalars and the like
    for attr in ("item", "tolist"):
        if hasattr(obj, attr):
            return getattr(obj, attr)()
    return str(obj)
