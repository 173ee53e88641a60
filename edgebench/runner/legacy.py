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

from . import keras_common, legacy_compat
from .datasets import is_streamed, load
from .errors import Unsupported


class _Stack(object):
    """What differs between the two Keras 2.2.4 backends."""

    name = ""
    keras_backend = ""
    default_data_format = "channels_last"

    def __init__(self, spec):
        self.spec = spec
        self.keras = None

    def check(self):
        """Reject what this stack cannot do, naming the job field."""
        precision = self.spec.get("precision", "fp32")
        if precision != "fp32":
            raise Unsupported(
                "precision: %r is not supported on %s (Keras 2.2.4 has no mixed precision; "
                "only fp32)" % (precision, self.name))

    def before_import(self):
        """Environment the framework reads at import; returns the memory description."""
        return ""

    def after_import(self, keras):
        self.keras = keras

    def new_session(self):
        """Called after each keras.backend.clear_session()."""

    def sync(self):
        """Block until the device has finished queued work (RunTimer's sync)."""

    def compile_kwargs(self):
        return {}

    def wrap_model(self, model):
        return model

    def versions(self):
        raise NotImplementedError

    def knobs(self):
        return {}


class MXNetStack(_Stack):
    name = "keras-mxnet"
    keras_backend = "mxnet"
    # the keras-mxnet README: channels_first is much faster on MXNet
    default_data_format = "channels_first"

    def check(self):
        _Stack.check(self)
        if self.spec.get("memory_policy", "default") == "preallocate":
            raise Unsupported("memory_policy: MXNet allocates on demand from its memory pool; "
                              "'preallocate' has no equivalent")
        if self.spec.get("compile") is False:
            raise Unsupported("compile: keras-mxnet always runs a static MXNet symbol graph; "
                              "compile=false has no eager equivalent")

    def before_import(self):
        policy = self.spec.get("memory_policy", "default")
        if policy == "fraction":
            # MXNET_GPU_MEM_POOL_RESERVE: percent of GPU memory the pool leaves alone
            reserve = round((1.0 - float(self.spec["memory_fraction"])) * 100)
            os.environ["MXNET_GPU_MEM_POOL_RESERVE"] = str(max(0, min(100, reserve)))
            return "mxnet: on demand (pooled), pool capped by MXNET_GPU_MEM_POOL_RESERVE=%s%%" % (
                os.environ["MXNET_GPU_MEM_POOL_RESERVE"])
        return "mxnet: allocates on demand (pooled storage manager, no up-front grab)"

    def after_import(self, keras):
        _Stack.after_import(self, keras)
        import mxnet as mx

        self.mx = mx
        gpus = int(self.spec.get("gpus", 0) or 0)
        if gpus:
            available = _mxnet_gpu_count(mx)
            if gpus > available:
                raise Unsupported("gpus: job asks for %d GPU(s), MXNet sees %d" % (gpus, available))
            self.context = ["gpu(%d)" % i for i in range(gpus)]
        else:
            # keras-mxnet's own default: gpu(0) if one is visible, else the CPU
            self.context = None

    def sync(self):
        self.mx.nd.waitall()

    def compile_kwargs(self):
        return {} if self.context is None else {"context": self.context}

    def versions(self):
        return {"keras-mxnet": _dist_version("keras-mxnet") or self.keras.__version__,
                "mxnet": self.mx.__version__}

    def knobs(self):
        return {
            "context": ",".join(self.context) if self.context else "keras-mxnet default "
            "(gpu(0) if visible, else cpu)",
            "graph": "static MXNet symbol (Module API)",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset (MXNet: all cores)"),
        }


