"""Keras 3 on JAX under LoadGen: the catalogue's Keras model (runner/keras_models.py, seed 0),
answered by one jitted ``stateless_call`` (the model's pure apply function; no ``predict``
loop, no callbacks), with the variables and the query samples on the device before timing.

Precision: the model's weights are fp32; bf16 / fp16 build a second model of the same
architecture under Keras's mixed policy and apply the *same* weight values to it (the
variable lists are identical), so the reference is the fp32 model on the CPU on the same
weights, as for torch.
"""

import hashlib
import os

from ..errors import Unsupported
from .runtime_base import Runtime

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


class KerasJax(Runtime):
    name = "keras-jax"
    layout = "NHWC"  # Keras's channels_last, as the catalogue builds it
    static_batch = True  # jax.jit compiles once per shape

    def __init__(self, settings, precision, artifact, gpus=0, model=None, dataset=None):
        Runtime.__init__(self, settings, precision, artifact, gpus)
        self.model_name = model
        self.dataset = dataset
        self.resident = False

    def _import(self):
        os.environ["KERAS_BACKEND"] = "jax"
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with the agent's NVML
        import jax
        import keras

        if keras.backend.backend() != "jax":
            raise Unsupported("KERAS_BACKEND=jax but keras chose %s" % keras.backend.backend())
        return jax, keras

    def versions(self):
        jax, keras = self._import()
        return {"keras": keras.__version__, "jax": jax.__version__, "jaxlib": _jaxlib_version()}

    def _build(self, keras, policy):
        from .. import keras_models
        from ..catalogue import DATASETS
        from .export import WEIGHTS_SEED

        info = DATASETS[self.dataset]
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(WEIGHTS_SEED)
        try:
            return keras_models.build(keras, self.model_name, info["shape"], info["classes"], "channels_last",
                                      mixed=policy != "float32")
        finally:
            keras.mixed_precision.set_global_policy("float32")

    def load(self, batch_sizes):
        jax, keras = self._import()
        self.jax = jax
        if self.precision not in POLICIES:
            raise Unsupported("keras-jax runs fp32, bf16 or fp16, not %s" % self.precision, field="precision")
        want_gpu = bool(self.gpus) or (self.settings.get("execution_provider") or "").lower().startswith(("cuda",
                                                                                                         "gpu"))
        gpus = [d for d in jax.devices() if d.platform == "gpu"] if want_gpu else []
        if want_gpu and not gpus:
            raise Unsupported("jax %s sees no GPU (devices: %s)" % (jax.__version__, jax.devices()))
        self.device = gpus[0] if gpus else jax.devices("cpu")[0]
        self.ref_model = self._build(keras, "float32")
        model = self.ref_model if self.precision == "fp32" else self._build(keras, POLICIES[self.precision])
        self.weights = ([v.value for v in self.ref_model.trainable_variables],
                        [v.value for v in self.ref_model.non_trainable_variables])
        self._digest, self._size = _digest(self.weights)

        def apply(net):
            def fn(trainable, non_trainable, x):
                return net.stateless_call(trainable, non_trainable, x, training=False)[0]

            return jax.jit(fn)

        self.apply = apply(model)
        self.ref_apply = apply(self.ref_model) if model is not self.ref_model else self.apply
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
        return (numpy.asarray(out, dtype="float32"),
                "keras %s on jax %s, fp32 on the CPU, same weights" % (self._keras_version(), self.jax.__version__))

    def _keras_version(self):
        import keras

        return keras.__version__

    def predict(self, x):
        import numpy

        xs = x if not isinstance(x, numpy.ndarray) else self.jax.device_put(x, self.device)
        out = self.apply(self.on_device[0], self.on_device[1], xs)
        return numpy.asarray(out)  # waits for the device; the copy is the answer LoadGen is given

    def knobs(self):
        return {"device": str(self.device), "apply": "jax.jit(model.stateless_call)",
                "dtype_policy": POLICIES.get(self.precision, ""),
                "samples": "resident on %s before timing" % self.device if self.resident else "host memory"}

    def provider(self):
        return str(self.device.platform)

    def model_info(self):
        return {"format": "keras", "sha256": self._digest, "size_bytes": self._size,
                "precision": "fp32", "source": "runner/keras_models.py %s, seed 0" % self.model_name,
                "quantiser": "", "calibration": ""}

    def devices_used(self):
        if self.device.platform == "gpu":
            return {"framework": "jax", "kind": "gpu", "devices": [str(self.device)],
                    "detail": getattr(self.device, "device_kind", "")}
        return {"framework": "jax", "kind": "cpu", "devices": ["cpu"], "detail": ""}


def _digest(weights):
    import numpy

    h = hashlib.sha256()
    size = 0
    for group in weights:
        for value in group:
            data = numpy.ascontiguousarray(numpy.asarray(value)).tobytes()
            h.update(data)
            size += len(data)
    return h.hexdigest(), size


def _jaxlib_version():
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return ""
