"""The agent's command line as an operator meets it: one-line errors, the real
version, --json documents, what ``agent info`` says about telemetry and GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgebench.common.version import edgebench_version

AGENT = [sys.executable, "-m", "edgebench.agent.cli"]


def _agent(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBENCH_")}
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=120, check=False,
                          env={**clean, "COLUMNS": "200", **env})


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--broker", "mqtt://127.0.0.1:1"], "error: no device id: give --device-id"),
    (["run", "--device-id", "box", "--log-level", "LOUD"], "error: unknown --log-level 'LOUD'"),
    (["run", "--device-id", "a/b"], "error: invalid agent configuration: device_id: String should match"),
])
def test_configuration_errors_are_one_line(args: list[str], message: str) -> None:
    proc = _agent(*args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr and "validation error" not in proc.stderr


def test_version() -> None:
    proc = _agent("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"agent (edgebench) {edgebench_version()}"


def test_device_id_from_the_environment(tmp_path: Path) -> None:
    proc = _agent("info", "--json", "--state-dir", str(tmp_path), EDGEBENCH_DEVICE_ID="env-box")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"]["device_id"] == "env-box"
    assert doc["status"]["agent_version"] == edgebench_version() != "0+unknown"


def test_info_names_the_telemetry_source_and_why_nvml_is_unavailable(tmp_path: Path) -> None:
    proc = _agent("info", "--json", "--state-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    telemetry = doc["telemetry"]
    assert telemetry["configured"] == "auto" and telemetry["source"] in ("nvml", "jetson", "none")
    if telemetry["source"] != "nvml":  # CI has no GPU: the reason is the driver's own words
        assert telemetry["nvml_unavailable"] and "NVML" in telemetry["nvml_unavailable"]
    backends = {b["backend"]: b for b in doc["status"]["backends"]}
    assert "accelerators" in backends["sleep"] and "accelerator_detail" in backends["sleep"]
    table = _agent("info", "--state-dir", str(tmp_path))
    assert "GPUs the framework sees" in table.stdout
    assert f"telemetry: {telemetry['source']}" in table.stdout


def test_datasets_json(tmp_path: Path) -> None:
    (tmp_path / "fashion_mnist").mkdir()
    proc = _agent("datasets", "--json", "--dataset-root", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    entries = {e["dataset"]: e for e in json.loads(proc.stdout)}
    assert entries["fashion_mnist"]["present"] is False
    assert entries["fashion_mnist"]["paths"][0].startswith(str(tmp_path))
    assert entries["synthetic_imagenet"]["always_synthetic"] is True