class TensorFlow1Stack(_Stack):
    name = "keras-tensorflow1"
    keras_backend = "tensorflow"
    default_data_format = "channels_last"

    def before_import(self):
        if self.spec.get("compile"):
            # TF 1.x's session-level JIT leaves CPU ops alone unless this flag is set
            flags = os.environ.get("TF_XLA_FLAGS", "")
            if "--tf_xla_cpu_global_jit" not in flags:
                os.environ["TF_XLA_FLAGS"] = (flags + " --tf_xla_cpu_global_jit").strip()
        policy = self.spec.get("memory_policy", "default")
        frac = self.spec.get("memory_fraction")
        if policy == "grow":
            return "tf1: gpu_options.allow_growth=True (on demand)"
        if policy == "fraction":
            return "tf1: per_process_gpu_memory_fraction=%s with allow_growth (cap, on demand)" % frac
        if policy == "preallocate":
            return "tf1: per_process_gpu_memory_fraction=%s, allocated at session start" % frac
        return "tf1 default: grabs nearly all GPU memory at session start"

    def after_import(self, keras):
        _Stack.after_import(self, keras)
        import tensorflow as tf

        self.tf = tf
        gpus = int(self.spec.get("gpus", 0) or 0)
        if gpus:
            from tensorflow.python.client import device_lib

            available = len([d for d in device_lib.list_local_devices() if d.device_type == "GPU"])
            if gpus > available:
                raise Unsupported("gpus: job asks for %d GPU(s), TensorFlow sees %d" % (gpus, available))
        self.gpus = gpus
        self.new_session()

    def session_config(self):
        """The tf.ConfigProto of every Keras session of this job."""
        tf = self.tf
        config = tf.ConfigProto()
        policy = self.spec.get("memory_policy", "default")
        frac = self.spec.get("memory_fraction")
        if policy == "grow":
            config.gpu_options.allow_growth = True
        elif policy in ("fraction", "preallocate"):
            config.gpu_options.per_process_gpu_memory_fraction = float(frac)
            config.gpu_options.allow_growth = policy == "fraction"
        if self.spec.get("compile"):
            config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
        return config

    def new_session(self):
        # clear_session() drops the session, and Keras would make the next one
        # with TensorFlow's default config: set ours again every time.
        self.keras.backend.set_session(self.tf.Session(config=self.session_config()))

    def wrap_model(self, model):
        if self.gpus > 1:
            return self.keras.utils.multi_gpu_model(model, gpus=self.gpus)
        return model

    def versions(self):
        return {"keras": self.keras.__version__, "tensorflow": self.tf.__version__}

    def knobs(self):
        config = self.session_config()
        return {
            "allow_growth": str(config.gpu_options.allow_growth),
            "per_process_gpu_memory_fraction": str(
                config.gpu_options.per_process_gpu_memory_fraction or "unset (TF default)"),
            "xla_jit": "global_jit_level ON_1, TF_XLA_FLAGS=%s" % os.environ.get("TF_XLA_FLAGS", "")
            if self.spec.get("compile") else "off",
            "multi_gpu_model": str(self.gpus > 1),
            "intra_op_threads": str(config.intra_op_parallelism_threads or "0 (all cores)"),
        }


STACKS = {MXNetStack.name: MXNetStack, TensorFlow1Stack.name: TensorFlow1Stack}


def run(spec, emitter, dataset_root):
    try:
        stack = STACKS[spec["backend"]](spec)
    except KeyError:
        raise Unsupported("backend: %r is not a Keras 2.2.4 stack" % spec["backend"]) from None
    stack.check()
    data_format = spec.get("data_format") or stack.default_data_format
    memory_desc = stack.before_import()
    shims = legacy_compat.apply_shims()
    with legacy_compat.PrivateKerasHome(stack.keras_backend, data_format) as home:
        keras = legacy_compat.import_keras_quietly()
        _check_config(keras, stack.keras_backend, data_format)
        stack.after_import(keras)
        emitter.emit("hello", backend=spec["backend"], libraries=_versions(stack), pid=os.getpid(),
                     python=platform.python_version(), shims=shims, keras_home=home.path)
        _train_or_infer(spec, emitter, dataset_root, keras, stack, data_format, memory_desc, shims)


