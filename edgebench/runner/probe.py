"""``python -m runner.probe BACKEND``: is the backend importable here, and which
versions? Prints one JSON object. Cheap: finds modules without importing them."""

import json
import sys

try:
    from importlib.util import find_spec
except ImportError:  # pragma: no cover - Python 2
    find_spec = None

# backend -> [(module, [distribution names to try for the version])]
REQUIREMENTS = {
    "keras-jax": [("keras", ["keras"]), ("jax", ["jax"]), ("jaxlib", ["jaxlib"])],
    "keras-torch": [("keras", ["keras"]), ("torch", ["torch"])],
    "keras-tensorflow": [("keras", ["keras"]),
                         ("tensorflow", ["tensorflow", "tensorflow-cpu", "tensorflow-gpu"])],
    "torch": [("torch", ["torch"])],
    "keras-mxnet": [("keras", ["keras-mxnet"]), ("mxnet", ["mxnet", "mxnet-cu100", "mxnet-mkl"])],
    "keras-tensorflow1": [("keras", ["keras"]),
                          ("tensorflow", ["tensorflow-gpu", "tensorflow"])],
    "sleep": [],
    # deployment runtimes: each needs MLPerf LoadGen and, to export catalogue models on the
    # box, torch + onnx (ONNX) or TensorFlow (LiteRT); see inference_probe below
    "onnxruntime": [("onnxruntime", ["onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"]),
                    ("mlperf_loadgen", ["mlcommons-loadgen"])],
    "openvino": [("openvino", ["openvino"]), ("mlperf_loadgen", ["mlcommons-loadgen"])],
    "litert": [("ai_edge_litert", ["ai-edge-litert"]), ("mlperf_loadgen", ["mlcommons-loadgen"])],
    "tensorrt": [("tensorrt", ["tensorrt", "tensorrt-cu12", "tensorrt-cu13"]), ("torch", ["torch"]),
                 ("mlperf_loadgen", ["mlcommons-loadgen"])],
}

# what exports catalogue models on the box (absent: only cached artifacts can run)
EXPORTERS = {
    "onnxruntime": [("torch", ["torch"]), ("onnx", ["onnx"]), ("onnxscript", ["onnxscript"])],
    "openvino": [("torch", ["torch"]), ("onnx", ["onnx"]), ("onnxscript", ["onnxscript"])],
    "tensorrt": [("torch", ["torch"]), ("onnx", ["onnx"]), ("onnxscript", ["onnxscript"])],
    "litert": [("keras", ["keras"]), ("tensorflow", ["tensorflow", "tensorflow-cpu"])],
}


def _version(dists):
    try:
        from importlib.metadata import version
    except ImportError:
        version = None
    for dist in dists:
        try:
            if version is not None:
                return version(dist)
            import pkg_resources

            return pkg_resources.get_distribution(dist).version
        except Exception:  # noqa: BLE001 - absent distribution, try the next name
            continue
    return None


def probe(backend):
    if backend not in REQUIREMENTS:
        return {"available": False, "detail": "unknown backend", "versions": {}}
    versions = {}
    missing = []
    for module, dists in REQUIREMENTS[backend]:
        if find_spec(module) is None:
            missing.append(module)
            continue
        v = _version(dists)
        if v:
            versions[module] = v
    if backend == "keras-tensorflow" and versions.get("keras", "3").split(".")[0] != "3":
        missing.append("keras>=3")
    if backend in ("keras-mxnet", "keras-tensorflow1") and versions.get("keras", "2").split(".")[0] != "2":
        missing.append("keras 2.2.4")
    if backend == "keras-tensorflow1" and versions.get("tensorflow", "1").split(".")[0] != "1":
        missing.append("tensorflow 1.x")
    versions["python"] = "%d.%d.%d" % sys.version_info[:3]
    extra = {}
    if backend in EXPORTERS and not missing:
        extra = inference_probe(backend, versions)
    if missing:
        return {"available": False, "detail": "missing: " + ", ".join(missing), "versions": versions}
    out = {"available": True, "detail": extra.pop("detail", ""), "versions": versions}
    out.update(extra)
    return out


def inference_probe(backend, versions):
    """Providers a runtime offers here (imports the runtime: a runtime probe costs ~0.3 s),
    and whether the box can export catalogue models itself."""
    out = {}
    absent = [m for m, _ in EXPORTERS[backend] if find_spec(m) is None]
    for module, dists in EXPORTERS[backend]:
        if module not in absent:
            v = _version(dists)
            if v:
                versions["export:" + module] = v
    notes = []
    if absent:
        notes.append("no exporter here (%s missing): runs cached artifacts only" % ", ".join(absent))
    try:
        if backend == "onnxruntime":
            import onnxruntime

            out["providers"] = list(onnxruntime.get_available_providers())
        elif backend == "openvino":
            import openvino

            out["providers"] = list(openvino.Core().available_devices)
        elif backend == "litert":
            out["providers"] = ["cpu (XNNPACK)"]
        elif backend == "tensorrt":
            import torch

            out["providers"] = ["cuda"] if torch.cuda.is_available() else []
            out["accelerators"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as exc:  # noqa: BLE001 - a runtime that imports but cannot start says why
        notes.append("provider probe failed: %s" % (str(exc)[:200],))
    out["detail"] = "; ".join(notes)
    return out


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
