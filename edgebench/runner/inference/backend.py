"""The inference runtimes as runner backends (runner/backend.py, runner/registry.py).

MLPerf LoadGen decides every timing of an inference run, so these backends
drive their own run (``drives_run``): run.py sends the same protocol messages
(runner/protocol.py) in the skeleton's order, with one LoadGen test per repeat
as the measured window. What the probe needs is here: each runtime's modules,
and what it can offer on this box (execution providers, whether catalogue
models can be exported here).
"""

try:
    from importlib.util import find_spec
except ImportError:  # pragma: no cover - Python 2
    find_spec = None

from ..backend import Backend

LOADGEN = ("mlperf_loadgen", ("mlcommons-loadgen",))
ONNX_EXPORT = (("torch", ("torch",)), ("onnx", ("onnx",)), ("onnxscript", ("onnxscript",)))


class LoadGenBackend(Backend):
    """A job under LoadGen: runtime is the adapter name in runtimes.py."""

    drives_run = True
    runtime = ""
    # what exports catalogue models on the box (absent: only cached artifacts can run)
    exporters = ()

    def run_job(self):
        from . import run

        run.run(self.ctx)

    @classmethod
    def probe_extra(cls, versions):
        """Exporters present, providers the runtime offers (imports it: ~0.3 s)."""
        from ..probe import distribution_version

        out = {}
        absent = [m for m, _ in cls.exporters if find_spec(m) is None]
        for module, dists in cls.exporters:
            if module not in absent:
                v = distribution_version(dists)
                if v:
                    versions["export:" + module] = v
        notes = []
        if absent:
            notes.append("no exporter here (%s missing): runs cached artifacts only" % ", ".join(absent))
        try:
            out["providers"] = cls.providers()
        except Exception as exc:  # noqa: BLE001 - a runtime that imports but cannot start says why
            notes.append("provider probe failed: %s" % (str(exc)[:200],))
        out["detail"] = "; ".join(notes)
        return out

    @classmethod
    def providers(cls):
        """The execution providers or devices the runtime offers here."""
        return []

    def accelerators(self):
        gpus = [p for p in self.providers() if _is_gpu(p)]
        if not gpus:
            return 0, "%s offers no GPU here (providers: %s)" % (self.runtime, ", ".join(self.providers()))
        # a GPU provider says nothing of how many devices: the runtime checks at job start
        return None, "%s offers %s; its device count is checked at job start" % (self.runtime, ", ".join(gpus))


class OnnxRuntimeBackend(LoadGenBackend):
    runtime = "onnxruntime"
    requirements = (("onnxruntime", ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino")), LOADGEN)
    exporters = ONNX_EXPORT

    @classmethod
    def providers(cls):
        import onnxruntime

        return list(onnxruntime.get_available_providers())


class OpenVinoBackend(LoadGenBackend):
    runtime = "openvino"
    requirements = (("openvino", ("openvino",)), LOADGEN)
    exporters = ONNX_EXPORT

    @classmethod
    def providers(cls):
        import openvino

        return list(openvino.Core().available_devices)


class LiteRtBackend(LoadGenBackend):
    runtime = "litert"
    requirements = (("ai_edge_litert", ("ai-edge-litert",)), LOADGEN)
    exporters = (("keras", ("keras",)), ("tensorflow", ("tensorflow", "tensorflow-cpu")))

    @classmethod
    def providers(cls):
        return ["cpu (XNNPACK)"]


class TensorRtBackend(LoadGenBackend):
    runtime = "tensorrt"
    requirements = (("tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt-cu13")), ("torch", ("torch",)), LOADGEN)
    exporters = ONNX_EXPORT

    @classmethod
    def providers(cls):
        import torch

        return ["cuda"] if torch.cuda.is_available() else []

    def accelerators(self):
        from ..torch_placement import torch_accelerators

        return torch_accelerators()


class TorchLoadGenBackend(LoadGenBackend):
    """Native torch under LoadGen: a torch job that carries inference settings."""

    runtime = "torch"
    requirements = (("torch", ("torch",)), LOADGEN)

    def accelerators(self):
        from ..torch_placement import torch_accelerators

        return torch_accelerators()


class KerasJaxLoadGenBackend(LoadGenBackend):
    """Keras 3 on JAX under LoadGen (inference/keras_jax.py): a keras-jax job that carries
    inference settings, answered by the model's jitted stateless_call."""

    runtime = "keras-jax"
    requirements = (("keras", ("keras",)), ("jax", ("jax",)), LOADGEN)

    @classmethod
    def providers(cls):
        import os

        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax

        return sorted({d.platform for d in jax.devices()})

    def accelerators(self):
        import os

        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # before jax's client exists
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return len(gpus), "jax %s sees %d GPU(s)" % (jax.__version__, len(gpus))


class KerasTorchLoadGenBackend(LoadGenBackend):
    """Keras 3 on PyTorch under LoadGen (inference/keras_torch.py): a keras-torch job that carries
    inference settings, answered by the model's call under torch.no_grad."""

    runtime = "keras-torch"
    requirements = (("keras", ("keras",)), ("torch", ("torch",)), LOADGEN)

    @classmethod
    def providers(cls):
        import torch

        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    def accelerators(self):
        from ..torch_placement import torch_accelerators

        return torch_accelerators()


class KerasTensorFlowLoadGenBackend(LoadGenBackend):
    """Keras 3 on TensorFlow under LoadGen (inference/keras_tf.py): a keras-tensorflow job that carries
    inference settings, answered by a tf.function of the model's call."""

    runtime = "keras-tensorflow"
    requirements = (("keras", ("keras",)), ("tensorflow", ("tensorflow", "tensorflow-cpu", "tensorflow-gpu")),
                    LOADGEN)

    @classmethod
    def providers(cls):
        import tensorflow as tf

        return sorted({d.device_type.lower() for d in tf.config.list_logical_devices()})

    def accelerators(self):
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return len(gpus), "TensorFlow %s sees %d logical GPU(s)" % (tf.__version__, len(gpus))


def _is_gpu(provider):
    name = provider.lower()
    return any(word in name for word in ("cuda", "tensorrt", "gpu", "rocm", "migraphx"))
