"""Keras 3 on JAX, PyTorch or TensorFlow; the backend is chosen per job through
KERAS_BACKEND in the runner's own environment, never ~/.keras."""

import os

from . import keras_common, keras_input, protocol, user_models
from .backend import Backend
from .errors import Unsupported


def configure_memory(backend, ctx):
    """Map the memory policy onto each backend's own mechanism; return a description.

    Environment variables must be set before the framework is imported.
    """
    policy = ctx.memory_policy
    frac = ctx.memory_fraction
    if backend == "jax":
        if policy == "grow":
            os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
            return "jax: XLA_PYTHON_CLIENT_PREALLOCATE=false (allocate on demand)"
        if policy == "fraction":
            os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
            os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = str(frac)
            return "jax: on demand, capped at XLA_PYTHON_CLIENT_MEM_FRACTION=%s" % frac
        if policy == "preallocate":
            os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "true"
            os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = str(frac)
            return "jax: preallocate XLA_PYTHON_CLIENT_MEM_FRACTION=%s" % frac
        return "jax default: preallocate 75%% of device memory (env %s)" % (
            os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "unset"))
    if backend == "torch":
        return "torch: caching allocator, on demand" + (
            "" if policy == "default" else " (%s %s applied after import)" % (policy, frac))
    if backend == "tensorflow":
        return "tensorflow: %s%s" % (policy, "" if frac is None else " %s" % frac)
    return policy


def apply_memory_after_import(backend, ctx):
    policy = ctx.memory_policy
    frac = ctx.memory_fraction
    if backend == "torch":
        import torch

        if torch.cuda.is_available() and policy in ("fraction", "preallocate"):
            torch.cuda.set_per_process_memory_fraction(float(frac))
            if policy == "preallocate":
                total = torch.cuda.get_device_properties(0).total_memory
                block = torch.empty(int(total * float(frac) * 0.95), dtype=torch.uint8, device="cuda")
                del block  # stays reserved in the caching allocator
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            if policy == "grow":
                tf.config.experimental.set_memory_growth(gpu, True)
            elif policy in ("fraction",) and frac:
                total = tf.config.experimental.get_device_details(gpu).get("memory_limit")
                if total:
                    tf.config.set_logical_device_configuration(
                        gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=int(total * frac / 2**20))])


def compute_dtypes(model):
    """The compute dtypes of the model's layers that hold weights (what its convolutions and matmuls run in)."""
    return sorted(set(str(layer.compute_dtype) for layer in _layers(model) if layer.weights))


def _layers(model):
    for layer in getattr(model, "layers", ()):
        yield layer
        for inner in _layers(layer):  # a nested model's own layers
            yield inner


def check_compute_dtype(model, policy, user_model):
    """The built model computes in the job's precision, or the job fails: a result labelled bf16 that was
    measured in float32 is worse than none. A user's .keras file keeps the policies it was saved with
    (and only fp32 is accepted for it), so only the catalogue's models are checked."""
    if user_model:
        return
    want = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}[policy]
    seen = compute_dtypes(model)
    if seen != [want]:
        raise Unsupported("the model was built to compute in %s, not in %s as precision asks (dtype policy %s)"
                          % (", ".join(seen) or "nothing", want, policy), field="precision")


def one_device_data_parallel():
    """EDGEBENCH_DATA_PARALLEL_ONE=1: a gpus=1 job runs the data-parallel code path on its one device
    (the 1-GPU point of a scaling table measured the way the 2- and 4-GPU points are)."""
    return os.environ.get("EDGEBENCH_DATA_PARALLEL_ONE") == "1"


def make_sync(backend):
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.synchronize
    if backend == "jax":
        import jax

        return jax.effects_barrier
    return None


def library_versions(backend):
    import keras

    versions = {"keras": keras.__version__}
    mod = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}[backend]
    versions[mod] = __import__(mod).__version__
    if backend == "jax":
        import jaxlib

        versions["jaxlib"] = jaxlib.__version__
    try:
        import numpy

        versions["numpy"] = numpy.__version__
    except ImportError:
        pass
    return versions


