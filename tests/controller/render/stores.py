"""The recorded stores the report tests read (see scripts/make_report_fixture.py).

- tests/fixtures/report_store.sqlite: two CPU devices of this machine kind
  (cpu-2core, and cpu-1core whose agent ran under ``taskset -c 0``), three
  backends (keras-jax, keras-torch, torch), real training on random data,
  2 repeats each, recorded through real agents and a real Mosquitto.
- tests/fixtures/report_store_gpu.sqlite: one NVIDIA H200 (the `device`
  machine), the same three backends on MLP, CNN and synthetic ResNet-50, NVML
  telemetry and time series, and one real CUDA out-of-memory (torch, ResNet-50
  bs 512 capped at 2 % of the card).

Tests open copies, never the fixtures themselves (SQLite writes WAL files
next to a store it opens).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from controller.store import ResultStore

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CPU_STORE = FIXTURES / "report_store.sqlite"
GPU_STORE = FIXTURES / "report_store_gpu.sqlite"
CPU_DEVICES = ("cpu-1core", "cpu-2core")
BACKENDS = ("keras-jax", "keras-torch", "torch")


def _merge(target_url: str, sources: list[Path]) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_report_fixture", Path(__file__).resolve().parents[3] / "scripts" / "make_report_fixture.py")
    assert spec and spec.loader
    module = sys.modules.get(spec.name) or importlib.util.module_from_spec(spec)
    if spec.name not in sys.modules:
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    module.merge(target_url, sources)


def copy_store(tmp: Path, gpu: bool = False, cpu: bool = True) -> ResultStore:
    """A private copy of the CPU store, the GPU store, or both merged into one."""
    path = tmp / f"report-{'cpu' if cpu else ''}{'gpu' if gpu else ''}.sqlite"
    first = CPU_STORE if cpu else GPU_STORE
    shutil.copy(first, path)
    path.chmod(0o644)
    url = f"sqlite:///{path}"
    if cpu and gpu:
        _merge(url, [GPU_STORE])
    return ResultStore(url)
