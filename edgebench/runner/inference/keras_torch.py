"""Keras 3 on PyTorch under LoadGen: the catalogue's Keras model called on torch tensors under
``torch.no_grad`` (what Keras's own ``predict_on_batch`` runs, without its per-call data adapter), weights
and query samples on the device before timing. Keras's torch backend dispatches layer by layer in Python:
this adapter measures that, as a team deploying Keras-on-torch would get it (docs/INFERENCE.md).
What the Keras adapters share is keras_runtime.py.
"""

from ..errors import Unsupported
from .keras_runtime import KerasRuntime


class KerasTorch(KerasRuntime):
    name = "keras-torch"
    keras_backend = "torch"
    framework = "torch"

    def framework_version(self):
        import torch

        return torch.__version__

    def load(self, batch_sizes):
        keras = self._import()
        import torch

        self.torch = torch
        self.keras = keras
        self.check_precision()
        if self.want_gpu() and not torch.cuda.is_available():
            raise Unsupported("torch %s sees no CUDA device" % torch.__version__)
        self.device = "cuda:0" if self.want_gpu() else "cpu"
        if self.settings.get("threads"):
            torch.set_num_threads(int(self.settings["threads"]))
        if self.device != "cpu":
            torch.backends.cudnn.benchmark = True
        self.ref_model, self.model = self.build_pair(keras, self.device)

    def stage(self, samples):
        if self.device == "cpu":
            return samples
        self.resident = True
        return self.torch.from_numpy(samples).to(self.device)

    def _call(self, net, x, device):
        torch = self.torch
        with torch.no_grad(), self.keras.device(device):
            xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(x).to(device)
            return net(xt, training=False).float().cpu().numpy()  # the copy waits for the device

    def reference(self, inputs):
        return self._call(self.ref_model, inputs, "cpu"), self.reference_description()

    def predict(self, x):
        return self._call(self.model, x, self.device)

    def knobs(self):
        knobs = self.common_knobs()
        knobs.update({"device": self.device, "apply": "model(x, training=False) under torch.no_grad",
                      "intra_op_threads": str(self.torch.get_num_threads()),
                      "samples": "resident on %s before timing" % self.device if self.resident else "host memory"})
        return knobs

    def provider(self):
        return "cuda" if self.device != "cpu" else "cpu"

    def devices_used(self):
        from ..keras_common import variable_devices

        devices = variable_devices(self.model)
        gpu = any(d.startswith("cuda") for d in devices)
        return {"framework": "torch", "kind": "gpu" if gpu else "cpu", "devices": devices or [self.device],
                "detail": "Keras 3 on torch %s; weights on %s" % (self.torch.__version__,
                                                                  ", ".join(devices) or "unknown")}
