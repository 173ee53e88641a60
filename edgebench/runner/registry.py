"""The catalogue of runner backends: job backend name -> (module, class).

Modules are imported only when a job (or the probe) asks for their backend,
so a runner whose Python has only one framework installed never touches the
others. Adding a backend: write ``runner/<module>.py`` with a subclass of
runner.backend.Backend, add its entry here, and add its name to
edgebench.schemas.job.Backend (tests/runner/test_protocol_sync.py checks that
both lists agree).
"""

import importlib

from .errors import Unsupported

BACKENDS = {
    "keras-jax": ("keras3", "KerasJax"),
    "keras-torch": ("keras3", "KerasTorch"),
    "keras-tensorflow": ("keras3", "KerasTensorFlow"),
    "torch": ("torch_native", "TorchBackend"),
    "jax": ("jax_native", "JaxBackend"),  # Flax + optax, the reference beside keras-jax
    "keras-mxnet": ("legacy", "MXNetBackend"),
    "keras-tensorflow1": ("legacy", "TensorFlow1Backend"),
    "sleep": ("sleep", "SleepBackend"),
    # deployment runtimes, under MLPerf LoadGen (docs/INFERENCE.md)
    "onnxruntime": ("inference.backend", "OnnxRuntimeBackend"),
    "openvino": ("inference.backend", "OpenVinoBackend"),
    "litert": ("inference.backend", "LiteRtBackend"),
    "tensorrt": ("inference.backend", "TensorRtBackend"),
}
# A framework job that carries LoadGen settings (JobSpec.inference) runs under the harness.
LOADGEN = {"torch": ("inference.backend", "TorchLoadGenBackend"),
           "keras-jax": ("inference.backend", "KerasJaxLoadGenBackend"),
           "keras-torch": ("inference.backend", "KerasTorchLoadGenBackend"),
           "keras-tensorflow": ("inference.backend", "KerasTensorFlowLoadGenBackend")}


def backend_class(name, spec=None):
    """The Backend subclass for a job's backend name (and its spec: LoadGen settings);
    Unsupported (field backend) if none."""
    if spec is not None and spec.get("inference") and name in LOADGEN:
        module, cls = LOADGEN[name]
    else:
        try:
            module, cls = BACKENDS[name]
        except KeyError:
            raise Unsupported("no runner for backend %r" % (name,), field="backend") from None
    return getattr(importlib.import_module("." + module, __package__), cls)
