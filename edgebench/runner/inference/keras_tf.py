"""Keras 3 on TensorFlow under LoadGen: the catalogue's Keras model answered by one ``tf.function`` of its
call (traced once per batch shape during the warm-up; XLA when the job's ``compile_mode`` asks for it),
weights and query samples on the device before timing. What the Keras adapters share is keras_runtime.py.
"""

from ..errors import Unsupported
from .keras_runtime import KerasRuntime


class KerasTensorFlow(KerasRuntime):
    name = "keras-tensorflow"
    keras_backend = "tensorflow"
    framework = "tensorflow"
    static_batch = True  # a new batch shape retraces the tf.function: Offline's last batch is padded

    def framework_version(self):
        import tensorflow as tf

        return tf.__version__

    def load(self, batch_sizes):
        keras = self._import()
        import tensorflow as tf

        self.tf = tf
        self.check_precision()
        if self.settings.get("threads"):  # before TensorFlow's runtime starts (listing devices starts it)
            tf.config.threading.set_intra_op_parallelism_threads(int(self.settings["threads"]))
        gpus = tf.config.list_logical_devices("GPU")
        if self.want_gpu() and not gpus:
            raise Unsupported("TensorFlow %s sees no GPU (logical devices: %s)" % (
                tf.__version__, ", ".join(d.name for d in tf.config.list_logical_devices()) or "none"))
        self.device = gpus[0].name if self.want_gpu() else "/CPU:0"
        self.ref_model, self.model = self.build_pair(keras, self.device)
        # any compile_mode asks for XLA (jit_compile=True); none: TensorFlow's graph executor
        self.jit = bool(self.settings.get("compile_mode"))
        model, ref = self.model, self.ref_model
        self.fn = tf.function(lambda x: model(x, training=False), jit_compile=self.jit)
        self.ref_fn = tf.function(lambda x: ref(x, training=False))

    def stage(self, samples):
        if "GPU" not in self.device.upper():
            return samples
        self.resident = True
        with self.tf.device(self.device):
            return self.tf.identity(self.tf.constant(samples))

    def _call(self, fn, x, device):
        tf = self.tf
        with tf.device(device):
            return fn(x).numpy().astype("float32", copy=False)  # .numpy() waits for the device

    def reference(self, inputs):
        return self._call(self.ref_fn, inputs, "/CPU:0"), self.reference_description()

    def predict(self, x):
        return self._call(self.fn, x, self.device)

    def knobs(self):
        knobs = self.common_knobs()
        knobs.update({"device": self.device, "apply": "tf.function(model.call, jit_compile=%s)" % self.jit,
                      "intra_op_threads": str(self.tf.config.threading.get_intra_op_parallelism_threads()
                                              or "default (TensorFlow's choice)"),
                      "samples": "resident on %s before timing" % self.device if self.resident else "host memory"})
        return knobs

    def provider(self):
        return "gpu" if "GPU" in self.device.upper() else "cpu"

    def devices_used(self):
        from ..keras_common import variable_devices

        devices = variable_devices(self.model)
        gpu = any("GPU" in d.upper() for d in devices)
        return {"framework": "tensorflow", "kind": "gpu" if gpu else "cpu", "devices": devices or [self.device],
                "detail": "Keras 3 on TensorFlow %s; weights on %s" % (self.tf.__version__,
                                                                       ", ".join(devices) or "unknown")}