class Keras3Backend(Backend):
    """Keras 3 on the framework named by ``keras_backend`` (a subclass per backend)."""

    keras_backend = ""
    inputs = ("host", "device")  # device: keras_input.py

    @classmethod
    def probe_problems(cls, versions):
        return [] if versions.get("keras", "3").split(".")[0] == "3" else ["keras>=3"]

    def check(self):
        if self.ctx.gpus > 1 and self.keras_backend not in ("jax", "tensorflow"):
            raise Unsupported("Keras 3 on %s has no multi-device data parallelism; use backend 'torch' "
                              "(DistributedDataParallel) or keras-jax" % self.keras_backend, field="gpus")

    def setup(self):
        ctx = self.ctx
        os.environ["KERAS_BACKEND"] = self.keras_backend
        self.memory_desc = configure_memory(self.keras_backend, ctx)
        import keras

        if keras.backend.backend() != self.keras_backend:
            raise Unsupported("KERAS_BACKEND=%s but keras chose %s" % (self.keras_backend, keras.backend.backend()))
        apply_memory_after_import(self.keras_backend, ctx)
        self.keras = keras
        self.data_format = ctx.data_format or "channels_last"
        keras.config.set_image_data_format(self.data_format)
        self.policy = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[ctx.precision]
        keras.mixed_precision.set_global_policy(self.policy)
        self.jit = "auto" if ctx.compile is None else bool(ctx.compile)
        self.sync = make_sync(self.keras_backend)
        self.distribution = None  # applied again after every clear_session(), which resets it
        self.scope = None  # a distribution strategy's scope (MirroredStrategy)
        self.knobs_dist = {}
        self.model = None

    def versions(self):
        return library_versions(self.keras_backend)

    def timer_sync(self):
        return self.sync

    def device_kind(self):
        # EDGEBENCH_VIRTUAL_CPU_DEVICES=1 lets CI exercise data parallelism on virtual CPU devices
        return "cpu" if os.environ.get("EDGEBENCH_VIRTUAL_CPU_DEVICES") == "1" else "gpu"

    def place(self):
        """Data parallelism with each backend's own mechanism (JAX DataParallel, TF MirroredStrategy)."""
        ctx = self.ctx
        one = ctx.gpus == 1 and one_device_data_parallel() and self.keras_backend in ("jax", "tensorflow")
        if ctx.gpus <= 1 and not one:
            return
        keras, kind, gpus = self.keras, self.device_kind(), ctx.gpus
        if self.keras_backend == "jax":
            devices = keras.distribution.list_devices(kind)[:gpus]
            self.distribution = lambda: keras.distribution.DataParallel(devices=devices)
            self.knobs_dist = {"distribution": "keras.distribution.DataParallel over %d %s devices" % (gpus, kind)}
        else:
            import tensorflow as tf

            names = ["/%s:%d" % (kind, i) for i in range(gpus)]
            self.scope = tf.distribute.MirroredStrategy(devices=names).scope
            self.knobs_dist = {"distribution": "tf.distribute.MirroredStrategy over %s" % ",".join(names)}
        # workload.batch_size is per device; the framework splits the global batch
        ctx.replicas = gpus
        ctx.placement = self.knobs_dist["distribution"]

    def load(self):
        self.x, self.y, self.stream, loaded, self.loader = keras_common.load_data(self.ctx, self.data_format)
        self.resident = None  # (dataset, steps): the device copy, made at the first repeat's fit
        if self.ctx.input != "device":
            self.input_desc = "host: fit slices host arrays and copies each batch"
        elif self.stream is not None:
            self.input_desc = "host pipeline: a streamed dataset (decode and copy overlap compute in its threads)"
        elif self.ctx.infer:
            self.input_desc = "host: predict_on_batch on host arrays (infer mode)"
        else:
            self.input_desc = None  # set when the device copy is made
        return loaded

    def build(self):
        keras = self.keras
        keras.backend.clear_session()
        # clear_session() resets Keras's global state, the dtype policy with it: without this a bf16 job
        # trained in float32 (an H200, Keras-JAX ResNet-50: 3,709 img/s against 6,281 for the same bare fit)
        keras.mixed_precision.set_global_policy(self.policy)
        if self.distribution is not None:
            keras.distribution.set_distribution(self.distribution())
        mixed = self.ctx.precision != "fp32"
        if self.ctx.infer:
            model = keras_common.build_model(keras, self.ctx, self.data_format, mixed)
            if self.jit in (True, False):
                # an uncompiled model never saw the job's compile flag: predict would use Keras's default
                model.jit_compile = self.jit
        else:
            with (self.scope() if self.scope else keras_common.NoScope()):
                model = keras_common.build_model(keras, self.ctx, self.data_format, mixed)
                keras_common.compile_model(keras, model, self.ctx, {"jit_compile": self.jit})
        check_compute_dtype(model, self.policy, user_models.is_user_model(self.ctx.spec))
        self.model = model
        return model

    def train(self, model, timer):
        seq, steps = None, None
        if self.stream is not None:
            seq = keras_common.streaming_fit_sequence(self.keras, self.ctx, self.stream)
        elif self.ctx.input == "device":
            if self.resident is None:
                # after build(): under DataParallel the copy is sharded as the distribution lays out a batch
                data, n, self.input_desc = keras_input.device_dataset(
                    self.keras, self.keras_backend, self.x, self.y, self.ctx.global_batch_size,
                    self.ctx.steps_per_epoch, distributed=self.scope is not None)
                self.resident = (data, n)
            seq, n = self.resident
            steps = None if hasattr(seq, "__getitem__") else n  # an endless tf.data.Dataset
        return keras_common.fit(self.keras, model, timer, self.ctx, self.x, self.y, seq=seq, steps=steps)

    def infer(self, model, timer):
        keras_common.predict(model, timer, self.ctx, self.x)

    def knobs(self):
        knobs = {
            "keras_backend": self.keras_backend,
            "dtype_policy": self.policy,
            "image_data_format": self.data_format,
            "jit_compile": str(self.jit),
            "memory": self.memory_desc,
            "data": self.loader,
            "input": self.input_desc or "",
        }
        knobs.update(self.knobs_dist)
        if self.model is not None:
            knobs["model_compute_dtypes"] = ", ".join(compute_dtypes(self.model))
        if self.model is not None and self.keras_backend == "jax":
            # where the weights actually live: N devices under DataParallel, else 1
            knobs["variable_devices"] = str(_jax_device_count(self.model))
        return knobs

    def close(self):
        if getattr(self, "stream", None) is not None:
            self.stream.close()


