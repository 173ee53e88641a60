"""The INA3221 rails through sysfs, on replayed trees of real layouts (Orin Nano,
Xavier NX, AGX Orin with its NC channels, a JetPack 4 Nano's IIO driver), and
the Jetson reader with the rails alone or with tegrastats beside them."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from edgebench.agent.telemetry import JetsonTelemetry, Sampler, TelemetryUnavailable
from edgebench.agent.telemetry.hwmon import discover_rails, rail_power_w, read_rails
from edgebench.agent.telemetry.jetson import sample_from_line

from .conftest import tegrastats_lines
from .jetson_sysfs import TREES, materialize, tree_doc


@pytest.mark.parametrize("stem", TREES)
def test_every_tree_gives_the_rails_tegrastats_printed(stem: str, tmp_path: Path) -> None:
    doc = tree_doc(stem)
    rails = discover_rails(materialize(stem, tmp_path))
    raw = read_rails(rails)
    watts = {name: rail_power_w(v) for name, v in raw.items()}
    assert set(watts) == set(doc["expect_mw"])  # no NC, no "sum of shunt voltages"
    for name, mw in doc["expect_mw"].items():
        assert watts[name] == pytest.approx(mw / 1000, rel=5e-3, abs=1e-3), name


def test_mainline_layout_reads_volts_and_amps(tmp_path: Path) -> None:
    (vdd_in, cpu_gpu_cv, soc) = discover_rails(materialize("hwmon_orin_nano_r36", tmp_path))
    assert (vdd_in.name, vdd_in.device, vdd_in.channel) == ("VDD_IN", "1-0040", 1)
    assert vdd_in.voltage_mv and vdd_in.voltage_mv.name == "in1_input"
    assert vdd_in.current_ma and vdd_in.current_ma.name == "curr1_input" and vdd_in.power_mw is None
    assert read_rails([vdd_in]) == {"VDD_IN": {"mv": 5048.0, "ma": 1040.0}}
    assert [cpu_gpu_cv.name, soc.name] == ["VDD_CPU_GPU_CV", "VDD_SOC"]


def test_agx_orin_two_chips_and_unreadable_nc_channels(tmp_path: Path) -> None:
    rails = discover_rails(materialize("hwmon_agx_orin_r36", tmp_path))
    assert [(r.name, r.device) for r in rails] == [
        ("VDD_GPU_SOC", "1-0040"), ("VDD_CPU_CV", "1-0040"), ("VIN_SYS_5V0", "1-0040"),
        ("VDDQ_VDD2_1V8AO", "1-0041")]
    # a rail whose file fails this time is left out of the reading, not zero
    (tmp_path / "ina3221/1-0041/hwmon/hwmon2/curr2_input").unlink()
    (tmp_path / "ina3221/1-0041/hwmon/hwmon2/curr2_input").mkdir()
    assert "VDDQ_VDD2_1V8AO" not in read_rails(rails)
    # no module-input channel: the module's power is the sum of its rails, and says so
    sample = sample_from_line(None, read_rails(rails))
    assert sample.power_scope == "sum_of_rails:VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"
    assert sample.power_w == pytest.approx(2.410 + 1.605 + 4.705)


def test_jetpack4_iio_layout_reads_milliwatts(tmp_path: Path) -> None:
    rails = discover_rails(materialize("hwmon_nano_jp4", tmp_path))
    assert [r.name for r in rails] == ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]
    assert rails[0].power_mw is not None and rails[0].device == "6-0040"
    assert read_rails(rails)["POM_5V_IN"] == {"mw": 4520.0}
    assert rail_power_w({"mv": 5000.0}) is None and rail_power_w({"mv": 5000.0, "ma": -3.0}) is None


def test_hwmon_power_wins_and_both_sources_are_kept(tmp_path: Path) -> None:
    idle = next(line for stem, line in tegrastats_lines() if stem == "tegrastats_orin_nano_r36")
    raw = read_rails(discover_rails(materialize("hwmon_orin_nano_r36", tmp_path)))
    s = sample_from_line(idle, raw)
    assert s.power_scope == "module_input:VDD_IN"
    assert s.power_w == pytest.approx(5.048 * 1.040)  # read at this tick, not tegrastats' last line
    assert {(r.name, r.source) for r in s.rails} == {
        (n, src) for n in ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC") for src in ("hwmon", "tegrastats")}
    assert sample_from_line(idle).power_w == pytest.approx(5.251)  # tegrastats alone, as before


def test_rails_alone_are_enough_for_the_jetson_reader(tmp_path: Path) -> None:
    """An agent container: /sys is there, tegrastats is not."""
    root = materialize("hwmon_xavier_nx_r35", tmp_path / "drivers")
    with JetsonTelemetry(tegrastats=str(tmp_path / "no-tegrastats"), hwmon_root=root) as tel:
        assert [r.name for r in tel.rails] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
        (gpu,) = tel.read()
        assert gpu.power_scope == "module_input:VDD_IN" and gpu.power_w == pytest.approx(2.7606, rel=1e-4)
        assert gpu.util_pct is None  # no tegrastats: no GPU load
    with pytest.raises(TelemetryUnavailable):
        JetsonTelemetry(tegrastats=str(tmp_path / "no-tegrastats"), hwmon_root=tmp_path / "empty")


def test_live_sampler_window_has_both_sources(tmp_path: Path) -> None:
    """The live path: a stand-in tegrastats printing recorded lines, the replayed tree,
    the real Sampler, a measured window; the summary has every rail of both sources."""
    busy = [line for stem, line in tegrastats_lines() if stem == "tegrastats_orin_nano_r36"][1]
    fake = tmp_path / "tegrastats"
    fake.write_text(f"#!{sys.executable}\nimport sys, time\nms = int(sys.argv[sys.argv.index('--interval') + 1])\n"
                    f"while True:\n    print({busy!r}, flush=True)\n    time.sleep(ms / 1000)\n")
    fake.chmod(0o755)
    root = materialize("hwmon_orin_nano_r36", tmp_path / "drivers")
    with JetsonTelemetry(interval_s=0.05, tegrastats=str(fake), hwmon_root=root) as tel:
        deadline = time.monotonic() + 5
        while tel.read()[0].util_pct is None and time.monotonic() < deadline:
            time.sleep(0.02)  # tegrastats' first line
        sampler = Sampler(tel, interval_s=0.05)
        import os

        sampler.start(os.getpid())
        t0 = time.time()
        sampler.mark_window("begin", t0)
        time.sleep(0.5)
        t1 = time.time()
        sampler.mark_window("end", t1)
        report = sampler.stop(window_images=1000, measured_epochs=1)
    s = report.summary
    assert s is not None and s.source == "jetson" and s.energy_scope == "module_input:VDD_IN"
    by = {(r.name, r.source): r for r in s.rails}
    assert set(by) == {(n, src) for n in ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC") for src in ("hwmon", "tegrastats")}
    window = t1 - t0
    assert by["VDD_IN", "hwmon"].energy_j == pytest.approx(5.048 * 1.040 * window, rel=0.02)
    assert by["VDD_IN", "tegrastats"].energy_j == pytest.approx(16.321 * window, rel=0.02)
    assert s.energy_j == pytest.approx(by["VDD_IN", "hwmon"].energy_j)
