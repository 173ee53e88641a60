"""A user's registered model in the runner (issue 19, docs/MODELS.md).

The agent has fetched the job's file into the model cache (``EDGEBENCH_MODEL_CACHE``) and
checked its sha256; the runner checks it again as it opens it (runner/inference/artifacts.py
re-hashes every load), so nothing is loaded whose digest is not the job's.

- Data: synthetic samples of the model's input signature (seeded), or the registered catalogue
  dataset's real files when they are on the box, laid out as the model takes them.
- ONNX: run by the inference runtimes under LoadGen (runner/inference/run.py); the equivalence
  reference is ONNX Runtime on the CPU with graph optimisations off, on a seeded synthetic batch.
- ``.keras``: loaded with ``keras.saving.load_model(path, safe_mode=True, compile=False)`` (safe
  mode refuses Lambda layers, i.e. bytecode in the file), then compiled with the job's optimiser and
  a sparse categorical cross-entropy loss and trained like a catalogue model.

Python 3.6 syntax, standard library only at module level (the runner's rule).
"""

from .errors import Invalid, Unsupported

USER_MODEL = "user"
ARTIFACT_INPUT = "artifact-input"
SYNTHETIC_SAMPLES = 2048  # 64 batches of 32 per epoch: the window's 100-batch minimum adds a second epoch
REFERENCE_SEED = 1234


def is_user_model(spec):
    return spec.get("workload", {}).get("model") == USER_MODEL


def reference_of(spec):
    ref = spec.get("model_artifact")
    if not ref:
        raise Invalid("workload.model 'user' without model_artifact", field="model_artifact") from None
    return ref


def artifact(spec, fmt):
    """The verified cached file of the job's digest (ArtifactError if absent or not matching)."""
    from .inference.artifacts import Cache

    ref = reference_of(spec)
    if ref["format"] != fmt:
        raise Unsupported("this backend runs %s models; %s@%s is %s" % (fmt, ref["name"], ref["version"],
                                                                         ref["format"]), field="backend")
    return Cache().get(ref["digest"])


def _dtype(np, name):
    return {"float32": np.float32, "float16": np.float16, "uint8": np.uint8, "int32": np.int32,
            "int64": np.int64}[name]


def synthetic(ref, n, seed=0):
    """(x, y): n seeded samples of the input signature, labels in [0, classes)."""
    import numpy as np

    sig = ref["input"]
    shape = tuple(int(d) for d in sig["shape"])
    rng = np.random.RandomState(seed)
    dtype = _dtype(np, sig.get("dtype", "float32"))
    if np.issubdtype(dtype, np.integer):
        x = rng.randint(0, 256, size=(n, *shape)).astype(dtype)
    else:
        x = rng.random_sample((n, *shape)).astype(dtype)
    y = rng.randint(0, int(ref["classes"]), size=(n,)).astype("int32")
    return x, y


def _to_model_shape(np, x_nhwc, shape):
    """Catalogue samples (N, H, W, C) as the model takes them: NHWC, NCHW or flat."""
    if tuple(x_nhwc.shape[1:]) == shape:
        return x_nhwc
    if len(shape) == 3 and tuple(x_nhwc.shape[1:]) == (shape[1], shape[2], shape[0]):
        return np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))
    if int(np.prod(shape)) == int(np.prod(x_nhwc.shape[1:])):
        return x_nhwc.reshape((len(x_nhwc), *shape))
    raise Invalid("dataset samples of %s do not fit the model's input %s" % (x_nhwc.shape[1:], shape),
                  field="workload.dataset")


def arrays(spec, dataset_root, n=None):
    """(x, y, source) in the model's own input layout."""
    import numpy as np

    from . import datasets

    ref = reference_of(spec)
    wl = spec["workload"]
    shape = tuple(int(d) for d in ref["input"]["shape"])
    if wl["dataset"] == ARTIFACT_INPUT:
        x, y = synthetic(ref, int(n or wl.get("samples") or SYNTHETIC_SAMPLES))
        return x, y, "synthetic"
    x, y, source = datasets.load(wl["dataset"], dataset_root, wl.get("synthetic", False), n or wl.get("samples"))
    return _to_model_shape(np, x, shape).astype(_dtype(np, ref["input"].get("dtype", "float32"))), y, source


def onnx_reference(path, x):
    """(outputs, description): ONNX Runtime on the CPU, optimisations off, as the reference."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise Unsupported("a user's ONNX model is checked against ONNX Runtime, which is not installed here") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    return out, "onnxruntime %s CPUExecutionProvider, optimisations off (the user's model)" % ort.__version__


def reference_batch(ref, n):
    x, _ = synthetic(ref, n, seed=REFERENCE_SEED)
    return x


def load_keras(keras, path):
    """A fresh model from the file, in safe mode (no Lambda layers, no bytecode)."""
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:  # safe mode's refusal, or a config Keras cannot build
        raise Invalid("the .keras file does not load in safe mode: %s" % (str(exc)[:300],),
                      field="model_artifact") from None