def _load_data(spec, dataset_root, data_format, infer):
    """(x, y, stream, source, samples, loader description): arrays in memory, or a
    stream of decoded batches for the streamed datasets (ImageNet folders)."""
    import numpy as np

    wl = spec["workload"]
    if is_streamed(wl["dataset"], wl.get("synthetic", False)):
        from . import imagenet

        stream = imagenet.ImageFolderStream(dataset_root, wl["batch_size"], samples=wl.get("samples"),
                                            channels_first=data_format == "channels_first")
        samples, loader = len(stream), stream.describe()
        if infer:
            x, y = imagenet.infer_arrays(stream, wl.get("samples"))
            return x, y, None, "real", samples, loader
        return None, None, stream, "real", samples, loader
    x, y, source = load(wl["dataset"], dataset_root, wl.get("synthetic", False), wl.get("samples"))
    x, y = keras_common.prepare_arrays(np, x, y, wl["batch_size"], data_format)
    return x, y, None, source, len(x), "in memory (numpy)"


def _train_or_infer(spec, emitter, dataset_root, keras, stack, data_format, memory_desc, shims):
    gpus = int(spec.get("gpus", 0) or 0)
    per_device_bs = spec["workload"]["batch_size"]
    if gpus > 1:
        # workload.batch_size is per device (as for every backend); multi_gpu_model
        # and MXNet's context list split the global batch that fit() is given
        spec = dict(spec, workload=dict(spec["workload"], batch_size=per_device_bs * gpus))
    wl = spec["workload"]
    infer = spec.get("mode", "train") == "infer"
    x, y, stream, source, samples, loader = _load_data(spec, dataset_root, data_format, infer)
    emitter.emit("data", source=source, samples=samples)
    spec["_build"] = lambda: stack.wrap_model(keras_common.build_model(keras, spec, data_format, False))
    knobs = {
        "keras_backend": stack.keras_backend,
        "dtype_policy": "float32",
        "image_data_format": data_format,
        "memory": memory_desc,
        "shims": ",".join(shims) or "none",
        "data": loader,
    }
    knobs.update(stack.knobs())
    runs = []
    try:
        for repeat in range(1, spec.get("repeats", 1) + 1):
            keras.backend.clear_session()
            stack.new_session()
            if infer:
                timer = keras_common.infer_repeat(keras, spec, emitter, repeat, x, stack.sync)
                runs.append(timer.run_record("infer", knobs=knobs))
                continue
            seq = None
            if stream is not None:
                steps = wl.get("steps_per_epoch") or max(1, len(stream) // wl["batch_size"])
                seq = keras_common.streaming_sequence(keras, stream, steps)
            # Keras 2.2.4's fit() takes arrays only: a Sequence goes through fit_generator
            timer, loss, acc = keras_common.train_repeat(
                keras, spec, emitter, repeat, x, y, stack.sync, stack.compile_kwargs(),
                use_fit_generator=True, seq=seq)
            runs.append(timer.run_record("train", loss, acc, knobs))
    finally:
        if stream is not None:
            stream.close()
    emitter.emit("result", runs=runs, knobs=knobs, data_source=source,
                 global_batch_size=wl["batch_size"], per_device_batch_size=per_device_bs)


def _check_config(keras, backend, data_format):
    K = keras.backend
    if K.backend() != backend or K.image_data_format() != data_format:
        raise Unsupported("keras chose backend %s / %s, the job asked for %s / %s" % (
            K.backend(), K.image_data_format(), backend, data_format))


def _versions(stack):
    versions = stack.versions()
    import numpy

    versions["numpy"] = numpy.__version__
    for dist in ("scipy", "h5py", "keras-applications"):
        v = _dist_version(dist)
        if v:
            versions[dist] = v
    versions["python"] = platform.python_version()
    return versions


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
    try:
        return mx.context.num_gpus()
    except Exception:  # CPU builds raise instead of returning 0
        return 0
