"""The pure summary functions, on hand-built snapshot lists with known answers."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import pytest

from edgebench.agent.telemetry import GpuSample, ProcessSample, Snapshot, build_timeseries, summarize
from edgebench.agent.telemetry.summary import integrate, percentile, stat, window_energy_j


def snaps(power_w: Sequence[float], energy_mj: Sequence[float | None] | None = None, dt: float = 1.0) -> list[Snapshot]:
    out = []
    for k, p in enumerate(power_w):
        e = None if energy_mj is None else energy_mj[k]
        out.append(
            Snapshot(
                t=100.0 + k * dt,
                gpus=(GpuSample(index=0, util_pct=float(k), power_w=p, energy_mj=e),),
                process=ProcessSample(pids=frozenset({1}), cpu_pct=10.0 * k, rss_bytes=1000 + k),
            )
        )
    return out


@pytest.mark.parametrize("q", [5, 50, 95])
def test_percentile_is_the_linear_inclusive_definition(q: int) -> None:
    # numpy's default method is statistics' "inclusive" one
    values = sorted([3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0])
    assert percentile(values, q) == pytest.approx(statistics.quantiles(values, n=100, method="inclusive")[q - 1])
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 9.0


def test_stat_ignores_none_and_is_none_when_empty() -> None:
    s = stat([1.0, None, 3.0])
    assert s is not None and (s.mean, s.p50, s.max) == (2.0, 2.0, 3.0)
    assert stat([None, None]) is None


def test_integrate_trapezoid_with_interpolated_edges() -> None:
    ts, vs = [0.0, 1.0, 2.0], [0.0, 10.0, 10.0]
    assert integrate(ts, vs, 0.0, 2.0) == pytest.approx(15.0)
    assert integrate(ts, vs, 0.5, 1.5) == pytest.approx(0.5 * (5 + 10) / 2 + 0.5 * 10)  # edge value 5 interpolated
    assert integrate(ts, vs, -5.0, 0.0) is None  # no overlap
    assert integrate([0.0], [1.0], 0, 1) is None


def test_only_in_window_samples_count() -> None:
    s = snaps([100.0] * 3 + [300.0] * 5 + [100.0] * 3)  # t = 100..110; busy at 103..107
    summary = summarize(s, [(103.0, 107.0)], source="nvml", interval_s=1.0, window_images=400, measured_epochs=4)
    assert summary is not None
    assert summary.samples == 5
    gpu = summary.gpus[0]
    assert gpu.power_w is not None and gpu.power_w.mean == 300.0
    assert gpu.util_pct is not None and (gpu.util_pct.mean, gpu.util_pct.max) == (5.0, 7.0)
    assert gpu.energy_source == "power_integral" and gpu.energy_j == pytest.approx(1200.0)
    assert summary.energy_j == pytest.approx(1200.0)
    assert summary.energy_j_per_epoch == pytest.approx(300.0)
    assert summary.img_per_j == pytest.approx(400 / 1200)
    assert summary.cpu_pct is not None and summary.cpu_pct.mean == 50.0
    assert summary.rss_bytes_peak == 1007


def test_counter_is_interpolated_at_window_edges() -> None:
    energy = [k * 1000.0 for k in range(11)]  # 1 W steady, counter in mJ
    s = snaps([1.0] * 11, energy)
    e, how = window_energy_j(s, 0, [(102.5, 105.25)])
    assert how == "counter" and e == pytest.approx(2.75)


def test_counter_reset_falls_back_to_power() -> None:
    energy: list[float | None] = [0.0, 1000.0, 2000.0, 5.0, 1005.0, 2005.0]  # driver reload mid-window
    s = snaps([1.0] * 6, energy)
    e, how = window_energy_j(s, 0, [(100.0, 105.0)])
    assert how == "power_integral" and e == pytest.approx(5.0)


def test_several_windows_add_up() -> None:
    s = snaps([2.0] * 21, [k * 2000.0 for k in range(21)])
    summary = summarize(s, [(101.0, 103.0), (110.0, 115.0)], source="nvml", interval_s=1.0)
    assert summary is not None
    assert summary.window_count == 2 and summary.window_s == pytest.approx(7.0)
    assert summary.gpus[0].energy_j == pytest.approx(14.0)
    assert summary.samples == 3 + 6


def test_no_window_or_no_sample_inside_gives_none() -> None:
    s = snaps([1.0] * 5)
    assert summarize(s, [], source="nvml", interval_s=1.0) is None
    assert summarize(s, [(200.0, 300.0)], source="nvml", interval_s=1.0) is None
    assert summarize([], [(0.0, 1.0)], source="none", interval_s=1.0) is None


def test_no_gpu_summary_has_no_gpu_numbers_at_all() -> None:
    s = [Snapshot(t=float(k), gpus=(), process=ProcessSample(frozenset({1}), 50.0, 10)) for k in range(5)]
    summary = summarize(s, [(0.0, 4.0)], source="none", interval_s=1.0, window_images=10, measured_epochs=1)
    assert summary is not None
    assert summary.gpus == [] and summary.energy_j is None and summary.img_per_j is None
    assert summary.energy_j_per_epoch is None
    assert summary.cpu_pct is not None and summary.cpu_pct.mean == 50.0
    assert "not zero" in summary.utilisation_meaning


def test_timeseries_is_compact_and_decimated() -> None:
    s = snaps([float(k % 7) for k in range(5000)], dt=0.1)
    ts = build_timeseries(s, [(110.0, 300.0), (350.0, 400.0)], max_points=2000)
    assert len(ts.t_s) == 2000
    assert all(len(col) == 2000 for col in ts.columns.values())
    assert ts.window == (10.0, 300.0) and ts.windows == [(10.0, 200.0), (250.0, 300.0)]
    assert ts.t0_unix_s == 100.0
    assert set(ts.columns) == {"gpu0_util_pct", "gpu0_power_w", "gpu0_energy_j", "cpu_pct", "rss_mib"}
    assert ts.t_s[0] == pytest.approx(0.1, abs=0.11) and ts.t_s[-1] == pytest.approx(499.85, abs=0.2)
    energy = ts.columns["gpu0_energy_j"]
    assert energy[0] is not None and energy[-1] is not None and energy[-1] > energy[0]
    small = build_timeseries(snaps([1.0, 2.0, 3.0]), [])
    assert small.t_s == [0.0, 1.0, 2.0] and small.window is None
    assert build_timeseries([], []).t_s == []


def test_timeseries_json_round_trip() -> None:
    from edgebench.schemas.telemetry import TimeSeries

    ts = build_timeseries(snaps([1.0, 2.0, 3.0], [0.0, 1500.0, 4000.0]), [(100.0, 102.0)])
    again = TimeSeries.model_validate_json(ts.model_dump_json())
    assert again == ts
    assert ts.columns["gpu0_energy_j"] == [0.0, 1.5, 4.0]
