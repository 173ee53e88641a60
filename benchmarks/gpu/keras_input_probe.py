"""Where does Keras-JAX device-resident input lose time? One process, bare ``fit()``, same model and data:

  host       fit() on NumPy arrays (Keras slices on the host, prefetches 2 batches to the device)
  resident   runner/keras_input.py as the runner uses it (a PyDataset whose __getitem__ gathers on the device)
  premade    a PyDataset returning batches already gathered on the device (no work per step)
  gather     the jitted gather alone, timed with block_until_ready

The first H200 run of benchmarks/gpu/keras_fidelity.sh (2026-12-02) had device input at half the host
input's img/s (1,439 vs 3,198 bare, ResNet-50 bs256 bf16). Prints one JSON line per variant.

  python benchmarks/gpu/keras_input_probe.py [--size 224] [--batch 256] [--steps 10] [--epochs 3]
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--variants", default="host,resident,premade,gather")
    a = ap.parse_args()
    import jax
    import keras
    import numpy as np

    from edgebench.runner import keras_input

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    n = a.batch * a.steps
    rng = np.random.RandomState(0)
    x = rng.rand(n, a.size, a.size, 3).astype("float32")
    y = rng.randint(0, 1000, n).astype("int32")

    def model():
        m = keras.applications.ResNet50(weights=None, input_shape=(a.size, a.size, 3), classes=1000)
        m.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy", jit_compile=True)
        return m

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.s = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            float(logs["loss"])
            self.s.append(time.perf_counter() - self.t)

    def report(name, clock, extra=None):
        ips = [a.batch * a.steps / s for s in clock.s[1:]]
        out = {"variant": name, "img_per_s": [round(v, 1) for v in ips],
               "median": round(sorted(ips)[len(ips) // 2], 1) if ips else None, "devices": str(jax.devices()[0])}
        out.update(extra or {})
        print(json.dumps(out), flush=True)

    for v in a.variants.split(","):
        t0 = time.perf_counter()
        if v == "host":
            c = Clock()
            model().fit(x, y, batch_size=a.batch, epochs=a.epochs, shuffle=True, verbose=0, callbacks=[c])
            report(v, c)
        elif v == "resident":
            data, steps, desc = keras_input.device_dataset(keras, "jax", x, y, a.batch, a.steps)
            c = Clock()
            model().fit(data, epochs=a.epochs, steps_per_epoch=steps, verbose=0, callbacks=[c])
            report(v, c, {"desc": desc})
        elif v == "premade":
            import jax.numpy as jnp
            xb = [jax.device_put(x[i * a.batch:(i + 1) * a.batch]) for i in range(a.steps)]
            yb = [jax.device_put(y[i * a.batch:(i + 1) * a.batch]) for i in range(a.steps)]
            jax.block_until_ready((xb, yb))
            base = getattr(keras.utils, "PyDataset", None) or keras.utils.Sequence

            class Premade(base):
                def __init__(self, xs, ys):
                    self.xs, self.ys = xs, ys

                def __len__(self):
                    return a.steps

                def __getitem__(self, i):
                    return self.xs[i % a.steps], self.ys[i % a.steps]

            c = Clock()
            model().fit(Premade(xb, yb), epochs=a.epochs, steps_per_epoch=a.steps, verbose=0, callbacks=[c])
            report(v, c)
            del jnp
        elif v == "gather":
            data, steps, desc = keras_input.device_dataset(keras, "jax", x, y, a.batch, a.steps)
            jax.block_until_ready(data[0])
            t = time.perf_counter()
            for i in range(50):
                out = data[i]
            jax.block_until_ready(out)
            per = (time.perf_counter() - t) / 50
            print(json.dumps({"variant": v, "ms_per_gather": round(per * 1e3, 3)}), flush=True)
        print(json.dumps({"variant": v, "wall_s": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
