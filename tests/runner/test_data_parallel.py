"""Data parallelism on the CPU: torch DDP over gloo with 2 processes, and
Keras-JAX DataParallel over 2 virtual CPU devices. Per-device and global batch
sizes are recorded and never confused; img/s is global."""

from __future__ import annotations

import os

import pytest

from tests.runner.runjob import job, of_type, run_job


def _check(messages, per_device: int, world: int, samples: int) -> dict:
    [result] = of_type(messages, "result")
    assert result["per_device_batch_size"] == per_device
    assert result["global_batch_size"] == per_device * world
    [run] = result["runs"]
    measured = [e for e in run["epochs"] if not e["warmup"]]
    assert measured[0]["images"] == samples  # every sample once per epoch, across all ranks
    assert measured[0]["batches"] == samples // (per_device * world)
    return result


def test_torch_ddp_gloo_two_processes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEBENCH_CPU_WORLD_SIZE", "2")
    spec = job("torch", "mlp", "fashion_mnist", workload={"batch_size": 16, "samples": 512, "synthetic": True})
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 0, stderr[-3000:]
    result = _check(messages, 16, 2, 512)
    assert "DistributedDataParallel, 2 processes (gloo)" in result["knobs"]["device"]
    # only rank 0 speaks: one hello, one result
    assert len(of_type(messages, "hello")) == 1


@pytest.mark.slow
def test_keras_jax_data_parallel_on_virtual_devices(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEBENCH_VIRTUAL_CPU_DEVICES", "1")
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    monkeypatch.setenv("XLA_FLAGS", flags.strip())
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    spec = job("keras-jax", "mlp", "fashion_mnist", gpus=2,
               workload={"batch_size": 16, "samples": 512, "synthetic": True})
    rc, messages, stderr = run_job(spec, tmp_path)
    assert rc == 0, stderr[-3000:]
    result = _check(messages, 16, 2, 512)
    assert "DataParallel over 2 cpu devices" in result["knobs"]["distribution"]
    # the weights really are replicated on both devices (a clear_session() once undid this)
    assert result["knobs"]["variable_devices"] == "2"


def test_keras_torch_multi_gpu_is_refused_naming_gpus(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEBENCH_VIRTUAL_CPU_DEVICES", "1")
    spec = job("keras-torch", "mlp", "fashion_mnist", gpus=2, workload={"samples": 64, "synthetic": True})
    rc, messages, _ = run_job(spec, tmp_path)
    [err] = of_type(messages, "error")
    assert rc == 2 and err["error_type"] == "Unsupported" and err["message"].startswith("gpus:")
