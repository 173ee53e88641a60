"""The 2019 study's stacks: Keras 2.2.4 on MXNet (keras-mxnet) or TensorFlow 1.

Runs on Python 3.6 with only the framework and numpy installed, and on
Python 3.11 for keras-mxnet 2.2.4.3 + MXNet 1.9.1 (the interpreter the agent
starts the runner with picks the route; legacy_compat supplies the shims).

The Keras configuration is per job, in a private KERAS_HOME (never
~/.keras, which the 2019 study sed-edited to switch backends). Training,
timing and models are shared with Keras 3 (keras_common, keras_models).
"""

import os
import platform

from . import keras_common, legacy_compat, protocol
from .backend import Backend
from .errors import Unsupported


class _Keras224(Backend):
    """What both Keras 2.2.4 stacks share; subclasses hold what differs."""

    keras_backend = ""
    default_data_format = "channels_last"

    @classmethod
    def probe_problems(cls, versions):
        return [] if versions.get("keras", "2").split(".")[0] == "2" else ["keras 2.2.4"]

    def __init__(self, ctx):
        Backend.__init__(self, ctx)
        self.keras = None
        self.home = None
        self.stream = None

    def check(self):
        """Reject what this stack cannot do, naming the job field."""
        if self.ctx.precision != "fp32":
            raise Unsupported("%r is not supported on %s (Keras 2.2.4 has no mixed precision; only fp32)"
                              % (self.ctx.precision, self.ctx.backend), field="precision")

    def before_import(self):
        """Environment the framework reads at import; returns the memory description."""
        return ""

    def after_import(self):
        """The framework is imported (self.keras is set)."""

    def new_session(self):
        """Called after each keras.backend.clear_session()."""

    def compile_kwargs(self):
        return {}

    def wrap_model(self, model):
        return model

    def stack_versions(self):
        raise NotImplementedError

    def stack_knobs(self):
        return {}

    def setup(self):
        self.data_format = self.ctx.data_format or self.default_data_format
        self.memory_desc = self.before_import()
        self.shims = legacy_compat.apply_shims()
        self.home = legacy_compat.PrivateKerasHome(self.keras_backend, self.data_format)
        self.keras_home = self.home.__enter__().path
        self.keras = legacy_compat.import_keras_quietly()
        _check_config(self.keras, self.keras_backend, self.data_format)
        self.after_import()

    def versions(self):
        versions = self.stack_versions()
        import numpy

        versions["numpy"] = numpy.__version__
        for dist in ("scipy", "h5py", "keras-applications"):
            v = _dist_version(dist)
            if v:
                versions[dist] = v
        versions["python"] = platform.python_version()
        return versions

    def place(self):
        if self.ctx.gpus > 1:
            # workload.batch_size is per device (as for every backend); multi_gpu_model
            # and MXNet's context list split the global batch that fit() is given
            self.ctx.replicas = self.ctx.gpus

    def load(self):
        self.x, self.y, self.stream, loaded, self.loader = keras_common.load_data(self.ctx, self.data_format)
        return loaded

    def build(self):
        keras = self.keras
        keras.backend.clear_session()
        self.new_session()
        model = self.wrap_model(keras_common.build_model(keras, self.ctx, self.data_format, False))
        if not self.ctx.infer:
            keras_common.compile_model(keras, model, self.ctx, self.compile_kwargs())
        return model

    def train(self, model, timer):
        seq = None
        if self.stream is not None:
            seq = keras_common.streaming_fit_sequence(self.keras, self.ctx, self.stream)
        # Keras 2.2.4's fit() takes arrays only: a Sequence goes through fit_generator
        return keras_common.fit(self.keras, model, timer, self.ctx, self.x, self.y, use_fit_generator=True,
                                seq=seq)

    def infer(self, model, timer):
        keras_common.predict(model, timer, self.ctx, self.x)

    def knobs(self):
        knobs = {
            "keras_backend": self.keras_backend,
            "dtype_policy": "float32",
            "image_data_format": self.data_format,
            "memory": self.memory_desc,
            "shims": ",".join(self.shims) or "none",
            "data": self.loader,
        }
        knobs.update(self.stack_knobs())
        return knobs

    def close(self):
        if self.stream is not None:
            self.stream.close()
        if self.home is not None:
            self.home.__exit__(None, None, None)
            self.home = None


