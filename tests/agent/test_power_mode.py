"""The power_mode knob against a stand-in nvpmodel on PATH (no Jetson here):
the mode is set for the job and restored after it, only where the agent's
config allows it; a mode that needs a reboot fails the job and leaves the
board alone; a mode that moves during the job marks the result. The parsers
run on the real tools' output formats (tests/agent/jetson_tools.py says where
each comes from)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebench.agent.jobrun import JobOutcome
from edgebench.agent.power_mode import (
    PowerModeControl,
    PowerModeError,
    job_power_mode,
    parse_jetson_clocks,
    parse_nvpmodel_conf,
    parse_nvpmodel_query,
    parse_status_file,
    power_mode_changed,
    read_power_mode,
    run_in_power_mode,
)
from edgebench.schemas import ErrorType, JobState
from edgebench.schemas.power import PowerMode
from tests.agent.conftest import sleep_backend, write_agent_config
from tests.agent.jetson_tools import FakeJetsonTools
from tests.helpers import sleep_job, wait_online


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeJetsonTools:
    fake = FakeJetsonTools(tmp_path / "bin", mode=2)
    monkeypatch.setenv("PATH", f"{fake.bin}:{__import__('os').environ['PATH']}")
    return fake


def control(tmp_path: Path) -> PowerModeControl:
    # the status file and conf of a box without them: reads go to nvpmodel on PATH
    return PowerModeControl(status_file=tmp_path / "no-status", conf_file=tmp_path / "no-conf")


# -- parsing the real formats -------------------------------------------------------
def test_parse_nvpmodel_query_skips_warnings() -> None:
    assert parse_nvpmodel_query("NVPM WARN: fan mode is not set!\nNV Power Mode: MAXN_SUPER\n2\n") == \
        PowerMode(id=2, name="MAXN_SUPER")
    assert parse_nvpmodel_query("NV Power Mode: MODE_15W\n2") == PowerMode(id=2, name="MODE_15W")
    assert parse_nvpmodel_query("NVPM WARN: fan mode is not set to cool\nNV Power Mode: MAXN\n0") == \
        PowerMode(id=0, name="MAXN")
    assert parse_nvpmodel_query("nvpmodel: permission denied") is None
    assert parse_nvpmodel_query("NV Power Mode: MAXN\nnot-a-number") is None


def test_parse_status_file_and_conf() -> None:
    assert parse_status_file("pmode:0002\n") == 2
    assert parse_status_file("pmode:0000 fmode:quiet") == 0
    assert parse_status_file("") is None
    conf = ("< PM_CONFIG DEFAULT=2 >\n< POWER_MODEL ID=0 NAME=15W >\nCPU_ONLINE CORE_0 1\n"
            "< POWER_MODEL ID=1 NAME=25W >\n< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n< POWER_MODEL ID=3 NAME=7W >\n")
    assert parse_nvpmodel_conf(conf) == {0: "15W", 1: "25W", 2: "MAXN_SUPER", 3: "7W"}


def test_parse_jetson_clocks_show() -> None:
    # TX2 (jetson_stats' emulator, from a real board): cores 1, 2 offline, clocks not pinned
    tx2 = """SOC family:tegra186  Machine:quill
Online CPUs: 0,3-5
cpu0: Online=1 Governor=schedutil MinFreq=345600 MaxFreq=2035200 CurrentFreq=2035200 IdleStates: C1=1 c7=1
cpu1: Online=0 Governor=schedutil MinFreq=345600 MaxFreq=2035200 CurrentFreq=1113600 IdleStates: C1=1 c6=1 c7=1
cpu3: Online=1 Governor=schedutil MinFreq=345600 MaxFreq=2035200 CurrentFreq=1881600 IdleStates: C1=1 c7=1
GPU MinFreq=114750000 MaxFreq=1134750000 CurrentFreq=114750000
EMC MinFreq=40800000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=0
Fan: speed=0
NV Power Mode: MAXP_CORE_ARM
"""
    c = parse_jetson_clocks(tx2)
    assert c is not None and not c.locked and c.cpu_locked is False and c.emc_override is False
    assert (c.gpu_min_mhz, c.gpu_max_mhz, c.gpu_cur_mhz) == (114.75, 1134.75, 114.75)
    # TX1 after jetson_clocks (hordiales/jetson-tx1-dev, a real capture): every floor at its ceiling
    tx1 = """SOC family:tegra210  Machine:jetson_tx1