class KerasJax(Keras3Backend):
    keras_backend = "jax"
    requirements = (("keras", ("keras",)), ("jax", ("jax",)), ("jaxlib", ("jaxlib",)))

    def accelerators(self):
        import jax

        kind = self.device_kind()
        try:
            found = jax.devices(kind)
        except RuntimeError:  # no such platform in this jaxlib
            found = []
        everything = jax.devices()
        platforms = sorted(set(d.platform for d in everything))
        if kind == "gpu" and not found:
            seen = "JAX %s sees platform %s only (devices: %s)" % (
                jax.__version__, ", ".join(platforms), ", ".join(str(d) for d in everything))
        else:
            seen = "JAX %s sees %d %s device(s): %s" % (jax.__version__, len(found), kind,
                                                         ", ".join(str(d) for d in found) or "none")
        return len(found), seen

    def devices_used(self):
        import jax

        devices = keras_common.variable_devices(self.model) if self.model is not None else []
        platform = jax.default_backend()
        return protocol.devices_used("jax", _kind(platform), devices or [str(d) for d in jax.devices()[:1]],
                                     "JAX %s, default platform %s; weights on %s" % (
                                         jax.__version__, platform, ", ".join(devices) or "unknown"))


class KerasTorch(Keras3Backend):
    keras_backend = "torch"
    requirements = (("keras", ("keras",)), ("torch", ("torch",)))

    def accelerators(self):
        from .torch_placement import torch_accelerators

        return torch_accelerators()

    def devices_used(self):
        import torch

        devices = keras_common.variable_devices(self.model) if self.model is not None else []
        cuda = any(d.startswith("cuda") for d in devices)
        return protocol.devices_used("torch", "gpu" if cuda else "cpu", devices,
                                     "Keras 3 on torch %s; weights on %s" % (torch.__version__,
                                                                             ", ".join(devices) or "unknown"))


class KerasTensorFlow(Keras3Backend):
    keras_backend = "tensorflow"
    requirements = (("keras", ("keras",)), ("tensorflow", ("tensorflow", "tensorflow-cpu", "tensorflow-gpu")))

    def accelerators(self):
        import tensorflow as tf

        kind = self.device_kind().upper()
        found = tf.config.list_logical_devices(kind)
        every = [d.name for d in tf.config.list_logical_devices()]
        return len(found), "TensorFlow %s sees %d logical %s device(s) (all logical devices: %s)" % (
            tf.__version__, len(found), kind, ", ".join(every) or "none")

    def devices_used(self):
        import tensorflow as tf

        devices = keras_common.variable_devices(self.model) if self.model is not None else []
        gpu = any("GPU" in d.upper() for d in devices)
        logical = [d.name for d in tf.config.list_logical_devices()]
        return protocol.devices_used("tensorflow", "gpu" if gpu else "cpu", devices,
                                     "TensorFlow %s logical devices: %s; weights on %s" % (
                                         tf.__version__, ", ".join(logical), ", ".join(devices) or "unknown"))


def _kind(platform):
    if platform == "cpu":
        return "cpu"
    if platform in ("gpu", "cuda", "rocm"):
        return "gpu"
    return "other"


def _jax_device_count(model):
    try:
        return len(model.trainable_variables[0].value.sharding.device_set)
    except (AttributeError, IndexError):
        return 0
