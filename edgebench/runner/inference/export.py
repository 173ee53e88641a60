"""Export catalogue models once per box, with the frameworks' own exporters and the
runtimes' own quantisers, into the digest-keyed cache (``artifacts``).

=========  =======================================================================  ==================
format     how                                                                      reference outputs
=========  =======================================================================  ==================
onnx fp32  ``torch.onnx.export`` (torch.export based, opset 18, dynamic batch) of    torch eager fp32
           runner/torch_models.py built with ``torch.manual_seed(0)``
onnx fp16  ONNX Runtime's ``float16.convert_float_to_float16`` (float32 I/O kept)    the fp32 source's
onnx int8  ONNX Runtime ``quantize_static`` (QDQ, per-channel int8, MinMax), or      the fp32 source's
           NNCF's ``nncf.quantize`` for OpenVINO (``quantiser="nncf"``)
tflite     Keras 3 ``model.export(format="litert")`` of runner/keras_models.py on   Keras (TF) predict
           the TensorFlow backend (``keras.utils.set_random_seed(0)``); fp16 with
           Keras passing the TFLite converter float16 weights, int8 full-integer with a
           representative dataset (float32 I/O kept)
=========  =======================================================================  ==================

Quantisers calibrate on ``CALIBRATION_SAMPLES`` samples: the dataset's first training samples
when its files are on the box, else seeded synthetic samples of its shape (recorded either way).
The reference batch is seeded synthetic data of the dataset's shape and range
(:func:`reference_inputs`), so every runtime sees the same inputs.

Each export runs in a child process of the same interpreter (``python -m <package>.export``):
TensorFlow needs KERAS_BACKEND set before Keras is imported, and a runtime job's own process
then never holds an exporter's memory.
"""

import json
import os
import subprocess
import sys
import tempfile

from ..catalogue import DATASETS
from ..errors import Unsupported
from .artifacts import Cache

EXPORT_VERSION = 1  # bump when an export recipe changes meaning (invalidates cached recipes)
ONNX_OPSET = 18
CALIBRATION_SAMPLES = 32
REFERENCE_SEED = 20261201
CALIBRATION_SEED = 7
WEIGHTS_SEED = 0  # as runner/torch_native.py: the torch runtime builds the same weights


def reference_inputs(dataset, n, layout, seed=REFERENCE_SEED):
    """n float32 samples of the dataset's shape and value range (NHWC or NCHW)."""
    import numpy as np

    h, w, c = DATASETS[dataset]["shape"]
    rng = np.random.RandomState(seed)
    if dataset in ("synthetic_imagenet",):
        x = rng.randint(0, 256, size=(n, h, w, c)).astype("float32")  # as the 2019 study's images
    else:
        x = rng.random_sample((n, h, w, c)).astype("float32")
    return to_layout(x, layout)


def to_layout(x_nhwc, layout):
    import numpy as np

    if layout == "NCHW":
        return np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))
    return np.ascontiguousarray(x_nhwc)


def calibration_inputs(dataset, dataset_root, n, layout):
    """(samples, description): real training samples when present, else seeded synthetic."""
    from .. import datasets

    if dataset_root and not datasets.is_streamed(dataset) and DATASETS[dataset]["files"]:
        try:
            x, _, source = datasets.load(dataset, dataset_root, samples=n)
            if source == "real" and len(x) >= n:
                return to_layout(x[:n], layout), "%d real %s training samples" % (n, dataset)
        except Exception:  # noqa: BLE001 - absent or unreadable files: synthetic below, and said so
            pass
    return (reference_inputs(dataset, n, layout, seed=CALIBRATION_SEED),
            "%d synthetic samples of %s's shape (seed %d)" % (n, dataset, CALIBRATION_SEED))


def recipe(model, dataset, fmt, precision, quantiser=None):
    """What identifies an export (the cache finds it again by this)."""
    h, w, c = DATASETS[dataset]["shape"]
    return {"export_version": EXPORT_VERSION, "model": model, "input_hwc": [h, w, c],
            "classes": DATASETS[dataset]["classes"], "format": fmt, "precision": precision,
            "quantiser": quantiser or "", "opset": ONNX_OPSET if fmt == "onnx" else None,
            "weights_seed": WEIGHTS_SEED}


def default_quantiser(runtime, fmt, precision):
    if precision != "int8":
        return None
    if fmt == "tflite":
        return "tflite"
    return "nncf" if runtime == "openvino" else "ort"


