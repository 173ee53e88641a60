"""A GPU job never silently runs on the CPU, on the agent's side: validation
REJECTs ``gpus`` beyond what the backend's framework sees (from the probe);
where the agent could not know, the runner's own check FAILs the job
Unsupported; and every result records where it ran (``devices_used``).

CI has no GPU, so one test gives a real agent process a GPU through NVML
replayed from a recording made on an H200 (tests/fixtures/nvml_trace_h200.jsonl);
the frameworks themselves stay real, and CPU-only."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from edgebench.agent.config import LocalBackend
from edgebench.agent.executors import LocalExecutor, install_runner_code
from edgebench.agent.fingerprint import machine_fingerprint
from edgebench.agent.jobrun import JobRun
from edgebench.agent.validation import Rejection, check_job
from edgebench.controller.fleet import FleetClient
from edgebench.controller.plan import build_job
from edgebench.controller.store import ResultStore
from edgebench.schemas import BackendInfo, ErrorType, JobState
from tests.agent.conftest import Watcher, write_agent_config
from tests.helpers import wait_online

REPO = Path(__file__).resolve().parents[2]
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")


def _torch_job(job_id: str, gpus: int):  # type: ignore[no-untyped-def]
    return build_job({"backend": "torch", "workload": "fashion-mnist-mlp", "samples": 64, "batch_size": 16,
                      "synthetic": True, "epochs": 2, "gpus": gpus}, job_id)


def test_validation_rejects_gpus_beyond_what_the_framework_sees() -> None:
    seen = BackendInfo(backend="torch", available=True, executor="local", accelerators=0,
                       accelerator_detail="torch 2.13.0+cpu (a CPU-only build) sees no CUDA device")
    with pytest.raises(Rejection) as info:
        check_job(_torch_job("j", 1), {"torch": seen}, gpu_count=1)
    assert info.value.field == "gpus" and "a CPU-only build" in info.value.reason
    check_job(_torch_job("j0", 0), {"torch": seen}, gpu_count=1)  # a CPU job is fine
    unknown = seen.model_copy(update={"accelerators": None})
    check_job(_torch_job("j1", 1), {"torch": unknown}, gpu_count=1)  # not probed: the runner checks


def _jobrun(tmp_path: Path, job, env: dict[str, str]) -> JobRun:  # type: ignore[no-untyped-def]
    return JobRun(job=job, attempt=1, device_id="box",
                  executor=LocalExecutor(LocalBackend(python=sys.executable), install_runner_code(tmp_path / "code")),
                  job_dir=tmp_path / job.job_id, dataset_root=tmp_path,
                  fingerprint=lambda libs: machine_fingerprint(libs, []), on_progress=lambda p: None, env=env)


@needs_torch
@pytest.mark.slow
def test_the_runner_fails_a_gpu_job_the_agent_let_through(tmp_path: Path) -> None:
    # the agent's own job path, as the daemon runs it, with the GPU it would have chosen
    outcome = _jobrun(tmp_path, _torch_job("j-gpu", 1), {"CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                                                         "CUDA_VISIBLE_DEVICES": "0"}).run()
    assert outcome.state is JobState.FAILED and outcome.error_type is ErrorType.UNSUPPORTED, outcome
    assert (outcome.reason or "").startswith("gpus: gpus=1 but torch ")
    assert "sees no CUDA device" in (outcome.reason or "")
    cpu = _jobrun(tmp_path, _torch_job("j-cpu", 0), {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}).run()
    assert cpu.state is JobState.SUCCEEDED, cpu.reason
    assert cpu.result is not None and cpu.result.devices_used is not None
    assert (cpu.result.devices_used.framework, cpu.result.devices_used.kind) == ("torch", "cpu")


# A pynvml stand-in for the agent process: the recorded H200 (one GPU).
FAKE_PYNVML = '''
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.agent.telemetry.recorded_nvml import RecordedNvml, NVMLError, NVMLError_NotSupported

_start = time.monotonic()
_nvml = RecordedNvml(Path({trace!r}), lambda: (time.monotonic() - _start) % max(_nvml.duration_s, 1.0))


def __getattr__(name):
    return getattr(_nvml, name)
'''


@needs_torch
@pytest.mark.slow
def test_a_real_agent_with_a_gpu_rejects_a_gpu_job_its_framework_cannot_see(
        start_agent, controller_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    fake = tmp_path / "fake-nvml"
    fake.mkdir()
    (fake / "pynvml.py").write_text(FAKE_PYNVML.format(repo=str(REPO),
                                                       trace=str(REPO / "tests/fixtures/nvml_trace_h200.jsonl")))
    monkeypatch.setenv("PYTHONPATH", str(fake))  # the agent's; runners never inherit PYTHONPATH
    config = write_agent_config(tmp_path / "agent.yaml", telemetry="nvml",
                                backends={"torch": {"executor": "local"}, "sleep": {"executor": "local"}})
    agent = start_agent("gpubox", config=config)
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fleet:
        status = wait_online(fleet, "gpubox", agents=[agent])["gpubox"]
        assert [g.name for g in status.gpus] and "H200" in status.gpus[0].name
        torch_info = next(b for b in status.backends if b.backend == "torch")
        assert torch_info.accelerators == 0 and torch_info.accelerator_detail
        watcher = Watcher(fleet)
        watcher.dispatch("gpubox", _torch_job("j-gpu-rejected", 1), _torch_job("j-cpu-ok", 0))
        rejected = watcher.wait_for("j-gpu-rejected", {JobState.REJECTED}, 60, agent)
        assert rejected.field == "gpus" and "sees 0 here" in (rejected.reason or ""), rejected
        ok = watcher.wait_for("j-cpu-ok", {JobState.SUCCEEDED, JobState.FAILED}, 300, agent)
        assert ok.state is JobState.SUCCEEDED, ok.reason
        assert ok.result is not None and ok.result.devices_used is not None
        assert ok.result.devices_used.kind == "cpu" and ok.result.devices_used.framework == "torch"
