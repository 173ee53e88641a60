"""The Jetson power state read for the validity record at each window edge
(Telemetry.device_state): the nvpmodel mode (status file first, no process) and
whether jetson_clocks pinned the clocks (sysfs floors at their ceilings), and a
mode change inside a window making the result suspect, through the live Sampler
and the report engineer's validity record."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edgebench.agent.telemetry import JetsonTelemetry, Sampler
from edgebench.agent.telemetry.jetson_power import PowerModeControl, clocks_pinned, device_state
from tests.agent.jetson_tools import FakeJetsonTools

from .jetson_sysfs import materialize


def fake_sys(root: Path, gpu: tuple[int, int], cpus: list[tuple[int, int]], name: str = "17000000.gpu") -> Path:
    """The sysfs files jetson_clocks changes: the iGPU's devfreq and each CPU's cpufreq floor/ceiling."""
    d = root / "class" / "devfreq" / name
    d.mkdir(parents=True)
    (d / "min_freq").write_text(f"{gpu[0]}\n")
    (d / "max_freq").write_text(f"{gpu[1]}\n")
    for i, (lo, hi) in enumerate(cpus):
        c = root / "devices" / "system" / "cpu" / f"cpu{i}" / "cpufreq"
        c.mkdir(parents=True)
        (c / "scaling_min_freq").write_text(f"{lo}\n")
        (c / "scaling_max_freq").write_text(f"{hi}\n")
    return root


def test_clocks_pinned_reads_the_floors(tmp_path: Path) -> None:
    # Orin Nano (JetPack 6: 17000000.gpu), DVFS: 306 MHz floor, 1020 MHz ceiling
    assert clocks_pinned(fake_sys(tmp_path / "a", (306000000, 1020000000), [(729600, 1728000)] * 6)) is False
    # after jetson_clocks: every floor raised to its ceiling
    assert clocks_pinned(fake_sys(tmp_path / "b", (1020000000,) * 2, [(1728000, 1728000)] * 6)) is True
    # a Xavier (17000000.gv11b) whose GPU is pinned but one CPU is not
    assert clocks_pinned(fake_sys(tmp_path / "c", (1377000000,) * 2, [(1190400, 1190400), (1190400, 2265600)],
                                  "17000000.gv11b")) is False
    assert clocks_pinned(tmp_path / "nothing") is None  # not a Jetson


def test_device_state_prefers_the_status_file(tmp_path: Path) -> None:
    (tmp_path / "status").write_text("pmode:0000 fmode:quiet\n")
    (tmp_path / "nvpmodel.conf").write_text("< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n")
    tools = FakeJetsonTools(tmp_path / "bin", mode=2)  # would say MAXN_SUPER
    ctl = PowerModeControl(nvpmodel=str(tools.bin / "nvpmodel"), status_file=tmp_path / "status",
                           conf_file=tmp_path / "nvpmodel.conf")
    sysfs = fake_sys(tmp_path / "sys", (1020000000,) * 2, [(1728000, 1728000)])
    assert device_state(ctl, sysfs) == {"nvpmodel_mode": "15W (0)", "jetson_clocks": True}
    assert tools.calls() == []  # no process at a window edge
    # no status file (an agent container without it mounted): nvpmodel -q
    ctl.status_file = tmp_path / "absent"
    assert device_state(ctl, tmp_path / "nothing") == {"nvpmodel_mode": "MAXN_SUPER (2)"}
    assert device_state(PowerModeControl(nvpmodel=str(tmp_path / "absent"), status_file=tmp_path / "absent"),
                        tmp_path / "nothing") == {}


def test_a_mode_change_inside_the_window_makes_the_result_suspect(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tools = FakeJetsonTools(tmp_path / "bin", mode=2)
    monkeypatch.setenv("PATH", f"{tools.bin}:{os.environ['PATH']}")
    sysfs = fake_sys(tmp_path / "sys", (306000000, 1020000000), [(729600, 1728000)] * 2)
    root = materialize("hwmon_orin_nano_r36", tmp_path / "drivers")
    with JetsonTelemetry(interval_s=0.05, tegrastats=str(tmp_path / "none"), hwmon_root=root,
                         sys_root=sysfs) as tel:
        sampler = Sampler(tel, interval_s=0.05)
        sampler.start(os.getpid())
        sampler.mark_window("begin", time.time())
        time.sleep(0.3)
        tools.mode = 0  # someone runs nvpmodel -m 0 inside the window
        time.sleep(0.2)
        sampler.mark_window("end", time.time())
        report = sampler.stop(window_images=100, measured_epochs=1)
    summary = report.summary
    assert summary is not None and summary.validity is not None
    v = summary.validity
    assert v.jetson is not None and v.jetson.nvpmodel_changed is True and v.jetson.jetson_clocks is False
    assert v.jetson.nvpmodel_mode == "15W (0)"
    assert v.verdict == "suspect"
    assert any("MAXN_SUPER (2) -> 15W (0)" in r for r in v.reasons), v.reasons
    assert any("jetson_clocks off" in n for n in v.notes), v.notes
