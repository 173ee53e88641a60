"""benchmarks/gpu_telemetry_check.py runs end to end on a CPU box (its GPU parts run on the H200)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_telemetry_check.py"


def test_cost_measurement_with_none_telemetry(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--telemetry", "none", "--cost-seconds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "sampler cost at 10 Hz (none)" in out.stdout
    result = json.loads((tmp_path / "gpu_telemetry_check.json").read_text())
    assert result["telemetry"] == "none" and result["workload"] == "cpu"
    cost = result["cost"]
    assert cost["ticks"] >= 10 and cost["wall_s"] > 1
    assert 0 <= cost["cpu_pct_of_core"] < 10