class MXNetBackend(_Keras224):
    keras_backend = "mxnet"
    # the keras-mxnet README: channels_first is much faster on MXNet
    default_data_format = "channels_first"
    requirements = (("keras", ("keras-mxnet",)), ("mxnet", ("mxnet", "mxnet-cu100", "mxnet-mkl")))

    def check(self):
        _Keras224.check(self)
        if self.ctx.memory_policy == "preallocate":
            raise Unsupported("MXNet allocates on demand from its memory pool; 'preallocate' has no equivalent",
                              field="memory_policy")
        if self.ctx.compile is False:
            raise Unsupported("keras-mxnet always runs a static MXNet symbol graph; compile=false has no eager "
                              "equivalent", field="compile")

    def before_import(self):
        if self.ctx.memory_policy == "fraction":
            # MXNET_GPU_MEM_POOL_RESERVE: percent of GPU memory the pool leaves alone
            reserve = round((1.0 - float(self.ctx.memory_fraction)) * 100)
            os.environ["MXNET_GPU_MEM_POOL_RESERVE"] = str(max(0, min(100, reserve)))
            return "mxnet: on demand (pooled), pool capped by MXNET_GPU_MEM_POOL_RESERVE=%s%%" % (
                os.environ["MXNET_GPU_MEM_POOL_RESERVE"])
        return "mxnet: allocates on demand (pooled storage manager, no up-front grab)"

    def after_import(self):
        import mxnet as mx

        self.mx = mx
        gpus = self.ctx.gpus
        # None: keras-mxnet's own default, gpu(0) if one is visible, else the CPU
        self.context = ["gpu(%d)" % i for i in range(gpus)] if gpus else None

    def accelerators(self):
        count, note = _mxnet_gpu_count(self.mx)
        return count, "MXNet %s sees %d GPU(s) (%s)" % (self.mx.__version__, count, note)

    def timer_sync(self):
        return self.mx.nd.waitall

    def compile_kwargs(self):
        return {} if self.context is None else {"context": self.context}

    def stack_versions(self):
        return {"keras-mxnet": _dist_version("keras-mxnet") or self.keras.__version__,
                "mxnet": self.mx.__version__}

    def stack_knobs(self):
        return {
            "context": ",".join(self.context) if self.context else "keras-mxnet default "
            "(gpu(0) if visible, else cpu)",
            "graph": "static MXNet symbol (Module API)",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset (MXNet: all cores)"),
        }

    def devices_used(self):
        if self.context:
            context, how = self.context, "the job's context list"
        else:
            count, note = _mxnet_gpu_count(self.mx)
            context = ["gpu(0)"] if count else ["cpu(0)"]
            how = "keras-mxnet's default context (%s)" % note
        kind = "gpu" if context[0].startswith("gpu") else "cpu"
        return protocol.devices_used("mxnet", kind, context, "MXNet %s, %s" % (self.mx.__version__, how))


