"""A user's model in the runner (issue 19): ONNX on two runtimes under LoadGen with ONNX Runtime as the
equivalence reference, .keras trained on keras-jax, keras-torch and keras-tensorflow on synthetic data of its input
signature, and safe mode's refusal of a Lambda layer. The files enter the model cache the way the
agent puts them there (agent/artifacts.py, shared-directory delivery)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from edgebench.agent.artifacts import Artifacts
from edgebench.schemas.artifact import ModelArtifactRef
from edgebench.schemas.result import RunResult
from tests.artifact_models import make_keras, make_onnx, ref_doc, sha256
from tests.runner.runjob import of_type, run_job

pytestmark = pytest.mark.slow

needs = {
    "onnxruntime": ("onnxruntime", "mlperf_loadgen"),
    "openvino": ("openvino", "mlperf_loadgen", "onnxruntime"),
    "litert": ("ai_edge_litert", "mlperf_loadgen", "onnxruntime", "onnx2tf", "tf_keras", "onnx_graphsurgeon"),
    "keras-jax": ("keras", "jax"),
    "keras-torch": ("keras", "torch"),
    "keras-tensorflow": ("keras", "tensorflow"),
}
LOADGEN_KERAS = {k: (*v, "mlperf_loadgen") for k, v in needs.items() if k.startswith("keras")}


def _param(backend: str) -> Any:
    missing = [m for m in needs[backend] if importlib.util.find_spec(m) is None]
    return pytest.param(backend, marks=pytest.mark.skipif(bool(missing), reason=f"{missing} not installed"))


def _delivered(tmp_path: Path, model: Path, fmt: str, shape: tuple[int, ...], layout: str) -> tuple[Path, dict]:
    shared = tmp_path / "shared"
    (shared / "sha256").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, shared / "sha256" / sha256(model))
    doc = ref_doc(model, fmt, kind="directory", shape=shape, layout=layout)
    cache = tmp_path / "cache"
    Artifacts(cache, shared_dir=shared).ensure(ModelArtifactRef.model_validate_json(__import__("json").dumps(doc)))
    return cache, doc


def _user_job(backend: str, doc: dict, **over: Any) -> dict[str, Any]:
    workload = {"model": "user", "dataset": "artifact-input", "batch_size": 8, "epochs": 2, "optimizer": "adam",
                "learning_rate": 0.001, **over.pop("workload", {})}
    spec = {"job_id": f"u-{backend}", "backend": backend, "mode": "train", "workload": workload,
            "warmup_epochs": 1, "repeats": 1, "model_artifact": doc, "min_batches": 20, "min_window_s": 0.2}
    spec.update(over)
    return spec


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEBENCH_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.mark.parametrize("backend", [_param("onnxruntime"), _param("openvino")])
def test_user_onnx_under_loadgen(backend: str, tmp_path: Path) -> None:
    model = make_onnx(tmp_path / "tiny.onnx")
    _, doc = _delivered(tmp_path, model, "onnx", (1, 8, 8), "NCHW")
    spec = _user_job(backend, doc, mode="infer", min_batches=None, min_window_s=None,
                     inference={"scenario": "single-stream", "rules": "quick", "min_duration_ms": 300,
                                "min_query_count": 64})
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 0, stderr[-3000:]
    run = messages[-1]["runs"][0]
    RunResult.model_validate(run, strict=False)
    inf = run["inference"]
    assert inf["model"]["sha256"] == doc["digest"] and inf["model"]["format"] == "onnx"
    assert inf["equivalence"]["passed"], inf["equivalence"]
    assert "onnxruntime" in inf["equivalence"]["reference"] and "user's model" in inf["equivalence"]["reference"]
    assert inf["loadgen"]["sample_count"] >= 64
    assert of_type(messages, "data")[0]["source"] == "synthetic"


def _variant(backend: str, precision: str, *modules: str) -> Any:
    missing = [m for m in needs[backend] + modules if importlib.util.find_spec(m) is None]
    return pytest.param(backend, precision, marks=pytest.mark.skipif(bool(missing), reason=f"{missing} not installed"))


@pytest.mark.parametrize(("backend", "precision"), [
    _variant("onnxruntime", "fp16"), _variant("onnxruntime", "int8"), _variant("openvino", "int8", "nncf")])
def test_user_onnx_variants_are_made_on_the_box_and_judged_against_the_users_file(backend: str, precision: str,
                                                                                  tmp_path: Path) -> None:
    """fp16 and int8 of a user's ONNX file: made by the runtimes' own quantisers (ONNX Runtime's float16
    converter and quantize_static; NNCF for OpenVINO) calibrated on synthetic samples of its input signature,
    cached by a recipe naming the user's digest (the second job makes nothing), and checked for equivalence
    against ONNX Runtime on the user's fp32 file."""
    model = make_onnx(tmp_path / "tiny.onnx")
    _, doc = _delivered(tmp_path, model, "onnx", (1, 8, 8), "NCHW")
    inference = {"scenario": "single-stream", "rules": "quick", "min_duration_ms": 300, "min_query_count": 64}
    runs = []
    for k in range(2):
        spec = _user_job(backend, doc, mode="infer", min_batches=None, min_window_s=None, precision=precision,
                         inference=inference, job_id=f"u-{backend}-{precision}-{k}")
        rc, messages, stderr = run_job(spec, tmp_path)
        assert rc == 0, stderr[-3000:]
        runs.append(messages[-1])
    for result in runs:
        inf = result["runs"][0]["inference"]
        RunResult.model_validate(result["runs"][0], strict=False)
        assert inf["model"]["precision"] == precision and inf["model"]["sha256"] != doc["digest"]
        assert doc["digest"] in inf["model"]["source"] and inf["model"]["quantiser"]
        assert inf["equivalence"]["passed"], inf["equivalence"]
        assert "user's model" in inf["equivalence"]["reference"]
    first, second = (r["runs"][0]["inference"] for r in runs)
    assert first["model"]["sha256"] == second["model"]["sha256"]  # one variant, found again by its recipe
    assert runs[0]["knobs"]["model_exported_now"] == "True" and runs[1]["knobs"]["model_exported_now"] == "False"
    if precision == "int8":
        assert "synthetic samples of the input signature" in first["model"]["calibration"]


