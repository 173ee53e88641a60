"""What the runner's per-batch timing costs Keras ``fit``, measured inside one process.

A/B/C epochs of the same compiled model, alternating arm by arm (so that load
from other processes on a shared box hits every arm alike, which separate
processes minutes apart cannot promise):

- ``bare``: an epoch-only callback (what benchmarks/bare_loop.py times);
- ``hook``: plus an async-safe callback with an empty ``on_batch_end`` (Keras's
  per-batch dispatch to its callback thread pool, nothing of edgebench's);
- ``timer``: plus the runner's own TimerCallback and RunTimer (keras_common.py,
  timing.py), emitting its protocol lines (progress every second) to /dev/null
  through the runner's Emitter and its lock.

    python benchmarks/keras_hook_cost.py --backend jax --rounds 10 --out hook.json

Prints the median img/s per arm and the per-batch cost of each layer in µs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="jax", choices=("jax", "torch", "tensorflow"))
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--samples", type=int, default=30000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend
    import keras
    import numpy as np

    from edgebench.runner import keras_common, keras_models
    from edgebench.runner.protocol import Emitter
    from edgebench.runner.timing import RunTimer

    rng = np.random.RandomState(0)
    x = rng.random_sample((args.samples, 28, 28, 1)).astype("float32")
    y = rng.randint(0, 10, args.samples).astype("int32")
    model = keras_models.build(keras, args.model, (28, 28, 1), 10, "channels_last")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    emitter = Emitter(os.open(os.devnull, os.O_WRONLY))

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            float((logs or {}).get("loss", 0.0))  # the last step has finished
            self.t1 = time.perf_counter()

    class EmptyHook(EpochClock):
        async_safe = True

        def on_batch_end(self, batch: int, logs: Any = None) -> None:
            pass

    def epoch(arm: str) -> float:
        clock = EpochClock() if arm == "bare" else EmptyHook()
        callbacks: list[Any] = [clock]
        if arm == "timer":
            timer = RunTimer(emitter, 1, 1000, 0, args.batch_size)
            timer.epoch_begin(1)
            callbacks.append(keras_common.make_timer_callback(keras, timer))
        model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=True, callbacks=callbacks)
        return (len(x) // args.batch_size) * args.batch_size / (clock.t1 - clock.t0)

    arms = ("bare", "hook", "timer")
    for arm in arms:  # compile and warm every path once
        epoch(arm)
    rates: dict[str, list[float]] = {a: [] for a in arms}
    for rnd in range(args.rounds):
        for arm in arms if rnd % 2 == 0 else tuple(reversed(arms)):
            rates[arm].append(epoch(arm))
    med = {a: statistics.median(v) for a, v in rates.items()}
    batches_per_s = {a: m / args.batch_size for a, m in med.items()}
    cost_us = {
        "keras_async_hook_us": 1e6 * (1 / batches_per_s["hook"] - 1 / batches_per_s["bare"]),
        "edgebench_timer_us": 1e6 * (1 / batches_per_s["timer"] - 1 / batches_per_s["hook"]),
    }
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
              "load_avg": os.getloadavg(), "args": vars(args) | {"out": str(args.out)}, "img_per_s": rates,
              "median_img_per_s": med, "ratio_timer_vs_bare": med["timer"] / med["bare"], **cost_us,
              "keras": keras.__version__}
    for arm in arms:
        print(f"{arm:6s} median {med[arm]:10.1f} img/s  {[round(r) for r in rates[arm]]}")
    print(f"timer / bare = {result['ratio_timer_vs_bare']:.3f}; Keras's async batch hook "
          f"{cost_us['keras_async_hook_us']:+.1f} µs/batch, edgebench's timer {cost_us['edgebench_timer_us']:+.1f} µs")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
