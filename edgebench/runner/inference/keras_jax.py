"""Keras 3 on JAX under LoadGen: the catalogue's Keras model answered by one jitted ``stateless_call``
(the model's pure apply function; no ``predict`` loop, no callbacks), with the variables and the query
samples on the device before timing. What the Keras adapters share is keras_runtime.py.
"""

import os

from ..errors import Unsupported
from .keras_runtime import POLICIES, KerasRuntime


class KerasJax(KerasRuntime):
    name = "keras-jax"
    keras_backend = "jax"
    framework = "jax"
    static_batch = True  # jax.jit compiles once per shape

    def _import(self):
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with the agent's NVML
        keras = KerasRuntime._import(self)
        import jax

        self.jax = jax
        return keras

    def framework_version(self):
        import jax

        return jax.__version__

    def versions(self):
        out = KerasRuntime.versions(self)
        out["jaxlib"] = _jaxlib_version()
        return out

    def load(self, batch_sizes):
        keras = self._import()
        jax = self.jax
        self.check_precision()
        want_gpu = self.want_gpu()
        gpus = [d for d in jax.devices() if d.platform == "gpu"] if want_gpu else []
        if want_gpu and not gpus:
            raise Unsupported("jax %s sees no GPU (devices: %s)" % (jax.__version__, jax.devices()))
        self.device = gpus[0] if gpus else jax.devices("cpu")[0]
        self.ref_model, self.model = self.build_pair(keras, "cpu")  # variables: placed below, by device_put
        self.weights = ([v.value for v in self.ref_model.trainable_variables],
                        [v.value for v in self.ref_model.non_trainable_variables])

        def apply(net):
            def fn(trainable, non_trainable, x):
                return net.stateless_call(trainable, non_trainable, x, training=False)[0]

            return jax.jit(fn)

        self.apply = apply(self.model)
        self.ref_apply = apply(self.ref_model) if self.model is not self.ref_model else self.apply
        self.on_device = jax.device_put(self.weights, self.device)

    def stage(self, samples):
        """The query samples in device memory before timing (on the CPU: the host array)."""
        if self.device.platform == "cpu":
            return samples
        self.resident = True
        return self.jax.device_put(samples, self.device)

    def reference(self, inputs):
        import numpy

        cpu = self.jax.devices("cpu")[0]
        weights = self.jax.device_put(self.weights, cpu)
        out = self.ref_apply(weights[0], weights[1], self.jax.device_put(inputs, cpu))
        return numpy.asarray(out, dtype="float32"), self.reference_description()

    def predict(self, x):
        import numpy

        # on the CPU a host array goes to the jitted call as it is: an explicit device_put first cost
        # 65 us a query (SingleStream p90 of the CNN: 1.30 x the bare call, benchmarks/inference_overhead.py)
        on_host = isinstance(x, numpy.ndarray) and self.device.platform != "cpu"
        xs = self.jax.device_put(x, self.device) if on_host else x
        out = self.apply(self.on_device[0], self.on_device[1], xs)
        return numpy.asarray(out)  # waits for the device; the copy is the answer LoadGen is given

    def knobs(self):
        knobs = self.common_knobs()
        knobs.update({"device": str(self.device), "apply": "jax.jit(model.stateless_call)",
                      "dtype_policy": POLICIES.get(self.precision, ""),
                      "samples": "resident on %s before timing" % self.device if self.resident else "host memory"})
        return knobs

    def provider(self):
        return str(self.device.platform)

    def devices_used(self):
        if self.device.platform == "gpu":
            return {"framework": "jax", "kind": "gpu", "devices": [str(self.device)],
                    "detail": getattr(self.device, "device_kind", "")}
        return {"framework": "jax", "kind": "cpu", "devices": ["cpu"], "detail": ""}


def _jaxlib_version():
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return ""
