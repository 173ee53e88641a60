"""Native PyTorch runner: every catalogue workload trains through `python -m runner` on the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edgebench.runner.catalogue import WORKLOADS, workload_fields
from edgebench.schemas.result import RunResult
from tests.runner.runjob import job, of_type, run_job

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow

# Tiny but real: every model, its catalogue input shape, a few batches.
TINY = {
    "fashion-mnist-mlp": {"samples": 64, "batch_size": 8},
    "fashion-mnist-cnn": {"samples": 32, "batch_size": 8},
    "cifar10-resnet56": {"samples": 8, "batch_size": 4},
    "synthetic-resnet50": {"samples": 4, "batch_size": 2},
}


def catalogue_job(name: str, **overrides):
    workload = workload_fields(name)
    workload.pop("steps_per_epoch", None)
    workload.update(TINY[name], synthetic=True)
    return job("torch", workload.pop("model"), workload.pop("dataset"), workload=workload, **overrides)


def assert_protocol(messages, epochs=2, warmup=1):
    types = [m["type"] for m in messages]
    assert types[0] == "hello" and types[-1] == "result", types
    assert types.index("data") < types.index("window")
    windows = of_type(messages, "window")
    assert [w["edge"] for w in windows] == ["begin", "end"]
    epoch_msgs = of_type(messages, "epoch")
    assert [e["warmup"] for e in epoch_msgs] == [True] * warmup + [False] * (epochs - warmup)
    # the window opens after the last warm-up epoch and closes after the last epoch
    assert messages.index(windows[0]) > messages.index(epoch_msgs[warmup - 1])
    assert messages.index(windows[1]) > messages.index(epoch_msgs[-1])
    result = messages[-1]
    for run in result["runs"]:
        RunResult.model_validate(run)  # what the runner emits is what the schema accepts
    return result


@pytest.mark.parametrize("name", sorted(TINY))
def test_catalogue_workload_trains(name: str, tmp_path: Path) -> None:
    assert name in WORKLOADS
    rc, messages, stderr = run_job(catalogue_job(name), tmp_path)
    assert rc == 0, stderr[-3000:]
    hello = messages[0]
    assert hello["backend"] == "torch" and hello["libraries"]["torch"] == torch.__version__
    data = of_type(messages, "data")[0]
    assert data["source"] == "synthetic" and data["samples"] == TINY[name]["samples"]
    result = assert_protocol(messages)
    tiny = TINY[name]
    assert result["global_batch_size"] == result["per_device_batch_size"] == tiny["batch_size"]
    assert result["data_source"] == "synthetic"
    knobs = result["knobs"]
    assert knobs["device"] == "cpu"
    assert knobs["data_format"] == "channels_first"  # the CPU default, stated
    assert knobs["precision"] == "fp32 (no autocast)" and knobs["compile"] == "eager"
    assert knobs["optimizer_impl"] in ("fused", "foreach", "for-loop")
    assert all(isinstance(v, str) for v in knobs.values())
    run = result["runs"][0]
    assert [e["images"] for e in run["epochs"]] == [tiny["samples"]] * 2
    assert run["throughput"]["n_batches"] == tiny["samples"] // tiny["batch_size"]
    assert run["throughput"]["window_img_per_s"] > 0
    for epoch in run["epochs"]:
        assert math.isfinite(epoch["loss"]) and 0.0 <= epoch["accuracy"] <= 1.0


def test_knobs_bf16_channels_last_and_steps(tmp_path: Path) -> None:
    spec = catalogue_job("fashion-mnist-cnn", precision="bf16", data_format="channels_last")
    spec["workload"]["steps_per_epoch"] = 6  # more than the 4 batches held: wraps around
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 0, stderr[-3000:]
    result = assert_protocol(messages)
    assert result["knobs"]["precision"] == "autocast torch.bfloat16"
    assert result["knobs"]["memory_format"] == "channels_last"
    assert [e["batches"] for e in result["runs"][0]["epochs"]] == [6, 6]


def test_fp16_uses_grad_scaler_and_repeats(tmp_path: Path) -> None:
    spec = catalogue_job("fashion-mnist-mlp", precision="fp16", repeats=2)
    spec["workload"]["epochs"] = 3
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 0, stderr[-3000:]
    result = messages[-1]
    assert result["knobs"]["precision"] == "autocast torch.float16, GradScaler"
    assert [r["repeat"] for r in result["runs"]] == [1, 2]
    assert [len(r["epochs"]) for r in result["runs"]] == [3, 3]
    assert len(of_type(messages, "window")) == 4
    assert all(math.isfinite(r["loss"]) for r in result["runs"])


def test_missing_dataset_is_a_typed_error(tmp_path: Path) -> None:
    spec = job("torch", "mlp", "fashion_mnist")  # real data asked, none under the root
    rc, messages, _ = run_job(spec, tmp_path)
    assert rc == 2
    error = messages[-1]
    assert error["type"] == "error" and error["error_type"] == "DataMissing"
    assert "fashion_mnist/train-images-idx3-ubyte.gz" in error["message"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA refusal")
def test_gpu_asked_without_cuda_is_unsupported(tmp_path: Path) -> None:
    rc, messages, _ = run_job(catalogue_job("fashion-mnist-mlp", gpus=1), tmp_path)
    assert rc == 2
    assert messages[-1]["error_type"] == "Unsupported" and "CUDA" in messages[-1]["message"]


def test_cuda_oom_becomes_typed_oom() -> None:
    # No GPU here: the allocator's own exception type stands in for a real CUDA OOM.
    from edgebench.runner.errors import classify

    err = classify(torch.cuda.OutOfMemoryError("CUDA error: an illegal allocation of 2.00 GiB"))
    assert err.error_type == "OOM" and "OutOfMemoryError" in str(err) and "2.00 GiB" in str(err)


def test_models_match_keras_parameter_counts() -> None:
    # Same architecture as runner/keras_models.py: trainable + BatchNorm moving statistics
    # (Keras's count_params() includes both; torch keeps the latter as buffers).
    from edgebench.runner import torch_models

    expected = {  # keras_models.build(...).count_params(), Keras 3.15
        ("mlp", (28, 28, 1), 10): 101_770,
        ("cnn", (28, 28, 1), 10): 203_434,
        ("resnet56", (32, 32, 3), 10): 861_770,
        ("resnet50", (224, 224, 3), 1000): 25_636_712,
    }
    for (name, shape, classes), count in expected.items():
        model = torch_models.build(name, shape, classes)
        bn_stats = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
        assert sum(p.numel() for p in model.parameters()) + bn_stats == count, name