def ensure(model, dataset, fmt, precision, runtime=None, cache=None, dataset_root=None, send=None):
    """The cached artifact for this recipe, exporting it (in a child process) when absent."""
    cache = cache or Cache()
    quantiser = default_quantiser(runtime, fmt, precision)
    rec = recipe(model, dataset, fmt, precision, quantiser)
    art = cache.find_recipe(rec)
    if art is not None:
        return art, False
    if send is not None:  # an Emitter's send: the export is set-up time
        from ..protocol import SETUP, phase

        send(phase(SETUP, 0, 1, 1))
    request = {"model": model, "dataset": dataset, "format": fmt, "precision": precision,
               "quantiser": quantiser, "cache": cache.root, "dataset_root": dataset_root}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(request, fh)
        req_path = fh.name
    try:
        proc = _export_in_child(req_path, fmt)
    finally:
        os.unlink(req_path)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace")[-3000:]
        raise Unsupported("exporting %s/%s to %s %s failed (exit %d): %s"
                          % (model, dataset, fmt, precision, proc.returncode, tail))
    art = cache.find_recipe(rec)
    if art is None:
        raise Unsupported("export of %s to %s %s wrote no artifact" % (model, fmt, precision))
    return art, True


def _export_in_child(req_path, fmt):
    """``python -m <package>.export REQUEST`` in a child process of this interpreter; its CompletedProcess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _package_root() + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if fmt == "tflite":
        env["KERAS_BACKEND"] = "tensorflow"  # LiteRT export needs Keras on TensorFlow
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.run([sys.executable, "-m", __package__ + ".export", req_path], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600)


def _package_root():
    """The directory that holds this package's top level ('runner' in the agent's copy)."""
    root = os.path.dirname(os.path.abspath(__file__))
    for _ in __package__.split("."):
        root = os.path.dirname(root)
    return root


# -- the exporters (run in the child process) ------------------------------------------------

def _torch_fp32_onnx(model, dataset, path, n_ref):
    import numpy as np
    import torch

    from .. import torch_models

    info = DATASETS[dataset]
    torch.manual_seed(WEIGHTS_SEED)
    net = torch_models.build(model, info["shape"], info["classes"]).eval()
    x = reference_inputs(dataset, n_ref, "NCHW")
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    sample = torch.from_numpy(x[:2])
    torch.onnx.export(net, (sample,), path, input_names=["input"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},),
                      opset_version=ONNX_OPSET, dynamo=True, external_data=False, verbose=False)
    source = "torch %s, torch.onnx.export (torch.export, opset %d), runner/torch_models.py seed %d" % (
        torch.__version__.split("+")[0], ONNX_OPSET, WEIGHTS_SEED)
    return x, np.asarray(ref, dtype="float32"), "torch %s eager fp32 (CPU)" % torch.__version__, source


def _onnx_meta(model, dataset, precision):
    h, w, c = DATASETS[dataset]["shape"]
    return {"format": "onnx", "precision": precision, "layout": "NCHW", "model": model, "dataset": dataset,
            "input": {"name": "input", "shape": [None, c, h, w], "dtype": "float32"},
            "output": {"name": "logits", "kind": "logits"}, "classes": DATASETS[dataset]["classes"]}


def _export_onnx(req, cache, work):
    model, dataset, precision = req["model"], req["dataset"], req["precision"]
    fp32 = cache.find_recipe(recipe(model, dataset, "onnx", "fp32"))
    if fp32 is None:
        path = os.path.join(work, "fp32.onnx")
        x, ref, ref_desc, source = _torch_fp32_onnx(model, dataset, path, _ref_count(dataset))
        meta = dict(_onnx_meta(model, dataset, "fp32"), source=source)
        fp32 = cache.put(path, meta, (x, ref, ref_desc))
        cache.note_recipe(recipe(model, dataset, "onnx", "fp32"), fp32)
    if precision == "fp32":
        return
    reference = fp32.reference()
    out = os.path.join(work, "variant.onnx")
    if precision == "fp16":
        import onnx
        from onnxruntime.transformers import float16

        converted = float16.convert_float_to_float16(onnx.load(fp32.path), keep_io_types=True)
        onnx.save(converted, out)
        meta = dict(_onnx_meta(model, dataset, "fp16"), source=fp32.meta["source"],
                    quantiser="onnxruntime %s float16.convert_float_to_float16 (keep_io_types)" % _ort_version(),
                    parent_sha256=fp32.sha256)
    elif precision == "int8":
        calib, calib_desc = calibration_inputs(dataset, req.get("dataset_root"), CALIBRATION_SAMPLES, "NCHW")
        if req.get("quantiser") == "nncf":
            quantiser = _nncf_int8(fp32.path, out, calib)
        else:
            quantiser = _ort_int8(fp32.path, out, calib, work)
        meta = dict(_onnx_meta(model, dataset, "int8"), source=fp32.meta["source"], quantiser=quantiser,
                    calibration=calib_desc, parent_sha256=fp32.sha256)
    else:
        raise Unsupported("no %s ONNX variant (fp32, fp16, int8)" % precision)
    art = cache.put(out, meta, reference)
    cache.note_recipe(recipe(model, dataset, "onnx", precision, req.get("quantiser")), art)


def _ort_version():
    import onnxruntime

    return onnxruntime.__version__


class _Calibration(object):
    """ONNX Runtime's CalibrationDataReader protocol: one sample per call, then None."""

    def __init__(self, samples, input_name):
        self.samples = samples
        self.input_name = input_name
        self.i = 0

    def get_next(self):
        if self.i >= len(self.samples):
            return None
        x = self.samples[self.i:self.i + 1]
        self.i += 1
        return {self.input_name: x}

    def rewind(self):
        self.i = 0