cpu0: Gonvernor=interactive MinFreq=1734000 MaxFreq=1734000 CurrentFreq=1734000
cpu1: Gonvernor=interactive MinFreq=1734000 MaxFreq=1734000 CurrentFreq=1734000
GPU MinFreq=998400000 MaxFreq=998400000 CurrentFreq=998400000
EMC MinFreq=12750000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
"""
    locked = parse_jetson_clocks(tx1)
    assert locked is not None and locked.locked and locked.cpu_locked and locked.emc_override
    assert parse_jetson_clocks("Please run as root") is None


def test_read_falls_back_to_the_status_file(tmp_path: Path) -> None:
    (tmp_path / "status").write_text("pmode:0001 fmode:quiet\n")
    (tmp_path / "nvpmodel.conf").write_text("< POWER_MODEL ID=1 NAME=25W >\n")
    ctl = PowerModeControl(nvpmodel=str(tmp_path / "absent"), status_file=tmp_path / "status",
                           conf_file=tmp_path / "nvpmodel.conf")
    assert ctl.read() == (PowerMode(id=1, name="25W"), "status_file")
    assert read_power_mode(PowerModeControl(nvpmodel=str(tmp_path / "absent"), status_file=tmp_path / "x")) is None


# -- set and restore ----------------------------------------------------------------
def test_job_runs_in_its_mode_and_the_previous_one_comes_back(tools: FakeJetsonTools, tmp_path: Path) -> None:
    seen_during: list[int] = []

    def job() -> JobOutcome:
        seen_during.append(tools.mode)
        return JobOutcome(JobState.SUCCEEDED)

    outcome = run_in_power_mode(job, requested=0, allowed=True, control=control(tmp_path))
    assert outcome.state is JobState.SUCCEEDED
    assert seen_during == [0]  # the job ran in 15W
    assert tools.sets() == [0, 2]  # set, then restored to MAXN_SUPER
    assert tools.mode == 2


def test_the_record_says_what_happened(tools: FakeJetsonTools, tmp_path: Path) -> None:
    with job_power_mode(1, True, control(tmp_path)) as seen:
        pass
    record = seen.record()
    assert record is not None
    assert record.requested == 1 and record.set_by_agent and record.restored is True and not record.changed
    assert record.before == PowerMode(id=2, name="MAXN_SUPER")
    assert record.during == record.after == PowerMode(id=1, name="25W")
    assert power_mode_changed(record) is None


def test_nothing_is_set_when_the_board_is_already_in_that_mode(tools: FakeJetsonTools, tmp_path: Path) -> None:
    with job_power_mode(2, True, control(tmp_path)) as seen:
        pass
    assert tools.sets() == []
    record = seen.record()
    assert record is not None and not record.set_by_agent and record.restored is None


def test_not_allowed_fails_the_job_without_touching_the_board(tools: FakeJetsonTools, tmp_path: Path) -> None:
    ran = []
    outcome = run_in_power_mode(lambda: ran.append(1) or JobOutcome(JobState.SUCCEEDED), requested=0,
                                allowed=False, control=control(tmp_path))
    assert outcome.state is JobState.FAILED and outcome.error_type is ErrorType.UNSUPPORTED
    assert "allow_power_mode" in (outcome.reason or "")
    assert not ran and tools.calls() == []


def test_a_mode_that_needs_a_reboot_is_refused_and_the_board_left_alone(tools: FakeJetsonTools,
                                                                       tmp_path: Path) -> None:
    outcome = run_in_power_mode(lambda: JobOutcome(JobState.SUCCEEDED), requested=3, allowed=True,
                                control=control(tmp_path))
    assert outcome.state is JobState.FAILED and "needs a reboot" in (outcome.reason or "")
    assert tools.mode == 2 and tools.sets() == [3]  # asked once, answered "no", nothing restored


def test_a_mode_that_does_not_take_effect_is_an_error(tools: FakeJetsonTools, tmp_path: Path) -> None:
    tools.refuse()
    with pytest.raises(PowerModeError, match="did not take effect"), job_power_mode(0, True, control(tmp_path)):
        pass


def test_a_mode_change_during_the_job_marks_the_result(tools: FakeJetsonTools, tmp_path: Path) -> None:
    def job() -> JobOutcome:
        tools.mode = 1  # someone runs nvpmodel -m 1 while the job runs
        return JobOutcome(JobState.SUCCEEDED)

    with job_power_mode(0, True, control(tmp_path)) as seen:
        job()
    record = seen.record()
    assert record is not None and record.changed
    assert power_mode_changed(record) == "power mode changed during the run: 0 (15W) -> 1 (25W)"
    assert tools.sets() == [0, 2]  # still restored to what was there before the job


def test_a_failed_restore_is_recorded_not_raised(tools: FakeJetsonTools, tmp_path: Path) -> None:
    with job_power_mode(0, True, control(tmp_path)) as seen:
        tools.refuse()
    record = seen.record()
    assert record is not None and record.restored is False and tools.mode == 0


def test_off_a_jetson_nothing_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvpmodel
    outcome = run_in_power_mode(lambda: JobOutcome(JobState.SUCCEEDED), None, False, control(tmp_path))
    assert outcome.state is JobState.SUCCEEDED
    failed = run_in_power_mode(lambda: JobOutcome(JobState.SUCCEEDED), 0, True, control(tmp_path))
    assert failed.state is JobState.FAILED and "nvpmodel is not on this agent's PATH" in (failed.reason or "")


# -- through a real agent and broker --------------------------------------------------
def test_agent_sets_the_jobs_mode_records_it_and_restores(tools, start_agent, watcher, tmp_path) -> None:
    config = write_agent_config(tmp_path / "agent.yaml", backends=sleep_backend(), allow_power_mode=True)
    agent = start_agent("box1", config=config)
    wait_online(watcher.fc, "box1", agents=[agent])
    watcher.dispatch("box1", sleep_job("j-15w", power_mode=0))
    ev = watcher.wait_for("j-15w", {JobState.SUCCEEDED, JobState.FAILED}, 60, agent)
    assert ev.state is JobState.SUCCEEDED, (ev.reason, agent.log()[-2000:])
    assert tools.sets() == [0, 2] and tools.mode == 2
    assert ev.result is not None and ev.result.job.power_mode == 0
    pm = ev.result.power_mode
    assert pm is not None and pm.during == PowerMode(id=0, name="15W") and pm.restored and not pm.changed


def test_agent_that_does_not_allow_it_fails_the_job(tools, start_agent, watcher, tmp_path) -> None:
    config = write_agent_config(tmp_path / "agent.yaml", backends=sleep_backend())
    agent = start_agent("box1", config=config)
    wait_online(watcher.fc, "box1", agents=[agent])
    watcher.dispatch("box1", sleep_job("j-no", power_mode=0))
    ev = watcher.wait_for("j-no", {JobState.SUCCEEDED, JobState.FAILED}, 60, agent)
    assert ev.state is JobState.FAILED and ev.error_type is ErrorType.UNSUPPORTED
    assert "allow_power_mode" in (ev.reason or "")
    assert tools.sets() == [] and tools.mode == 2


# -- the fingerprint ---------------------------------------------------------------------
def test_fingerprint_records_the_mode_and_the_clocks_on_a_jetson(tools, monkeypatch) -> None:
    import edgebench.agent.fingerprint as fingerprint

    monkeypatch.setattr(fingerprint, "is_jetson", lambda: True)
    monkeypatch.setattr(fingerprint, "l4t_release", lambda: "L4T R36.4")
    fp = fingerprint.machine_fingerprint({}, [])
    assert fp.arch and fp.jetson is not None
    assert fp.jetson.l4t == "L4T R36.4" and fp.jetson.power_mode_source == "nvpmodel"
    assert fp.jetson.power_mode == PowerMode(id=2, name="MAXN_SUPER")
    clocks = fp.jetson.clocks
    assert clocks is not None and not clocks.locked and clocks.cpu_locked is False
    assert (clocks.gpu_min_mhz, clocks.gpu_max_mhz) == (306.0, 1020.0) and clocks.emc_override is False
    monkeypatch.setattr(fingerprint, "is_jetson", lambda: False)
    assert fingerprint.machine_fingerprint({}, []).jetson is None
