"""Keras 3 jobs compute in the precision they ask for (edgebench/runner/keras3.py).

keras.backend.clear_session() resets Keras's global dtype policy; the runner builds each repeat's model after
one, and a bf16 job once trained in float32 under a bf16 label (found on an H200 by dumping XLA's optimised
train step: f32 convolutions where the bare fit had bf16 ones). Real training on the CPU, two repeats (two
clear_session calls), on Keras-JAX and Keras-torch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner.runjob import job, of_type, run_job


@pytest.mark.parametrize("backend", ["keras-jax", "keras-torch"])
@pytest.mark.parametrize(("precision", "dtype"), [("bf16", "bfloat16"), ("fp32", "float32")])
def test_the_model_computes_in_the_jobs_precision_every_repeat(tmp_path: Path, backend: str, precision: str,
                                                                dtype: str) -> None:
    pytest.importorskip("keras")
    pytest.importorskip(backend.split("-")[1])
    workload = {"batch_size": 16, "epochs": 1, "samples": 64, "synthetic": True}
    spec = job(backend, "cnn", "fashion_mnist", workload=workload, precision=precision, repeats=2, warmup_epochs=0)
    spec["job_id"] = f"t-keras3-{backend}-{precision}"
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 0, stderr[-3000:]
    [result] = of_type(messages, "result")
    assert len(result["runs"]) == 2
    assert result["knobs"]["model_compute_dtypes"] == dtype
    assert result["knobs"]["dtype_policy"] == {"bf16": "mixed_bfloat16", "fp32": "float32"}[precision]


def test_a_model_that_does_not_compute_as_asked_fails_the_job() -> None:
    keras = pytest.importorskip("keras")
    from edgebench.runner.errors import Unsupported
    from edgebench.runner.keras3 import check_compute_dtype

    keras.mixed_precision.set_global_policy("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    check_compute_dtype(model, "float32", user_model=False)
    with pytest.raises(Unsupported, match="compute in float32, not in bfloat16") as err:
        check_compute_dtype(model, "mixed_bfloat16", user_model=False)
    assert err.value.field == "precision"
    check_compute_dtype(model, "mixed_bfloat16", user_model=True)  # a user's file keeps its own policies
