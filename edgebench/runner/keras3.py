"""Keras 3 on JAX, PyTorch or TensorFlow; the backend is chosen per job through
KERAS_BACKEND in the runner's own environment, never ~/.keras."""

import os

from . import keras_common
from .datasets import is_streamed, load
from .errors import Unsupported


def configure_memory(backend, spec):
    """Map the memory policy onto each backend's own mechanism; return a description.

    Environment variables must be set before the framework is imported.
    """
    policy = spec.get("memory_policy", "default")
    frac = spec.get("memory_fraction")
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


def apply_memory_after_import(backend, spec):
    policy = spec.get("memory_policy", "default")
    frac = spec.get("memory_fraction")
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


def setup_data_parallel(keras, backend, gpus, spec):
    """Data parallelism with each backend's own mechanism; returns knobs to record.

    EDGEBENCH_VIRTUAL_CPU_DEVICES=1 lets CI exercise the path on virtual CPU
    devices (JAX: XLA_FLAGS=--xla_force_host_platform_device_count=N).
    """
    kind = "cpu" if os.environ.get("EDGEBENCH_VIRTUAL_CPU_DEVICES") == "1" else "gpu"
    if backend == "jax":
        devices = keras.distribution.list_devices(kind)
        if len(devices) < gpus:
            raise Unsupported("gpus=%d but JAX sees %d %s devices" % (gpus, len(devices), kind))
        spec["_apply_distribution"] = lambda: keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices[:gpus]))
        return {"distribution": "keras.distribution.DataParallel over %d %s devices" % (gpus, kind)}
    if backend == "tensorflow":
        import tensorflow as tf

        names = ["/%s:%d" % (kind, i) for i in range(gpus)]
        strategy = tf.distribute.MirroredStrategy(devices=names)
        spec["_scope"] = strategy.scope
        return {"distribution": "tf.distribute.MirroredStrategy over %s" % ",".join(names)}
    raise Unsupported(
        "gpus: Keras 3 on %s has no multi-device data parallelism; use backend 'torch' "
        "(DistributedDataParallel) or keras-jax" % backend)


def _jax_device_count(model):
    try:
        return len(model.trainable_variables[0].value.sharding.device_set)
    except (AttributeError, IndexError):
        return 0


def run(spec, emitter, dataset_root):
    backend = spec["backend"].split("-", 1)[1]
    os.environ["KERAS_BACKEND"] = backend
    memory_desc = configure_memory(backend, spec)
    import keras
    import numpy as np

    if keras.backend.backend() != backend:
        raise Unsupported("KERAS_BACKEND=%s but keras chose %s" % (backend, keras.backend.backend()))
    apply_memory_after_import(backend, spec)
    emitter.emit("hello", backend=spec["backend"], libraries=library_versions(backend), pid=os.getpid())

    wl = spec["workload"]
    data_format = spec.get("data_format") or "channels_last"
    keras.config.set_image_data_format(data_format)
    precision = spec.get("precision", "fp32")
    policy = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[precision]
    keras.mixed_precision.set_global_policy(policy)
    compile_flag = spec.get("compile")
    jit = "auto" if compile_flag is None else bool(compile_flag)

    gpus = int(spec.get("gpus") or 0)
    per_device_bs = wl["batch_size"]
    devices = max(1, gpus)
    if devices > 1:
        # applied again after every clear_session(), which resets Keras's global distribution
        knobs_dist = setup_data_parallel(keras, backend, gpus, spec)
        # workload.batch_size is per device; the framework splits the global batch
        wl = dict(wl, batch_size=per_device_bs * devices)
        spec = dict(spec, workload=wl)
    else:
        knobs_dist = {}

    infer = spec.get("mode", "train") == "infer"
    stream = None
    if is_streamed(wl["dataset"], wl.get("synthetic", False)):
        from . import imagenet

        stream = imagenet.ImageFolderStream(dataset_root, wl["batch_size"], samples=wl.get("samples"),
                                            channels_first=data_format == "channels_first")
        source, samples, loader = "real", len(stream), stream.describe()
        x = y = None
        if infer:
            x, y = imagenet.infer_arrays(stream, wl.get("samples"))
            stream = None
    else:
        x, y, source = load(wl["dataset"], dataset_root, wl.get("synthetic", False), wl.get("samples"))
        x, y = keras_common.prepare_arrays(np, x, y, wl["batch_size"], data_format)
        samples, loader = len(x), "in memory (numpy)"
    emitter.emit("data", source=source, samples=int(samples))
    sync = make_sync(backend)
    built = []

    def build():
        model = keras_common.build_model(keras, spec, data_format, precision != "fp32")
        built.append(model)
        return model

    spec["_build"] = build
    knobs = {
        "keras_backend": backend,
        "dtype_policy": policy,
        "image_data_format": data_format,
        "jit_compile": str(jit),
        "memory": memory_desc,
        "data": loader,
    }
    knobs.update(knobs_dist)
    runs = []
    try:
        for repeat in range(1, spec.get("repeats", 1) + 1):
            keras.backend.clear_session()
            if spec.get("_apply_distribution"):
                spec["_apply_distribution"]()
            if infer:
                timer = keras_common.infer_repeat(keras, spec, emitter, repeat, x, sync, jit_compile=jit)
                runs.append(timer.run_record("infer", knobs=knobs))
            else:
                seq = None
                if stream is not None:
                    steps = wl.get("steps_per_epoch") or max(1, len(stream) // wl["batch_size"])
                    seq = keras_common.streaming_sequence(keras, stream, steps)
                timer, loss, acc = keras_common.train_repeat(
                    keras, spec, emitter, repeat, x, y, sync, {"jit_compile": jit}, seq=seq)
                runs.append(timer.run_record("train", loss, acc, knobs))
    finally:
        if stream is not None:
            stream.close()
    if built and backend == "jax":
        # where the weights actually live: N devices under DataParallel, else 1
        knobs["variable_devices"] = str(_jax_device_count(built[-1]))
    emitter.emit("result", runs=runs, knobs=knobs, data_source=source,
                 global_batch_size=wl["batch_size"], per_device_batch_size=per_device_bs)
