"""Data, models, training and inference loops for any Keras (3.x or 2.2.4), timed by RunTimer."""

import threading

from . import keras_models, user_models
from .backend import Loaded
from .catalogue import DATASETS
from .datasets import is_streamed, load


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
            if timer.finished and epoch + 1 < timer.max_epochs:
                self.model.stop_training = True  # measured enough: fit was told the most it may run

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


def build_model(keras, ctx, data_format, mixed):
    if user_models.is_user_model(ctx.spec):  # a user's .keras file, verified, in safe mode (docs/MODELS.md)
        return user_models.load_keras(keras, user_models.artifact(ctx.spec, "keras").path)
    info = DATASETS[ctx.dataset]
    return keras_models.build(keras, ctx.workload["model"], info["shape"], info["classes"], data_format, mixed)


def compile_model(keras, model, ctx, compile_kwargs):
    wl = ctx.workload
    model.compile(
        optimizer=keras_models.optimizer(keras, wl["optimizer"], wl["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        **compile_kwargs
    )


def fit(keras, model, timer, ctx, x, y, use_fit_generator=False, seq=None, steps=None):
    """Train one repeat with fit (or fit_generator); returns (final loss, final accuracy).

    seq: a ready Sequence (streamed data, see streaming_sequence; device-resident
    batches, keras_input.py) or an endless tf.data.Dataset of ``steps`` batches
    per epoch, used instead of x, y.
    The timer's callback ends fit once the timer has measured enough epochs.
    """
    bs = ctx.global_batch_size
    callback = make_timer_callback(keras, timer)
    epochs = timer.max_epochs
    if seq is not None and steps:  # an endless dataset: fit is told the epoch's length
        hist = model.fit(seq, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[callback])
        return _last_logs(hist)
    steps = ctx.steps_per_epoch
    if seq is None and steps:
        seq = cycling_sequence(keras, x, y, bs, steps)
    if seq is not None:
        if use_fit_generator:
            hist = model.fit_generator(seq, steps_per_epoch=len(seq), epochs=epochs, verbose=0,
                                       callbacks=[callback], shuffle=False, workers=0)
        else:
            hist = model.fit(seq, epochs=epochs, verbose=0, callbacks=[callback])
    else:
        hist = model.fit(x, y, batch_size=bs, epochs=epochs, verbose=0, callbacks=[callback], shuffle=True)
    return _last_logs(hist)


def _last_logs(hist):
    history = getattr(hist, "history", {}) or {}
    loss = _last(history.get("loss"))
    acc = _last(history.get("accuracy", history.get("acc")))
    return loss, acc


def predict(model, timer, ctx, x):
    """Inference: per-batch latency of predict_on_batch (its numpy result is synchronous)."""
    bs = ctx.global_batch_size
    steps = ctx.steps_per_epoch or len(x) // bs
    nb = len(x) // bs
    for epoch in timer.epoch_numbers():
        timer.epoch_begin(epoch)
        for i in range(steps):
            j = i % nb
            model.predict_on_batch(x[j * bs:(j + 1) * bs])
            timer.batch_end()
        timer.epoch_end()


def load_data(ctx, data_format):
    """(x, y, stream, Loaded): arrays in memory, or a stream of decoded batches for the
    streamed datasets (ImageNet folders; decoded up front for inference, so that latency
    is the model's alone). Batches hold ctx.global_batch_size images."""
    import numpy as np

    bs = ctx.global_batch_size
    if user_models.is_user_model(ctx.spec):  # already in the model's own input layout
        x, y, source = user_models.arrays(ctx.spec, ctx.dataset_root)
        x, y = prepare_arrays(np, x, y, bs, "channels_last")
        return x, y, None, Loaded(source, len(x)), "in memory (numpy), the model's input signature"
    if is_streamed(ctx.dataset, ctx.synthetic):
        from . import imagenet

        stream = imagenet.ImageFolderStream(ctx.dataset_root, bs, samples=ctx.samples,
                                            channels_first=data_format == "channels_first")
        loaded = Loaded("real", len(stream))
        if ctx.infer:
            x, y = imagenet.infer_arrays(stream, ctx.samples)
            return x, y, None, loaded, stream.describe()
        return None, None, stream, loaded, stream.describe()
    x, y, source = load(ctx.dataset, ctx.dataset_root, ctx.synthetic, ctx.samples)
    x, y = prepare_arrays(np, x, y, bs, data_format)
    return x, y, None, Loaded(source, len(x)), "in memory (numpy)"


def streaming_fit_sequence(keras, ctx, stream):
    """The Sequence for one repeat over a stream: steps_per_epoch batches, or one pass."""
    steps = ctx.steps_per_epoch or max(1, len(stream) // ctx.global_batch_size)
    return streaming_sequence(keras, stream, steps)


def variable_devices(model):
    """Where the model's first weight lives, as the framework names it ([] if unknown)."""
    try:
        value = model.trainable_variables[0].value
    except (AttributeError, IndexError):
        return []
    sharding = getattr(value, "sharding", None)  # a JAX array
    if sharding is not None and hasattr(sharding, "device_set"):
        return sorted(str(d) for d in sharding.device_set)
    device = getattr(value, "device", None)  # torch tensor, TF variable
    return [str(device)] if device is not None else []


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


class NoScope(object):
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
