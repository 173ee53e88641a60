"""Training and inference loops for any Keras (3.x or 2.2.4), timed by RunTimer."""

import threading

from . import keras_models
from .catalogue import DATASETS
from .errors import Unsupported
from .timing import RunTimer


def make_timer_callback(keras, timer):
    main_thread = threading.current_thread()

    class TimerCallback(keras.callbacks.Callback):
        # Keras 3 runs batch hooks of an async-safe callback on a thread pool
        # where the backend allows it (JAX, PyTorch), each after its step's
        # results are ready, and flushes them before on_epoch_end. Without this,
        # a batch hook makes Keras wait for every step on the training thread (a
        # host-device sync per step). RunTimer takes batch ends from any thread.
        async_safe = True

        # epoch numbers from Keras are 0-based
        def on_epoch_begin(self, epoch, logs=None):
            timer.epoch_begin(epoch + 1)

        def on_batch_end(self, batch, logs=None):
            timer.batch_end(threaded=threading.current_thread() is not main_thread)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            # Reading the values to host floats waits for the epoch's last step on
            # asynchronous backends (JAX, torch on CUDA), before the clock is read.
            loss = _host_float(logs.get("loss"))
            acc = _host_float(logs.get("accuracy", logs.get("acc")))
            timer.epoch_end(loss=loss, accuracy=acc)

    return TimerCallback()


def prepare_arrays(np, x, y, batch_size, data_format):
    """Drop the last partial batch so that every timed batch has batch_size images."""
    n = (len(x) // batch_size) * batch_size
    if n == 0:
        raise ValueError("workload.batch_size %d exceeds the %d samples available" % (batch_size, len(x)))
    x, y = x[:n], y[:n]
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x, y


def build_model(keras, spec, data_format, mixed):
    wl = spec["workload"]
    info = DATASETS[wl["dataset"]]
    return keras_models.build(keras, wl["model"], info["shape"], info["classes"], data_format, mixed)


def train_repeat(keras, spec, emitter, repeat, x, y, sync, compile_kwargs, use_fit_generator=False,
                 seq=None):
    """One repeat: build, compile, fit; returns (RunTimer, final loss, final accuracy).

    seq: a ready Sequence (streamed data, see streaming_sequence) used instead of x, y.
    """
    wl = spec["workload"]
    timer = RunTimer(emitter, repeat, wl["epochs"], spec["warmup_epochs"], wl["batch_size"], sync)
    emitter.emit("phase", phase="setup", epoch=0, epochs=wl["epochs"], repeat=repeat)
    scope = spec.get("_scope")  # a distribution strategy's scope (MirroredStrategy), if any
    with (scope() if scope else _NoScope()):
        model = spec["_build"]()
        model.compile(
            optimizer=keras_models.optimizer(keras, wl["optimizer"], wl["learning_rate"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            **compile_kwargs
        )
    callback = make_timer_callback(keras, timer)
    steps = wl.get("steps_per_epoch")
    if seq is None and steps:
        seq = cycling_sequence(keras, x, y, wl["batch_size"], steps)
    if seq is not None:
        if use_fit_generator:
            hist = model.fit_generator(seq, steps_per_epoch=len(seq), epochs=wl["epochs"], verbose=0,
                                       callbacks=[callback], shuffle=False, workers=0)
        else:
            hist = model.fit(seq, epochs=wl["epochs"], verbose=0, callbacks=[callback])
    else:
        hist = model.fit(x, y, batch_size=wl["batch_size"], epochs=wl["epochs"], verbose=0,
                         callbacks=[callback], shuffle=True)
    history = getattr(hist, "history", {}) or {}
    loss = _last(history.get("loss"))
    acc = _last(history.get("accuracy", history.get("acc")))
    return timer, loss, acc


def infer_repeat(keras, spec, emitter, repeat, x, sync, jit_compile=None):
    """Inference: per-batch latency of predict_on_batch (its numpy result is synchronous).

    jit_compile (Keras 3 only): True/False as the job asked; None or "auto"
    leaves Keras's own choice (XLA on JAX, eager on PyTorch).
    """
    wl = spec["workload"]
    bs = wl["batch_size"]
    epochs = wl["epochs"]
    warmup = spec["warmup_epochs"]
    if warmup >= epochs:
        # the schema allows it for inference, but nothing would be measured
        raise Unsupported("mode infer: workload.epochs (%d) must exceed warmup_epochs (%d) so that "
                          "one pass is measured" % (epochs, warmup))
    timer = RunTimer(emitter, repeat, epochs, warmup, bs, sync)
    emitter.emit("phase", phase="setup", epoch=0, epochs=epochs, repeat=repeat)
    model = spec["_build"]()
    if jit_compile in (True, False):
        # an uncompiled model never saw the job's compile flag: predict would use Keras's default
        model.jit_compile = jit_compile
    steps = wl.get("steps_per_epoch") or len(x) // bs
    nb = len(x) // bs
    for epoch in range(1, epochs + 1):
        timer.epoch_begin(epoch)
        for i in range(steps):
            j = i % nb
            model.predict_on_batch(x[j * bs:(j + 1) * bs])
            timer.batch_end()
        timer.epoch_end()
    return timer


def cycling_sequence(keras, x, y, batch_size, steps):
    base = getattr(keras.utils, "PyDataset", None) or keras.utils.Sequence
    nb = len(x) // batch_size

    class Cycling(base):
        def __len__(self):
            return steps

        def __getitem__(self, i):
            j = i % nb
            return x[j * batch_size:(j + 1) * batch_size], y[j * batch_size:(j + 1) * batch_size]

    return Cycling()


def streaming_sequence(keras, batches, steps):
    """A Sequence of `steps` batches per epoch pulled in order from an endless iterable.

    The index Keras asks for is ignored: a stream (runner/imagenet.py) decodes
    ahead in its own threads, so Keras must not add workers of its own.
    """
    base = getattr(keras.utils, "PyDataset", None) or keras.utils.Sequence
    it = iter(batches)

    class Streaming(base):
        def __len__(self):
            return steps

        def __getitem__(self, i):
            return next(it)

    return Streaming()


def _last(values):
    if not values:
        return None
    return values[-1]


class _NoScope(object):
    """contextlib.nullcontext for Python 3.6."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _host_float(value):
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
