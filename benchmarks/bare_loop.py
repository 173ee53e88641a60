"""The same training loop as the runner, run bare: no agent, no protocol, no
per-batch timer, no sampler. Prints one JSON line with the measured epochs.

    python benchmarks/bare_loop.py JOB.json

Used by benchmarks/harness_overhead.py to measure what edgebench's harness
costs. Epochs are timed from the first batch to a device sync after the last
one, the same definition as runner/timing.py, so the two figures compare.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _ctx(spec: dict[str, Any]) -> Any:
    from edgebench.runner.context import RunContext
    from edgebench.runner.protocol import NullEmitter

    return RunContext(spec, os.environ.get("EDGEBENCH_DATASET_ROOT", "."), None, NullEmitter())


def keras_loop(spec: dict[str, Any]) -> list[tuple[float, float, int]]:
    """A hand-written Keras ``fit`` on the job's model and data: the same build, compile and input
    (host NumPy arrays, or keras_input's device-resident batches for ``input: device``) as the runner,
    with an epoch-only callback instead of the runner's timer."""
    backend = spec["backend"].split("-", 1)[1]
    os.environ["KERAS_BACKEND"] = backend
    import keras

    from edgebench.runner import keras_common, keras_input
    from edgebench.runner.keras3 import make_sync

    ctx = _ctx(spec)
    wl = spec["workload"]
    data_format = spec.get("data_format") or "channels_last"
    keras.config.set_image_data_format(data_format)
    policy = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[spec.get("precision", "fp32")]
    keras.mixed_precision.set_global_policy(policy)
    x, y, _, _, _ = keras_common.load_data(ctx, data_format)
    model = keras_common.build_model(keras, ctx, data_format, policy != "float32")
    keras_common.compile_model(keras, model, ctx,
                               {"jit_compile": "auto" if spec.get("compile") is None else bool(spec["compile"])})
    sync = make_sync(backend) or (lambda: None)
    epochs: list[tuple[float, float, int]] = []
    bs = wl["batch_size"]

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            sync()
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            float(logs["loss"])  # the epoch's last step has finished (an asynchronous backend)
            sync()
            epochs.append((self.t0, time.perf_counter(), steps * bs))

    if spec.get("input") == "device":
        data, steps, _ = keras_input.device_dataset(keras, backend, x, y, bs, wl.get("steps_per_epoch"))
        if hasattr(data, "__getitem__"):
            model.fit(data, epochs=wl["epochs"], verbose=0, callbacks=[EpochTimer()])
        else:
            model.fit(data, epochs=wl["epochs"], steps_per_epoch=steps, verbose=0, callbacks=[EpochTimer()])
    else:
        steps = len(x) // bs
        model.fit(x, y, batch_size=bs, epochs=wl["epochs"], verbose=0, shuffle=True, callbacks=[EpochTimer()])
    return epochs


def native_loop(spec: dict[str, Any]) -> list[tuple[float, float, int]]:
    """The native torch / JAX backend's own model, data and step, looped by hand without the timer."""
    from edgebench.runner.registry import backend_class

    ctx = _ctx(spec)
    backend = backend_class(spec["backend"])(ctx)
    backend.setup()
    backend.place()
    backend.load()
    model = backend.build()
    epochs: list[tuple[float, float, int]] = []
    timer = _EpochClock(backend.timer_sync() or (lambda: None), spec["workload"]["epochs"], epochs,
                        ctx.global_batch_size)
    backend.train(model, timer)
    backend.close()
    return epochs


class _EpochClock:
    """What a native backend's train() calls on its timer, timing whole epochs only (no per-batch record)."""

    def __init__(self, sync: Any, epochs: int, out: list[tuple[float, float, int]], batch_size: int) -> None:
        self.sync, self.max_epochs, self.out, self.batch_size = sync, epochs, out, batch_size
        self.epoch_stats: list[dict[str, Any]] = []
        self.images = 0

    def epoch_numbers(self) -> Any:
        return iter(range(1, self.max_epochs + 1))

    def epoch_begin(self, epoch: int) -> None:
        self.sync()
        self.images = 0
        self.t0 = time.perf_counter()

    def batch_end(self, images: int | None = None, loss: Any = None, threaded: bool = False) -> None:
        self.images += self.batch_size if images is None else images

    def epoch_end(self, loss: Any = None, accuracy: Any = None) -> None:
        self.sync()
        self.out.append((self.t0, time.perf_counter(), self.images))
        self.epoch_stats.append({"loss": loss, "accuracy": accuracy})


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    epochs = native_loop(spec) if spec["backend"] in ("torch", "jax") else keras_loop(spec)
    measured = epochs[spec.get("warmup_epochs", 1):]
    images = sum(n for _, _, n in measured)
    print(json.dumps({
        "epoch_img_per_s": [n / (t1 - t0) for t0, t1, n in epochs],
        # the runner's window: first measured epoch's start to the last one's end
        "window_img_per_s": images / (measured[-1][1] - measured[0][0]),
        # epochs only, without the framework's work between them
        "epochs_only_img_per_s": images / sum(t1 - t0 for t0, t1, _ in measured),
    }))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