def _ort_int8(src, out, calib, work, input_name="input"):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = os.path.join(work, "pre.onnx")
    quant_pre_process(src, pre, skip_symbolic_shape=True)  # ORT's recommended step before quantising
    quantize_static(pre, out, _Calibration(calib, input_name), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return "onnxruntime %s quantize_static (QDQ, per-channel int8 weights, int8 activations, MinMax)" % (
        _ort_version())


def _nncf_int8(src, out, calib, input_name="input"):
    import nncf
    import onnx

    data = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))], lambda x: {input_name: x})
    quantized = nncf.quantize(onnx.load(src), data, subset_size=len(calib))
    onnx.save(quantized, out)
    return "nncf %s quantize (ONNX backend, default int8 preset, %d samples)" % (nncf.__version__, len(calib))


def _ref_count(dataset):
    # ResNet-50's 224x224x3 float32 samples are 0.6 MB each: 8 keep reference.npz at 5 MB
    h, w, _ = DATASETS[dataset]["shape"]
    return 8 if h * w > 100 * 100 else 32


def _export_tflite(req, cache, work):
    import numpy as np

    model, dataset, precision = req["model"], req["dataset"], req["precision"]
    if os.environ.get("KERAS_BACKEND") != "tensorflow":
        raise Unsupported("LiteRT export needs KERAS_BACKEND=tensorflow")
    import keras
    import tensorflow as tf

    from .. import keras_models

    info = DATASETS[dataset]
    keras.utils.set_random_seed(WEIGHTS_SEED)
    net = keras_models.build(keras, model, info["shape"], info["classes"], "channels_last")
    x = reference_inputs(dataset, _ref_count(dataset), "NHWC")
    ref = np.asarray(net.predict(x, verbose=0), dtype="float32")
    kwargs = {}
    quantiser = calibration = ""
    if precision == "fp16":
        kwargs = {"optimizations": [tf.lite.Optimize.DEFAULT], "target_spec": {"supported_types": [tf.float16]}}
        quantiser = "TFLite converter %s, float16 weights (Optimize.DEFAULT, supported_types float16)" % (
            tf.__version__)
    elif precision == "int8":
        calib, calibration = calibration_inputs(dataset, req.get("dataset_root"), CALIBRATION_SAMPLES, "NHWC")

        def representative():
            for i in range(len(calib)):
                yield [calib[i:i + 1]]

        kwargs = {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": representative}
        quantiser = ("TFLite converter %s, full-integer int8 (representative dataset; float32 I/O kept)"
                     % tf.__version__)
    elif precision != "fp32":
        raise Unsupported("no %s LiteRT variant (fp32, fp16, int8)" % precision)
    path = os.path.join(work, "model.tflite")
    net.export(path, format="litert", verbose=False, **kwargs)
    h, w, c = info["shape"]
    meta = {"format": "tflite", "precision": precision, "layout": "NHWC", "model": model, "dataset": dataset,
            "input": {"name": "input", "shape": [None, h, w, c], "dtype": "float32"},
            "output": {"name": "output", "kind": "probabilities"}, "classes": info["classes"],
            "source": "keras %s on tensorflow %s, model.export(format='litert'), runner/keras_models.py seed %d"
                      % (keras.__version__, tf.__version__, WEIGHTS_SEED),
            "quantiser": quantiser, "calibration": calibration}
    art = cache.put(path, meta, (x, ref, "keras %s on tensorflow %s predict fp32 (CPU)"
                                 % (keras.__version__, tf.__version__)))
    cache.note_recipe(recipe(model, dataset, "tflite", precision, req.get("quantiser")), art)


# -- a user's ONNX file (docs/MODELS.md): its fp16 / int8 variants, by the same quantisers ----------------

def user_recipe(parent_sha256, precision, quantiser, calibration, fmt="onnx"):
    """What identifies a variant of a user's file: the parent's digest, the format, the precision, the
    quantiser and the calibration data's description."""
    return {"export_version": EXPORT_VERSION, "parent_sha256": parent_sha256, "format": fmt,
            "precision": precision, "quantiser": quantiser or "", "calibration": calibration}


ONNX2TF = ("onnx2tf", "onnx_graphsurgeon", "sng4onnx", "tf_keras", "tensorflow")


def check_onnx2tf():
    """LiteRT runs a user's ONNX file after onnx2tf converts it: Unsupported (field backend) where the
    converter or what it imports is missing, before anything is made."""
    try:
        from importlib.util import find_spec
    except ImportError:  # pragma: no cover - Python 2
        return
    missing = [m for m in ONNX2TF if find_spec(m) is None]
    if missing:
        raise Unsupported("litert runs a user's ONNX model converted by onnx2tf, and %s %s missing here "
                          "(pip install 'edgebench[inference-export]')"
                          % (", ".join(missing), "is" if len(missing) == 1 else "are"), field="backend")


def ensure_user_variant(parent, parent_cache, precision, runtime, calib, calib_desc, reference, cache, send=None,
                        fmt="onnx"):
    """The cached fp16 or int8 variant of a user's verified ONNX file ``parent`` (an Artifact of the Cache
    ``parent_cache``; the variant goes to ``cache``, which may be another one), made in a
    child process (as the catalogue's exports are) by ONNX Runtime's float16 converter or static quantiser,
    or NNCF for OpenVINO; for LiteRT (``fmt`` tflite, every precision) converted by onnx2tf, the int8 one
    quantised by TensorFlow Lite's converter from onnx2tf's SavedModel. ``calib``: calibration samples in the
    model's own layout (``calib_desc`` says what they are); ``reference``: (inputs, outputs, description) of
    the parent on the reference batch, stored with the variant so that its equivalence is judged against the
    user's fp32 file.
    Returns (artifact, made now)."""
    import numpy as np

    quantiser = "onnx2tf" if fmt == "tflite" else default_quantiser(runtime, "onnx", precision)
    if fmt == "tflite":
        check_onnx2tf()
    rec = user_recipe(parent.sha256, precision, quantiser, calib_desc, fmt)
    art = cache.find_recipe(rec)
    if art is not None:
        return art, False
    if send is not None:
        from ..protocol import SETUP, phase

        send(phase(SETUP, 0, 1, 1))
    work = tempfile.mkdtemp(prefix="edgebench-variant-")
    try:
        data = os.path.join(work, "data.npz")
        ref_x, ref_out, ref_desc = reference
        with open(data, "wb") as fh:
            np.savez(fh, calib=np.asarray(calib), ref_x=np.asarray(ref_x), ref_out=np.asarray(ref_out))
        request = {"user_variant": True, "parent": parent.sha256, "parent_cache": parent_cache.root,
                   "format": fmt, "precision": precision, "quantiser": quantiser, "cache": cache.root,
                   "data": data, "calibration": calib_desc, "reference_description": ref_desc}
        req_path = os.path.join(work, "request.json")
        with open(req_path, "w") as fh:
            json.dump(request, fh)
        proc = _export_in_child(req_path, fmt)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace")[-3000:]
        raise Unsupported("making the %s variant of the user's model %s failed (exit %d): %s"
                          % (precision, parent.sha256[:12], proc.returncode, tail), field="precision")
    art = cache.find_recipe(rec)
    if art is None:
        raise Unsupported("the %s variant of %s wrote no artifact" % (precision, parent.sha256[:12]))
    return art, True


def _graph_input(model):
    """The first real input of an ONNX graph (old exporters list initialisers among the inputs too)."""
    inits = set(i.name for i in model.graph.initializer)
    for value in model.graph.input:
        if value.name not in inits:
            return value.name
    raise Unsupported("the ONNX graph has no input")


def _export_user_variant(req, cache, work):
    import numpy as np
    import onnx

    parent = Cache(req["parent_cache"]).get(req["parent"])  # re-hashed: only the verified file is read
    with np.load(req["data"]) as data:
        calib, ref_x, ref_out = data["calib"], data["ref_x"], data["ref_out"]
    precision = req["precision"]
    source = onnx.load(parent.path)
    input_name = _graph_input(source)
    out = os.path.join(work, "variant.onnx")
    calibration = ""
    if req["format"] == "tflite":
        out, quantiser = _user_tflite(parent.path, precision, calib, work, input_name)
        calibration = req["calibration"] if precision == "int8" else ""
    elif precision == "fp16":
        from onnxruntime.transformers import float16

        onnx.save(float16.convert_float_to_float16(source, keep_io_types=True), out)
        quantiser = "onnxruntime %s float16.convert_float_to_float16 (keep_io_types)" % _ort_version()
    elif precision == "int8":
        calibration = req["calibration"]
        if req.get("quantiser") == "nncf":
            quantiser = _nncf_int8(parent.path, out, calib, input_name)
        else:
            quantiser = _ort_int8(parent.path, out, calib, work, input_name)
    else:
        raise Unsupported("no %s variant of a user's ONNX model (fp16, int8)" % precision)
    meta = {k: v for k, v in parent.meta.items() if k not in ("sha256", "reference")}
    meta.update(format=req["format"], precision=precision, quantiser=quantiser, calibration=calibration,
                parent_sha256=parent.sha256, origin="derived",
                source="%s %s variant of the user's model sha256 %s" % (precision, req["format"], parent.sha256))
    art = cache.put(out, meta, (ref_x, ref_out, req["reference_description"]))
    cache.note_recipe(user_recipe(parent.sha256, precision, req.get("quantiser"), req["calibration"],
                                  req["format"]), art)


def _user_tflite(src, precision, calib, work, input_name):
    """(path, quantiser): the user's ONNX file as a LiteRT model, by onnx2tf (the input keeps the ONNX
    graph's own shape and layout, so the job's samples and the reference batch feed both unchanged).
    fp32 and fp16 (float16 weights) are onnx2tf's own outputs; int8 is TensorFlow Lite's full-integer
    quantisation of onnx2tf's SavedModel on the calibration samples, float32 input and output kept."""
    import shutil

    import numpy as np
    import onnx2tf

    # onnx2tf rewrites the file it is given (its graph clean-up saves over the input): it converts a copy, never
    # the user's verified file in the cache (which it once altered, so that the next job refused it as tampered)
    copy = os.path.join(work, "model.onnx")
    shutil.copyfile(src, copy)
    folder = os.path.join(work, "onnx2tf")
    onnx2tf.convert(input_onnx_file_path=copy, output_folder_path=folder, non_verbose=True,
                    keep_shape_absolutely_input_names=[input_name])
    stem = "model"
    version = getattr(onnx2tf, "__version__", "") or _dist_version("onnx2tf")
    if precision in ("fp32", "fp16"):
        bits = "32" if precision == "fp32" else "16"
        path = os.path.join(folder, "%s_float%s.tflite" % (stem, bits))
        if not os.path.exists(path):
            raise Unsupported("onnx2tf %s wrote no %s" % (version, os.path.basename(path)))
        return path, "onnx2tf %s, %s" % (version, "float32" if bits == "32" else "float16 weights")
    if precision != "int8":
        raise Unsupported("no %s LiteRT variant of a user's ONNX model (fp32, fp16, int8)" % precision,
                          field="precision")
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(folder)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for i in range(len(calib)):
            yield [np.asarray(calib[i:i + 1], dtype="float32")]

    converter.representative_dataset = representative
    path = os.path.join(work, "model.tflite")
    with open(path, "wb") as fh:
        fh.write(converter.convert())
    return path, ("onnx2tf %s SavedModel, TFLite converter %s full-integer int8 (representative dataset; "
                  "float32 I/O kept)" % (version, tf.__version__))


def _dist_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return "unknown"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as fh:
        req = json.load(fh)
    cache = Cache(req["cache"])
    work = tempfile.mkdtemp(prefix="edgebench-export-")
    try:
        if req.get("user_variant"):
            _export_user_variant(req, cache, work)
        elif req["format"] == "onnx":
            _export_onnx(req, cache, work)
        elif req["format"] == "tflite":
            _export_tflite(req, cache, work)
        else:
            raise Unsupported("no exporter for format %r" % req["format"])
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
