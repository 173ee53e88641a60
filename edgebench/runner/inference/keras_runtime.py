"""What the Keras 3 adapters share (keras_jax.py, keras_torch.py, keras_tf.py): the catalogue's Keras
model (runner/keras_models.py, seed 0) built on the job's Keras backend, the precision as Keras's mixed
policy on the *same* weight values, the weights' digest, and the reference: the fp32 model on the CPU.

Each backend's file says only how its framework answers a batch fastest (a jitted ``stateless_call``,
a call under ``torch.no_grad``, a ``tf.function``) and where the weights and samples live.
"""

import hashlib
import os

from ..errors import Unsupported
from ..keras3 import check_compute_dtype, compute_dtypes
from .runtime_base import Runtime

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


class KerasRuntime(Runtime):
    name = "keras"
    keras_backend = ""  # KERAS_BACKEND: jax, torch, tensorflow
    framework = ""  # the framework's distribution name in versions()
    layout = "NHWC"  # Keras's channels_last, as the catalogue builds it

    def __init__(self, settings, precision, artifact, gpus=0, model=None, dataset=None):
        Runtime.__init__(self, settings, precision, artifact, gpus)
        self.model_name = model
        self.dataset = dataset
        self.resident = False

    def _import(self):
        os.environ["KERAS_BACKEND"] = self.keras_backend
        import keras

        if keras.backend.backend() != self.keras_backend:
            raise Unsupported("KERAS_BACKEND=%s but keras chose %s (keras was imported before)"
                              % (self.keras_backend, keras.backend.backend()))
        return keras

    def framework_version(self):
        raise NotImplementedError

    def versions(self):
        keras = self._import()
        return {"keras": keras.__version__, self.framework: self.framework_version()}

    def want_gpu(self):
        """A GPU job (gpus >= 1, or an execution provider naming cuda/gpu)."""
        ep = (self.settings.get("execution_provider") or "").lower()
        return bool(self.gpus) or ep.startswith(("cuda", "gpu"))

    def check_precision(self):
        if self.precision not in POLICIES:
            raise Unsupported("%s runs fp32, bf16 or fp16, not %s" % (self.name, self.precision), field="precision")

    def build(self, keras, policy):
        """The catalogue model under ``policy`` (Keras's global dtype policy, restored after)."""
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

    def build_pair(self, keras, device):
        """(reference model: fp32 on the CPU, the model that answers: the job's precision on ``device``,
        holding the reference's weight values). One model when they coincide (fp32 on the CPU).

        A user's .keras file (``self.artifact``, verified by its digest) is loaded in safe mode instead, on
        each device, and runs fp32 only (its own dtype policies are what it was saved with)."""
        if self.artifact is not None:
            return self._load_pair(keras, device)
        with keras.device("cpu"):
            ref = self.build(keras, "float32")
        self.weights_digest(ref.get_weights())
        if self.precision == "fp32" and device == "cpu":
            return ref, ref
        with keras.device(device):
            model = self.build(keras, POLICIES[self.precision])
            model.set_weights(ref.get_weights())
        check_compute_dtype(model, POLICIES[self.precision], False)
        return ref, model

    def _load_pair(self, keras, device):
        from .. import user_models

        if self.precision != "fp32":
            raise Unsupported("a user's .keras model runs fp32 (its layers keep the dtype policies it was saved "
                              "with), not %s" % self.precision, field="precision")
        with keras.device("cpu"):
            ref = user_models.load_keras(keras, self.artifact.path)
        if device == "cpu":
            return ref, ref
        with keras.device(device):
            model = user_models.load_keras(keras, self.artifact.path)
        return ref, model

    def weights_digest(self, arrays):
        import numpy

        h = hashlib.sha256()
        size = 0
        for value in arrays:
            data = numpy.ascontiguousarray(numpy.asarray(value)).tobytes()
            h.update(data)
            size += len(data)
        self._digest, self._size = h.hexdigest(), size

    def reference_description(self):
        import keras

        what = "the user's model" if self.artifact is not None else "same weights"
        return "keras %s on %s %s, fp32 on the CPU, %s" % (keras.__version__, self.keras_backend,
                                                           self.framework_version(), what)

    def model_info(self):
        if self.artifact is not None:
            return self.artifact.info()  # the user's file: its own digest
        return {"format": "keras", "sha256": self._digest, "size_bytes": self._size,
                "precision": "fp32", "source": "runner/keras_models.py %s, seed 0" % self.model_name,
                "quantiser": "", "calibration": ""}

    def common_knobs(self):
        model = getattr(self, "model", None)
        knobs = {"dtype_policy": POLICIES.get(self.precision, "")}
        if model is not None:
            knobs["model_compute_dtypes"] = ", ".join(compute_dtypes(model))
        return knobs
