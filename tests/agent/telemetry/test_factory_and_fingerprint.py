"""The factory on this CPU-only machine, and the fingerprint."""

from __future__ import annotations

import shutil

import pytest

from edgebench.agent.fingerprint import gpu_inventory, machine_fingerprint
from edgebench.agent.telemetry import NoGpuTelemetry, ReplayTelemetry, TelemetryUnavailable, create_telemetry

from .conftest import nvml_traces


def test_auto_falls_back_to_none_without_gpu() -> None:
    if shutil.which("nvidia-smi") or shutil.which("tegrastats"):
        pytest.skip("this test describes a machine without GPU tools")
    with create_telemetry("auto") as tel:
        assert isinstance(tel, NoGpuTelemetry) and tel.source == "none"
        assert tel.read() == () and tel.inventory() == []


def test_explicit_kinds_fail_loudly_where_they_cannot_run() -> None:
    if shutil.which("nvidia-smi") or shutil.which("tegrastats"):
        pytest.skip("this test describes a machine without GPU tools")
    with pytest.raises(TelemetryUnavailable):
        create_telemetry("nvml")
    with pytest.raises(TelemetryUnavailable):
        create_telemetry("jetson")
    assert create_telemetry("none").source == "none"
    with pytest.raises(ValueError):
        create_telemetry("cuda")  # type: ignore[arg-type]


def test_fingerprint_of_this_machine_with_recorded_gpus() -> None:
    gpus = gpu_inventory(ReplayTelemetry(nvml_traces()[0]))
    fp = machine_fingerprint({"keras": "3.15.0"}, gpus, container_image="img", container_digest="sha256:00")
    assert fp.gpus == gpus and fp.libraries == {"keras": "3.15.0"}
    assert fp.cpu_cores_logical >= 1 and fp.ram_bytes > 0
    assert fp.cpu_model and fp.os and fp.kernel and fp.python.count(".") == 2
    assert fp.agent_version
    assert fp.container_digest == "sha256:00"
    assert gpu_inventory(NoGpuTelemetry()) == []