@pytest.mark.parametrize(("backend", "precision"), [_variant("litert", "fp32"), _variant("litert", "fp16"),
                                                   _variant("litert", "int8")])
def test_user_onnx_on_litert_is_converted_by_onnx2tf(backend: str, precision: str, tmp_path: Path) -> None:
    """LiteRT runs a user's ONNX file after onnx2tf converts it (every precision is a variant, cached by a recipe
    naming the user's digest; int8 by TensorFlow Lite's full-integer quantiser on onnx2tf's SavedModel), its
    input keeping the ONNX graph's own NCHW shape, judged against ONNX Runtime on the user's fp32 file."""
    model = make_onnx(tmp_path / "tiny.onnx")
    _, doc = _delivered(tmp_path, model, "onnx", (1, 8, 8), "NCHW")
    inference = {"scenario": "offline", "rules": "quick", "min_duration_ms": 300, "min_query_count": 64}
    results = []
    for k in range(2):
        spec = _user_job(backend, doc, mode="infer", min_batches=None, min_window_s=None, precision=precision,
                         inference=inference, job_id=f"u-litert-{precision}-{k}", workload={"samples": 60})
        rc, messages, stderr = run_job(spec, tmp_path)
        assert rc == 0, stderr[-3000:]
        results.append(messages[-1])
    first, second = (r["runs"][0]["inference"] for r in results)
    RunResult.model_validate(results[0]["runs"][0], strict=False)
    assert first["runtime"] == "litert" and first["model"]["format"] == "tflite"
    assert first["model"]["precision"] == precision and first["model"]["sha256"] != doc["digest"]
    assert doc["digest"] in first["model"]["source"] and "onnx2tf" in first["model"]["quantiser"]
    assert first["equivalence"]["passed"], first["equivalence"]
    assert "user's model" in first["equivalence"]["reference"]
    assert first["loadgen"]["valid"], first["loadgen"]["invalid_reason"]
    assert second["model"]["sha256"] == first["model"]["sha256"]  # converted once, found again by its recipe
    assert [r["knobs"]["model_exported_now"] for r in results] == ["True", "False"]
    if precision == "int8":
        assert "full-integer int8" in first["model"]["quantiser"]
        assert "synthetic samples of the input signature" in first["model"]["calibration"]


@pytest.mark.parametrize("backend", [_param("keras-jax"), _param("keras-torch"), _param("keras-tensorflow")])
def test_user_keras_trains(backend: str, tmp_path: Path) -> None:
    model = make_keras(tmp_path / "tiny.keras")
    _, doc = _delivered(tmp_path, model, "keras", (8, 8, 1), "NHWC")
    rc, messages, stderr = run_job(_user_job(backend, doc, workload={"samples": 256}), tmp_path)
    assert rc == 0, stderr[-3000:]
    run = messages[-1]["runs"][0]
    RunResult.model_validate(run, strict=False)
    measured = [e for e in of_type(messages, "epoch") if not e["warmup"]]
    assert measured and all(e["batches"] == 32 for e in measured)  # 256 synthetic samples / batch 8
    assert run["throughput"]["window_img_per_s"] > 0 and run["loss"] is not None


