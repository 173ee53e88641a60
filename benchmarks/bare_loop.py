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


def keras_loop(spec: dict[str, Any]) -> list[tuple[float, float, int]]:
    backend = spec["backend"].split("-", 1)[1]
    os.environ["KERAS_BACKEND"] = backend
    import keras
    import numpy as np

    from edgebench.runner import keras_common
    from edgebench.runner.datasets import load
    from edgebench.runner.keras3 import make_sync

    wl = spec["workload"]
    data_format = spec.get("data_format") or "channels_last"
    keras.config.set_image_data_format(data_format)
    policy = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[spec.get("precision", "fp32")]
    keras.mixed_precision.set_global_policy(policy)
    x, y, _ = load(wl["dataset"], ".", True, wl.get("samples"))
    x, y = keras_common.prepare_arrays(np, x, y, wl["batch_size"], data_format)
    model = keras_common.build_model(keras, spec, data_format, policy != "float32")
    from edgebench.runner import keras_models

    model.compile(optimizer=keras_models.optimizer(keras, wl["optimizer"], wl["learning_rate"]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile="auto" if spec.get("compile") is None else bool(spec["compile"]))
    sync = make_sync(backend) or (lambda: None)
    epochs: list[tuple[float, float, int]] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            sync()
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            sync()
            epochs.append((self.t0, time.perf_counter(), len(x)))

    model.fit(x, y, batch_size=wl["batch_size"], epochs=wl["epochs"], verbose=0, shuffle=True,
              callbacks=[EpochTimer()])
    return epochs


def torch_loop(spec: dict[str, Any]) -> list[tuple[float, float, int]]:
    import torch
    import torch.nn.functional as F

    from edgebench.runner import torch_native as tn

    wl = spec["workload"]
    placement, _ = tn.placement_for(torch, spec)
    if placement.is_cuda:
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    data_format = tn._data_format(spec, placement)
    memory_format = torch.channels_last if data_format == "channels_last" else torch.contiguous_format
    source, _, _ = tn._load_data(torch, spec, ".", placement, memory_format, False)
    precision = tn.Precision(torch, spec.get("precision", "fp32"), placement.device)
    model = tn._build(torch, spec, placement, memory_format)
    opt, _ = tn.optimizer_for(torch, wl["optimizer"], [{"params": list(model.parameters())}],
                              wl["learning_rate"], placement)
    net = torch.compile(model) if spec.get("compile") else model
    net.train()
    steps = tn._steps(spec, source)
    batches = source.batches(shuffle=True)
    epochs = []
    for _ in range(wl["epochs"]):
        placement.sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            xb, yb = next(batches)
            opt.zero_grad(set_to_none=True)
            with precision.autocast():
                loss = F.cross_entropy(net(xb), yb)
            if precision.scaler is not None:
                precision.scaler.scale(loss).backward()
                precision.scaler.step(opt)
                precision.scaler.update()
            else:
                loss.backward()
                opt.step()
        placement.sync()
        epochs.append((t0, time.perf_counter(), steps * wl["batch_size"]))
    return epochs


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    epochs = torch_loop(spec) if spec["backend"] == "torch" else keras_loop(spec)
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