class TensorFlow1Backend(_Keras224):
    keras_backend = "tensorflow"
    default_data_format = "channels_last"
    requirements = (("keras", ("keras",)), ("tensorflow", ("tensorflow-gpu", "tensorflow")))

    @classmethod
    def probe_problems(cls, versions):
        problems = _Keras224.probe_problems(versions)
        if versions.get("tensorflow", "1").split(".")[0] != "1":
            problems.append("tensorflow 1.x")
        return problems

    def before_import(self):
        if self.ctx.compile:
            # TF 1.x's session-level JIT leaves CPU ops alone unless this flag is set
            flags = os.environ.get("TF_XLA_FLAGS", "")
            if "--tf_xla_cpu_global_jit" not in flags:
                os.environ["TF_XLA_FLAGS"] = (flags + " --tf_xla_cpu_global_jit").strip()
        policy = self.ctx.memory_policy
        frac = self.ctx.memory_fraction
        if policy == "grow":
            return "tf1: gpu_options.allow_growth=True (on demand)"
        if policy == "fraction":
            return "tf1: per_process_gpu_memory_fraction=%s with allow_growth (cap, on demand)" % frac
        if policy == "preallocate":
            return "tf1: per_process_gpu_memory_fraction=%s, allocated at session start" % frac
        return "tf1 default: grabs nearly all GPU memory at session start"

    def after_import(self):
        import tensorflow as tf

        self.tf = tf
        self.new_session()

    def session_devices(self):
        """The devices of this job's Keras session (made with the job's memory settings)."""
        return self.keras.backend.get_session().list_devices()

    def accelerators(self):
        devices = self.session_devices()
        gpus = [d.name for d in devices if d.device_type == "GPU"]
        return len(gpus), "TensorFlow %s sees %d GPU(s) (session devices: %s)" % (
            self.tf.__version__, len(gpus), ", ".join(d.name for d in devices))

    def session_config(self):
        """The tf.ConfigProto of every Keras session of this job."""
        tf = self.tf
        config = tf.ConfigProto()
        policy = self.ctx.memory_policy
        frac = self.ctx.memory_fraction
        if policy == "grow":
            config.gpu_options.allow_growth = True
        elif policy in ("fraction", "preallocate"):
            config.gpu_options.per_process_gpu_memory_fraction = float(frac)
            config.gpu_options.allow_growth = policy == "fraction"
        if self.ctx.compile:
            config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
        return config

    def new_session(self):
        # clear_session() drops the session, and Keras would make the next one
        # with TensorFlow's default config: set ours again every time.
        self.keras.backend.set_session(self.tf.Session(config=self.session_config()))

    def wrap_model(self, model):
        if self.ctx.gpus > 1:
            return self.keras.utils.multi_gpu_model(model, gpus=self.ctx.gpus)
        return model

    def stack_versions(self):
        return {"keras": self.keras.__version__, "tensorflow": self.tf.__version__}

    def stack_knobs(self):
        config = self.session_config()
        return {
            "allow_growth": str(config.gpu_options.allow_growth),
            "per_process_gpu_memory_fraction": str(
                config.gpu_options.per_process_gpu_memory_fraction or "unset (TF default)"),
            "xla_jit": "global_jit_level ON_1, TF_XLA_FLAGS=%s" % os.environ.get("TF_XLA_FLAGS", "")
            if self.ctx.compile else "off",
            "multi_gpu_model": str(self.ctx.gpus > 1),
            "intra_op_threads": str(config.intra_op_parallelism_threads or "0 (all cores)"),
        }

    def devices_used(self):
        devices = self.session_devices()
        gpus = [d.name for d in devices if d.device_type == "GPU"]
        if gpus:
            # TF places ops on the first GPU it sees; multi_gpu_model spreads over the first N
            used, kind = gpus[:max(1, self.ctx.gpus)], "gpu"
        else:
            used, kind = [d.name for d in devices if d.device_type == "CPU"][:1], "cpu"
        return protocol.devices_used("tensorflow", kind, used, "TensorFlow %s session devices: %s" % (
            self.tf.__version__, ", ".join(d.name for d in devices)))


def _check_config(keras, backend, data_format):
    K = keras.backend
    if K.backend() != backend or K.image_data_format() != data_format:
        raise Unsupported("keras chose backend %s / %s, the job asked for %s / %s" % (
            K.backend(), K.image_data_format(), backend, data_format))


def _dist_version(dist):
    """Installed distribution version, or None (importlib.metadata is 3.8+)."""
    try:
        from importlib import metadata

        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None
    except ImportError:
        pass
    try:
        import pkg_resources

        return pkg_resources.get_distribution(dist).version
    except Exception:  # absent or broken metadata
        return None


def _mxnet_gpu_count(mx):
    """(GPUs MXNet sees, how it said so)."""
    try:
        return int(mx.context.num_gpus()), "mx.context.num_gpus()"
    except Exception as exc:  # noqa: BLE001 - CPU builds raise instead of returning 0
        return 0, "mx.context.num_gpus() raised %s: %s" % (type(exc).__name__, (str(exc).splitlines() or [""])[0][:200])