def _loadgen_keras(backend: str) -> Any:
    missing = [m for m in LOADGEN_KERAS[backend] if importlib.util.find_spec(m) is None]
    return pytest.param(backend, marks=pytest.mark.skipif(bool(missing), reason=f"{missing} not installed"))


@pytest.mark.parametrize("backend", [_loadgen_keras("keras-jax"), _loadgen_keras("keras-torch"),
                                     _loadgen_keras("keras-tensorflow")])
@pytest.mark.parametrize("scenario", ["single-stream", "offline"])
def test_user_keras_under_loadgen(backend: str, scenario: str, tmp_path: Path) -> None:
    """A user's .keras file on each Keras backend's LoadGen adapter: loaded in safe mode from the verified cache,
    its own digest in the result, the same file fp32 on the CPU as the equivalence reference, samples of its
    input signature; Offline's last batch short (60 samples, batch 8)."""
    model = make_keras(tmp_path / "tiny.keras")
    _, doc = _delivered(tmp_path, model, "keras", (8, 8, 1), "NHWC")
    spec = _user_job(backend, doc, mode="infer", min_batches=None, min_window_s=None, warmup_epochs=0,
                     workload={"samples": 60, "epochs": 1},
                     inference={"scenario": scenario, "rules": "quick", "min_duration_ms": 300,
                                "min_query_count": 64})
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 0, stderr[-3000:]
    run = messages[-1]["runs"][0]
    RunResult.model_validate(run, strict=False)
    inf = run["inference"]
    assert inf["runtime"] == backend
    assert inf["model"]["sha256"] == doc["digest"] and inf["model"]["format"] == "keras"
    assert inf["equivalence"]["passed"], inf["equivalence"]
    assert "fp32 on the CPU, the user's model" in inf["equivalence"]["reference"]
    assert inf["loadgen"]["valid"], inf["loadgen"]["invalid_reason"]
    assert messages[-1]["knobs"]["model_format"] == "keras"
    assert of_type(messages, "data")[0]["source"] == "synthetic"


@pytest.mark.parametrize("backend", [_loadgen_keras("keras-jax")])
def test_user_keras_under_loadgen_runs_fp32_only(backend: str, tmp_path: Path) -> None:
    model = make_keras(tmp_path / "tiny.keras")
    _, doc = _delivered(tmp_path, model, "keras", (8, 8, 1), "NHWC")
    spec = _user_job(backend, doc, mode="infer", min_batches=None, min_window_s=None, precision="bf16",
                     inference={"scenario": "single-stream", "rules": "quick"})
    rc, messages, _ = run_job(spec, tmp_path)
    assert rc == 2
    assert messages[-1]["error_type"] == "Unsupported" and messages[-1]["message"].startswith("precision:")


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")
def test_lambda_layer_refused_by_safe_mode(tmp_path: Path) -> None:
    """The agent delivers a file the registry would have refused (the runner is the last line)."""
    model = make_keras(tmp_path / "lam.keras", "lambda")
    _, doc = _delivered(tmp_path, model, "keras", (8, 8, 1), "NHWC")
    rc, messages, _ = run_job(_user_job("keras-jax", doc, workload={"samples": 64}), tmp_path)
    assert rc != 0
    assert messages[-1]["type"] == "error" and messages[-1]["error_type"] == "Invalid"
    assert "safe" in messages[-1]["message"].lower() or "lambda" in messages[-1]["message"].lower()


def test_tampered_cache_is_not_loaded(tmp_path: Path) -> None:
    """A cached file altered after delivery: the runner re-hashes and refuses (nothing loads)."""
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("mlperf_loadgen") is None:
        pytest.skip("onnxruntime / LoadGen not installed")
    model = make_onnx(tmp_path / "tiny.onnx")
    cache, doc = _delivered(tmp_path, model, "onnx", (1, 8, 8), "NCHW")
    target = cache / "sha256" / doc["digest"] / "model.onnx"
    os.chmod(target, 0o644)
    target.write_bytes(target.read_bytes()[:-4] + b"\0\0\0\0")
    spec = _user_job("onnxruntime", doc, mode="infer", min_batches=None, min_window_s=None,
                     inference={"rules": "quick"})
    rc, messages, _ = run_job(spec, tmp_path)
    assert rc != 0 and messages[-1]["error_type"] == "Invalid"
    assert "not loaded" in messages[-1]["message"]
