"""Keras 3 under LoadGen on each of its backends (edgebench/runner/inference/keras_*.py): the catalogue's
model, the job's precision as Keras's mixed policy on the fp32 model's weight values, the fp32 model on the
CPU as the reference, real LoadGen runs on the CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from edgebench.schemas.result import RunResult
from tests.runner.runjob import job, of_type, run_job

pytestmark = pytest.mark.slow

FRAMEWORK = {"keras-jax": "jax", "keras-torch": "torch", "keras-tensorflow": "tensorflow"}
APPLY = {"keras-jax": "jax.jit(model.stateless_call)", "keras-torch": "model(x, training=False) under torch.no_grad",
         "keras-tensorflow": "tf.function(model.call, jit_compile=False)"}


def _backend(name: str) -> object:
    missing = [m for m in ("keras", FRAMEWORK[name], "mlperf_loadgen") if importlib.util.find_spec(m) is None]
    return pytest.param(name, marks=pytest.mark.skipif(bool(missing), reason=f"not installed: {missing}"))


def _job(backend: str, scenario: str, precision: str, **workload: object) -> dict:
    wl = {"samples": 64, "batch_size": 8, "synthetic": True, "epochs": 1, **workload}
    spec = job(backend, "cnn", "fashion_mnist", mode="infer", precision=precision, warmup_epochs=0, workload=wl,
               inference={"scenario": scenario, "rules": "quick", "min_duration_ms": 300, "max_duration_ms": 2000})
    spec["job_id"] = f"t-lg-{backend}-{scenario}-{precision}"
    return spec


@pytest.mark.parametrize("backend", [_backend("keras-torch"), _backend("keras-tensorflow")])
@pytest.mark.parametrize(("scenario", "precision"), [("single-stream", "fp32"), ("offline", "bf16")])
def test_keras_backend_under_loadgen(backend: str, scenario: str, precision: str, tmp_path: Path) -> None:
    # Offline with 60 samples in batches of 8: the last batch is short (padded where the adapter compiles)
    rc, messages, stderr = run_job(_job(backend, scenario, precision, samples=60), tmp_path)
    assert rc == 0, stderr[-3000:]
    [result] = of_type(messages, "result")
    run = result["runs"][0]
    RunResult.model_validate_json(json.dumps(run))  # as the wire carries it
    inf = run["inference"]
    assert inf["runtime"] == backend and inf["model"]["format"] == "keras"
    assert len(inf["model"]["sha256"]) == 64 and inf["model"]["size_bytes"] > 0
    lg = inf["loadgen"]
    assert lg["valid"], lg["invalid_reason"]
    assert lg["scenario"] == {"single-stream": "SingleStream", "offline": "Offline"}[scenario]
    eq = inf["equivalence"]
    assert eq["passed"], eq
    assert "fp32 on the CPU, same weights" in eq["reference"] and FRAMEWORK[backend] in eq["reference"]
    if precision == "fp32":
        assert eq["max_rel_err"] < 1e-5  # the reference's own weights, fp32 both sides
    else:
        assert eq["max_rel_err"] > 0  # computed in bf16: not bit-identical to the fp32 reference
    knobs = inf["knobs"]
    assert knobs["apply"] == APPLY[backend]
    assert knobs["model_compute_dtypes"] == {"fp32": "float32", "bf16": "bfloat16"}[precision]
    assert knobs["dtype_policy"] == {"fp32": "float32", "bf16": "mixed_bfloat16"}[precision]
    assert result["devices_used"]["kind"] == "cpu"
    [hello] = of_type(messages, "hello")
    assert hello["libraries"]["keras"] and hello["libraries"][FRAMEWORK[backend]]


@pytest.mark.parametrize("backend", [_backend("keras-torch"), _backend("keras-tensorflow")])
def test_int8_is_refused_naming_precision(backend: str, tmp_path: Path) -> None:
    rc, messages, _ = run_job(_job(backend, "single-stream", "int8"), tmp_path)
    assert rc == 2
    [err] = of_type(messages, "error")
    assert err["error_type"] == "Unsupported" and "int8" in err["message"]
