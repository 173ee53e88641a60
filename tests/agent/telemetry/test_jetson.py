"""tegrastats parsing on real lines from several Jetson modules, and the live reader."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from edgebench.agent.telemetry import JetsonTelemetry, TelemetryUnavailable, parse_tegrastats_line
from edgebench.agent.telemetry.jetson import MIB, sample_from_line

from .conftest import FIXTURES, tegrastats_lines


def first_line(stem: str) -> str:
    return next(line for name, line in tegrastats_lines() if name == stem)


@pytest.mark.parametrize(("stem", "line"), tegrastats_lines(), ids=lambda v: v if len(v) < 40 else "")
def test_every_fixture_line_parses_to_something_sane(stem: str, line: str) -> None:
    r = parse_tegrastats_line(line)
    assert r.ram_used_bytes is not None and r.ram_total_bytes is not None
    assert 0 < r.ram_used_bytes < r.ram_total_bytes
    assert r.cpu_load_pct and all(v is None or 0 <= v <= 100 for v in r.cpu_load_pct)
    assert r.emc_util_pct is not None and 0 <= r.emc_util_pct <= 100
    assert r.gpu_util_pct is None or 0 <= r.gpu_util_pct <= 100
    assert r.total_power_mw is not None and r.total_power_mw > 0
    assert r.gpu_temperature_c is not None and 0 < r.gpu_temperature_c < 110
    assert not {"RAM", "SWAP", "NC"} & set(r.rails)


def test_orin_nano_busy_line() -> None:
    busy = [line for name, line in tegrastats_lines() if name == "tegrastats_orin_nano_r36"][1]
    r = parse_tegrastats_line(busy)
    assert r.gpu_util_pct == 99.0
    assert r.gpu_freq_mhz == 612.0
    assert (r.emc_util_pct, r.emc_freq_mhz) == (61.0, 2133.0)
    assert r.ram_used_bytes == 6712 * MIB and r.ram_total_bytes == 7620 * MIB
    assert r.swap_used_bytes == 369 * MIB
    assert r.cpu_load_pct == (38.0, 2.0, 1.0, 0.0, 1.0, 0.0)
    # current, not the running average, is the reading
    assert r.rails["VDD_IN"].current_mw == 16321 and r.rails["VDD_IN"].average_mw == 11204
    assert r.total_power_mw == 16321 and r.power_scope == "module_input:VDD_IN"
    assert r.gpu_temperature_c == 58.625
    s = sample_from_line(busy)
    assert s.util_pct == 99.0 and s.sm_clock_mhz == 612.0 and s.power_w == pytest.approx(16.321)
    assert s.process_mem_bytes is None and s.energy_mj is None and s.clock_event_reasons is None


def test_agx_orin_has_no_input_rail_so_rails_are_summed() -> None:
    r = parse_tegrastats_line(first_line("tegrastats_agx_orin_r36"))
    assert set(r.rails) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"}
    assert r.total_power_mw == 2412 + 1607 + 4707
    assert r.power_scope == "sum_of_rails:VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"
    assert r.gpu_power_mw == 2412
    assert r.gpu_freq_mhz == 0.0 and r.gpu_util_pct == 0.0  # both GPCs idle-gated
    assert r.gpu_temperature_c == 52.562  # no gpu sensor printed: junction temperature
    assert len(r.cpu_load_pct) == 12


def test_r35_powered_down_gpu_sensor_and_nc_rails() -> None:
    r = parse_tegrastats_line(first_line("tegrastats_agx_orin_r35"))
    assert r.temperatures_c["GPU"] == -256.0
    assert r.gpu_temperature_c == 44.343  # -256 C means off: fall back to tj
    assert "NC" not in r.rails and r.rails["VDDQ_VDD2_1V8AO"].current_mw == 301


def test_thor_prints_no_gpu_load_which_is_none_not_zero() -> None:
    r = parse_tegrastats_line(first_line("tegrastats_thor_r38"))
    assert r.gpu_util_pct is None
    assert r.gpu_freq_mhz == 0.0
    assert r.emc_freq_mhz == 665.0
    assert len(r.cpu_load_pct) == 14
    assert sample_from_line(first_line("tegrastats_thor_r38")).util_pct is None


def test_jetpack4_rails_without_unit_and_clock_without_brackets() -> None:
    r = parse_tegrastats_line(first_line("tegrastats_nano_jp4"))
    assert r.gpu_freq_mhz == 76.0
    assert r.rails["POM_5V_IN"].current_mw == 4520 and r.rails["POM_5V_IN"].average_mw == 4680
    assert r.power_scope == "module_input:POM_5V_IN"
    assert r.gpu_power_mw == 0
    tx2 = parse_tegrastats_line(first_line("tegrastats_tx2_jp4"))
    assert tx2.emc_freq_mhz is None and tx2.gpu_freq_mhz is None  # not printed without root
    assert tx2.total_power_mw == 1649 and tx2.gpu_power_mw == 153


def test_xavier_nx() -> None:
    r = parse_tegrastats_line(first_line("tegrastats_xavier_nx_r35"))
    assert (r.gpu_util_pct, r.gpu_freq_mhz) == (0.0, 114.0)
    assert r.total_power_mw == 2763 and r.gpu_power_mw is None  # VDD_CPU_GPU_CV is shared, not GPU-only
    assert r.gpu_temperature_c == 45.5


def test_garbage_gives_all_none() -> None:
    r = parse_tegrastats_line("tegrastats: permission denied")
    assert r.ram_used_bytes is None and r.gpu_util_pct is None and r.total_power_mw is None
    assert sample_from_line(None).power_w is None


def test_missing_tegrastats_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(TelemetryUnavailable):
        JetsonTelemetry(tegrastats=str(tmp_path / "no-such-tegrastats"))


def test_live_reader_over_a_replayed_tegrastats(tmp_path: Path) -> None:
    """The subprocess path, with a stand-in tegrastats that prints recorded lines (no Jetson here)."""
    lines = [line for name, line in tegrastats_lines() if name == "tegrastats_orin_nano_r36"]
    fake = tmp_path / "tegrastats"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        "ms = int(sys.argv[sys.argv.index('--interval') + 1])\n"
        f"lines = {lines!r}\n"
        "i = 0\n"
        "while True:\n"
        "    print(lines[i % len(lines)], flush=True)\n"
        "    i += 1\n"
        "    time.sleep(ms / 1000)\n"
    )
    fake.chmod(0o755)
    with JetsonTelemetry(interval_s=0.05, tegrastats=str(fake)) as tel:
        assert tel.source == "jetson"
        deadline = time.monotonic() + 5
        seen: set[float] = set()
        while time.monotonic() < deadline and len(seen) < 2:
            (gpu,) = tel.read()
            if gpu.util_pct is not None:
                seen.add(gpu.util_pct)
            time.sleep(0.02)
        assert seen == {0.0, 99.0}
        (info,) = tel.inventory()
        assert info.index == 0 and info.mem_total_bytes and info.mem_total_bytes > 0
    assert FIXTURES.is_dir()
