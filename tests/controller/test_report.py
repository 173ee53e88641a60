"""Reports from stored results: selection, the study's tables, fleet view, dispersion, flags,
scaling, and every format showing the same numbers.

The stores are recordings of real runs (tests/controller/render/stores.py says which);
a few pure computations (scaling, the synthetic-vs-real flag) use results derived from
those real ones, and say so.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from edgebench.controller.cli import app
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.plan import build_job
from edgebench.controller.render import format as f
from edgebench.controller.render.markdown import render_markdown
from edgebench.controller.render.tabular import render_csv, render_json
from edgebench.controller.render.terminal import render_terminal
from edgebench.controller.report import (
    Cell,
    Report,
    Selection,
    SelectionError,
    build_report,
    parse_time,
    select,
    t95,
)
from edgebench.controller.store import ResultRow, ResultStore
from tests.controller.render.stores import BACKENDS, CPU_DEVICES, copy_store
from tests.helpers import run_jobs, wait_online

runner = CliRunner()


@pytest.fixture(scope="module")
def fleet_store(tmp_path_factory: pytest.TempPathFactory) -> ResultStore:
    """Two CPU devices and the H200, three backends each."""
    return copy_store(tmp_path_factory.mktemp("fleet"), gpu=True)


@pytest.fixture(scope="module")
def fleet_report(fleet_store: ResultStore) -> Report:
    rows, statuses = select(fleet_store, Selection())
    return build_report(rows, "torch", statuses=statuses, store_url=fleet_store.url)


def _cell(report: Report, device: str, backend: str, model: str, batch: int):  # type: ignore[no-untyped-def]
    return next(c for c in report.cells
                if (c.device_id, c.backend, c.model, c.batch_size) == (device, backend, model, batch))


# --- the study's tables -------------------------------------------------------------------


def test_fleet_store_covers_two_cpu_devices_and_three_backends(fleet_report: Report) -> None:
    assert set(fleet_report.devices) == {*CPU_DEVICES, "h200"}
    assert set(fleet_report.backends) == set(BACKENDS)
    for device in CPU_DEVICES:
        cells = [c for c in fleet_report.cells if c.device_id == device]
        assert {c.backend for c in cells} == set(BACKENDS)
        assert all(c.ok and c.img_per_s and c.img_per_s > 0 for c in cells)
        assert all(c.cpu_only and c.repeats == 2 for c in cells)


def test_ratios_are_against_the_baseline_on_the_same_device_and_config(fleet_report: Report) -> None:
    for c in fleet_report.cells:
        if not c.ok:
            assert c.ratio is None
            continue
        base = _cell(fleet_report, c.device_id, "torch", c.model, c.batch_size)
        assert c.ratio == pytest.approx(c.img_per_s / base.img_per_s)
    assert all(c.ratio == 1.0 for c in fleet_report.cells if c.backend == "torch" and c.ok)


def test_pivot_is_the_study_table_per_device(fleet_report: Report) -> None:
    sections = {s.device.device_id: s for s in fleet_report.device_sections()}
    h200 = sections["h200"]
    assert h200.backends[0] == "torch"  # the baseline leads
    labels = [(r.workload, r.batch_size) for r in h200.pivot]
    assert labels == [("Fashion-MNIST MLP", 32), ("Fashion-MNIST CNN", 32), ("synthetic ResNet-50", 32),
                      ("synthetic ResNet-50", 128), ("synthetic ResNet-50", 512)]
    oom_row = h200.pivot[-1]
    assert f.pivot_text(oom_row.cells["torch"]) == "OOM"  # the study's "Out of Memory" cell
    assert set(oom_row.cells) == {"torch"}


def test_gpu_metrics_sit_beside_utilisation_and_cpu_results_say_na(fleet_report: Report) -> None:
    gpu = _cell(fleet_report, "h200", "torch", "resnet50", 128)
    assert not gpu.cpu_only and gpu.telemetry_source == "nvml"
    assert 0 < gpu.gpu_util_pct <= 100
    assert gpu.sm_clock_mhz > 100 and gpu.power_w > 50
    assert gpu.peak_mem_bytes > 1024**3
    # energy over every measured window divided by the images of every repeat
    assert gpu.energy_j_per_img == pytest.approx(gpu.energy_j / (2 * gpu.n_batches * 128))
    cpu = _cell(fleet_report, "cpu-1core", "torch", "mlp", 32)
    texts = {col.key: col.text(cpu) for col in f.MEASURES}
    for key in ("gpu_util_pct", "sm_clock_mhz", "power_w", "energy_j_per_img", "peak_gpu_mem_bytes"):
        assert texts[key] == "n/a"
    assert texts["cpu_pct"] not in ("n/a", "–")


def test_preallocated_memory_is_marked(fleet_report: Report) -> None:
    jax = _cell(fleet_report, "h200", "keras-jax", "resnet50", 128)
    assert "preallocate" in jax.mem_policy
    peak = next(c for c in f.MEASURES if c.key == "peak_gpu_mem_bytes")
    assert peak.text(jax).endswith(f.PREALLOC_MARK)
    assert not peak.text(_cell(fleet_report, "h200", "torch", "resnet50", 128)).endswith(f.PREALLOC_MARK)


# --- dispersion and flags -------------------------------------------------------------------


def test_the_interval_shown_is_over_repeats_and_noisy_reads_it(fleet_report: Report) -> None:
    for c in fleet_report.cells:
        if not c.ok:
            continue
        assert c.repeats == 2 and c.ci_basis == "2 repeats"  # every fixture job ran 2 repeats
        assert c.sd == c.repeat_sd
        assert c.repeat_min <= c.img_per_s <= c.repeat_max
        assert c.repeat_sd == pytest.approx((c.repeat_max - c.repeat_min) / math.sqrt(2))
        # the "±" is the 95 % interval of the figure, over the repeats (t with 1 dof = 12.7)
        assert c.ci95 == pytest.approx(t95(1) * c.repeat_sd / math.sqrt(2))
        assert f.pivot_text(c) == f.fmt_rate(c.img_per_s, c.ci95)
        # and the noisy flag says whether that same interval is wider than 10 % of the figure
        assert ("noisy" in c.flags) == (c.ci95 / c.img_per_s > 0.10)
        assert "no interval" not in c.flags


def test_flags_mark_thin_measurements(fleet_report: Report) -> None:
    for c in fleet_report.cells:
        if not c.ok:
            continue
        assert ("few batches" in c.flags) == (c.n_batches < 20)
    thin = _cell(fleet_report, "h200", "keras-jax", "resnet50", 32)
    assert thin.telemetry_samples < 10 and "few samples" in thin.flags


def _with_result(row: ResultRow, **update: object) -> ResultRow:
    res = row.result()
    assert res is not None
    changed = res.model_copy(update=update)
    return ResultRow(**{**row.__dict__, "result_json": changed.model_dump_json(),
                        "gpus": changed.gpus, "img_per_s": changed.summary.window_img_per_s})


def test_synthetic_and_real_data_in_one_comparison_are_flagged(fleet_store: ResultStore) -> None:
    rows, _ = select(fleet_store, Selection(devices=("cpu-2core",), workloads=("fashion-mnist-cnn",)))
    # derived: pretend one backend read the real files
    rows = [_with_result(r, data_source="real") if r.backend == "torch" else r for r in rows]
    report = build_report(rows, "torch")
    flags = {c.backend: c.flags for c in report.cells}
    assert "real data" in flags["torch"]
    assert "synthetic data" in flags["keras-jax"] and "synthetic data" in flags["keras-torch"]


def test_the_device_the_framework_ran_on_is_shown_in_every_format(fleet_store: ResultStore) -> None:
    from edgebench.schemas.result import DevicesUsed

    rows, _ = select(fleet_store, Selection(devices=("cpu-2core",), workloads=("fashion-mnist-cnn",)))
    used = {"keras-jax": DevicesUsed(framework="jax", kind="cpu", devices=["TFRT_CPU_0"], detail="platform cpu"),
            "torch": DevicesUsed(framework="torch", kind="cpu", devices=["cpu"])}
    # derived: the recorded results predate the field; keras-torch's stays without it (shown as missing)
    rows = [_with_result(r, devices_used=used[r.backend]) if r.backend in used else r for r in rows]
    report = build_report(rows, "torch")
    md = render_markdown(report)
    header = next(ln for ln in md.splitlines() if ln.startswith("| workload | backend |"))
    assert "ran on" in header
    assert "| jax cpu: TFRT\\_CPU\\_0 |" in md and "| torch cpu: cpu |" in md  # Markdown escapes "_"
    by_backend = {r["backend"]: r for r in csv.DictReader(io.StringIO(render_csv(report)))}
    assert by_backend["keras-jax"]["ran_on"] == "jax cpu: TFRT_CPU_0" and by_backend["keras-torch"]["ran_on"] == ""
    assert {c["backend"]: c["ran_on"] for c in json.loads(render_json(report))["cells"]}["torch"] == "torch cpu: cpu"


def test_fleet_view_names_winners_only_outside_the_noise(fleet_report: Report) -> None:
    fleets = {t.workload: t for t in fleet_report.fleet_tables()}
    mlp = fleets["Fashion-MNIST MLP"]
    assert mlp.devices == ["cpu-1core", "cpu-2core", "h200"] and set(mlp.backends) == set(BACKENDS)
    for device in mlp.devices:
        ranking = mlp.ranking(device)
        lead, second = ranking.order[0], ranking.order[1]
        assert lead.img_per_s == max(c.img_per_s for (d, _), c in mlp.cells.items() if d == device)
        # a winner is named only where its interval clears the runner-up's
        clear = lead.interval[0] > second.interval[1]
        assert (mlp.winner(device) is lead) == clear
        assert ranking.text().startswith("within noise: ") != clear
        # each cell is the backend's fastest configuration on that device
        for b in mlp.backends:
            mine = [c for c in fleet_report.cells if c.device_id == device and c.backend == b and c.model == "mlp"]
            assert mlp.cells[(device, b)].img_per_s == max(c.img_per_s for c in mine)
    # the recorded runs: on cpu-2core keras-jax clears torch; on the H200 torch and keras-jax overlap
    assert mlp.ranking("cpu-2core").text().startswith("keras-jax (")
    assert mlp.ranking("h200").text().startswith("within noise: torch")
    assert any("torch: library versions differ" in n and "2.13.0+cpu" in n for n in mlp.notes)
    resnet = fleets["synthetic ResNet-50"]
    assert resnet.devices == ["h200"]


def test_fleet_chart_compares_at_one_stated_configuration(fleet_report: Report) -> None:
    mlp = next(t for t in fleet_report.fleet_tables() if t.workload == "Fashion-MNIST MLP")
    # every device and backend ran bs 32 (a CPU job and a one-GPU job count as one device's worth)
    assert mlp.chart_config == (32, "fp32", 1)
    assert {c.batch_size for c in mlp.chart_cells.values()} == {32}
    assert len(mlp.chart_cells) == 9 and mlp.chart_missing == []
    # while the table shows each backend at its fastest batch size (128 on the CPUs)
    assert {c.batch_size for c in mlp.cells.values()} == {32, 128}


def test_scaling_tables_from_real_multi_gpu_runs(tmp_path: Path) -> None:
    store = copy_store(tmp_path, cpu=False, scaling=True)
    rows, statuses = select(store, Selection())
    report = build_report(rows, "torch", statuses=statuses)
    tables = {t.backend: t for t in report.scaling_tables()}
    assert set(tables) == {"torch", "keras-jax"}
    for table in tables.values():
        assert (table.device_id, table.batch_size, table.precision, table.base_gpus) == ("h200x4", 256, "bf16", 1)
        assert [r.gpus for r in table.rows] == [1, 2, 4]
        one = table.rows[0].cell.img_per_s
        for r in table.rows:
            assert r.speedup == pytest.approx(r.cell.img_per_s / one)
            # eff = img/s(N) / (N x img/s(1))
            assert r.efficiency_pct == pytest.approx(100 * r.cell.img_per_s / (r.gpus * one))
    # what the tables are for: native DDP scales, this Keras-JAX DataParallel run did not
    assert tables["torch"].rows[-1].efficiency_pct > 90
    assert tables["keras-jax"].rows[-1].efficiency_pct < 50
    md = render_markdown(report)
    assert "## Scaling" in md and "| 4 |" in md
    assert not build_report([r for r in rows if r.gpus == 1], "torch").scaling_tables()


# --- selection --------------------------------------------------------------------------------


def test_selection_by_device_tag_workload_backend_and_sweep(fleet_store: ResultStore) -> None:
    def devices_backends(sel: Selection) -> tuple[set[str], set[str], int]:
        rows, statuses = select(fleet_store, sel)
        assert set(statuses) == {r.device_id for r in rows}
        return {r.device_id for r in rows}, {r.backend for r in rows}, len(rows)

    assert devices_backends(Selection(devices=("h200",)))[0] == {"h200"}
    assert devices_backends(Selection(tags=("small",)))[0] == {"cpu-1core"}  # from the devices table
    assert devices_backends(Selection(tags=("gpu",)))[0] == {"h200"}
    assert devices_backends(Selection(tags=("cpu",)))[0] == set(CPU_DEVICES)
    assert devices_backends(Selection(backends=("keras-jax", "torch")))[1] == {"keras-jax", "torch"}
    devices, _, n = devices_backends(Selection(workloads=("synthetic-resnet50",)))
    assert devices == {"h200"} and n == 7
    assert devices_backends(Selection(workloads=("mlp/fashion_mnist",)))[2] == 3 * 2 * 2 + 3
    assert devices_backends(Selection(sweep="fleet-example"))[0] == {"h200"}
    with pytest.raises(SelectionError):
        select(fleet_store, Selection(workloads=("no-such-workload",)))


def test_selection_by_time_range(fleet_store: ResultStore) -> None:
    rows, _ = select(fleet_store, Selection())
    times = sorted(r.finished_at for r in rows)
    middle = times[len(times) // 2].replace(tzinfo=timezone.utc)
    early, _ = select(fleet_store, Selection(until=middle))
    late, _ = select(fleet_store, Selection(since=middle))
    assert len(early) + len(late) == len(rows) + 1  # the middle one is in both
    assert not select(fleet_store, Selection(since=datetime.now(timezone.utc)))[0]


def test_parse_time_forms() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
    assert parse_time("12h", now) == now - timedelta(hours=12)
    assert parse_time("7d", now) == now - timedelta(days=7)
    assert parse_time("2026-11-28") == datetime(2026, 11, 28, tzinfo=timezone.utc)
    assert parse_time("2026-11-28T15:00+01:00") == datetime(2026, 11, 28, 14, tzinfo=timezone.utc)
    with pytest.raises(SelectionError):
        parse_time("last tuesday")


# --- formats agree ------------------------------------------------------------------------------


def _md_tables(md: str) -> list[list[dict[str, str]]]:
    tables = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and re.match(r"^\| (:?-+:? \| )+", lines[i + 1]):
            header = [h.strip() for h in lines[i].strip("|").split(" | ")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("| "):
                cells = [c.strip() for c in re.split(r"(?<!\\) \| ", lines[i].strip()[2:-2])]
                rows.append(dict(zip(header, cells)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def test_markdown_and_csv_show_the_same_numbers(fleet_report: Report) -> None:
    md = render_markdown(fleet_report)
    csv_rows = list(csv.DictReader(io.StringIO(render_csv(fleet_report))))
    assert len(csv_rows) == len(fleet_report.cells)
    by_key = {(r["device"], r["workload"], r["backend"], r["batch_size"]): r for r in csv_rows}
    # the details tables, one per device, in device order
    details = [t for t in _md_tables(md) if t and {"workload", "backend", "img/s"} <= set(t[0])]
    sections = fleet_report.device_sections()
    assert len(details) == len(sections)
    checked = 0
    for section, table in zip(sections, details):
        columns = {c.header: c for c in f.detail_columns(section.cells)}
        assert len(table) == len(section.cells)
        for md_row in table:
            row = by_key[(section.device.device_id, md_row["workload"], md_row["backend"], md_row["batch"])]
            for header, text in md_row.items():
                col = columns[header]
                raw = row[col.key]
                if row["outcome"] != "OK" and col.key == "img_per_s":
                    assert text == "OOM"
                elif col.gpu and raw == "":
                    assert text in ("n/a", "")
                elif col.numeric and raw != "":
                    value = int(raw) if raw.isdigit() else float(raw)
                    shown = col.fmt(value) + (f.PREALLOC_MARK if text.endswith(f.PREALLOC_MARK) else "")
                    assert text == shown, (header, text, raw)
                    checked += 1
                elif not col.numeric:
                    assert text == raw or (raw == "" and text == f.MISSING), (header, text, raw)
    assert checked > 200


def test_csv_leaves_gpu_metrics_of_cpu_results_empty_not_zero(fleet_report: Report) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(fleet_report))))
    for r in rows:
        if r["device"] in CPU_DEVICES:
            assert r["gpu_util_pct"] == r["power_w"] == r["energy_j_per_img"] == ""
            assert float(r["img_per_s"]) > 0
    oom = next(r for r in rows if r["outcome"] == "OOM")
    assert oom["img_per_s"] == "" and oom["backend"] == "torch" and oom["batch_size"] == "512"


def test_json_carries_cells_fleet_and_meaning(fleet_report: Report) -> None:
    doc = json.loads(render_json(fleet_report))
    assert doc["kind"] == "edgebench-report" and doc["baseline"] == "torch"
    assert len(doc["cells"]) == len(fleet_report.cells)
    cpu = next(c for c in doc["cells"] if c["device_id"] == "cpu-2core")
    assert cpu["gpu_util_pct"] is None and cpu["cpu_only"] is True
    assert "kernels ran" in doc["utilisation_meaning"]
    mlp = next(t for t in doc["fleet"] if t["workload"] == "Fashion-MNIST MLP")
    assert set(mlp["fastest"]) == {*CPU_DEVICES, "h200"}


def test_terminal_rendering(fleet_report: Report) -> None:
    console = Console(record=True, width=220)
    render_terminal(fleet_report, console)
    text = console.export_text()
    for word in ("Machines", "Fleet", "cpu-1core", "cpu-2core", "h200", "OOM", "n/a", "keras-torch",
                 "kernels ran"):
        assert word in text


# --- the command line ------------------------------------------------------------------------------


def _cli(store: ResultStore, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--store", store.url, *args])


def test_report_command_formats_and_out(fleet_store: ResultStore, tmp_path: Path) -> None:
    out = _cli(fleet_store, "report", "--baseline", "torch")
    assert out.exit_code == 0, out.output
    assert "h200" in out.output and "OOM" in out.output
    for fmt in ("md", "csv", "json"):
        path = tmp_path / f"r.{fmt}"
        res = _cli(fleet_store, "report", "--tag", "cpu", "-w", "fashion-mnist-mlp", "--format", fmt, "--out",
                   str(path))
        assert res.exit_code == 0, res.output
        text = path.read_text()
        assert "cpu-1core" in text and "h200" not in text.split("store")[0]
    printed = _cli(fleet_store, "report", "--device", "h200", "--format", "csv")
    assert printed.exit_code == 0 and printed.output.startswith("device,workload")
    bad = _cli(fleet_store, "report", "--since", "whenever")
    assert bad.exit_code == 2 and "not a time" in bad.output


def test_results_export_csv_and_parquet(fleet_store: ResultStore, tmp_path: Path) -> None:
    path = tmp_path / "all.csv"
    res = _cli(fleet_store, "results", "export", "--out", str(path))
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == fleet_store.count("results")
    h200 = next(r for r in rows if r["device_id"] == "h200" and r["outcome"] == "OK")
    for col in ("img_per_s_window", "img_per_s_median", "img_per_s_mean", "img_per_s_std", "n_batches", "repeats",
                "gpu_util_pct_mean", "power_w_mean", "energy_j_per_img", "gpu_mem_peak_bytes", "lib_torch",
                "cpu_model", "gpu_name", "gpu_driver"):
        assert h200[col] != "", col
    cpu = next(r for r in rows if r["device_id"] == "cpu-1core")
    assert cpu["gpu_util_pct_mean"] == "" and cpu["device_tags"] == "lab,cpu,small"
    pa = pytest.importorskip("pyarrow.parquet")
    pq_path = tmp_path / "gpu.parquet"
    res = _cli(fleet_store, "results", "export", "--format", "parquet", "--out", str(pq_path), "--tag", "gpu")
    assert res.exit_code == 0, res.output
    table = pa.read_table(pq_path)
    assert table.num_rows == 13 and set(table.column("device_id").to_pylist()) == {"h200"}
    assert str(table.schema.field("finished_at").type).startswith("timestamp")


def test_report_from_live_agents_by_tag(start_agent, controller_cfg) -> None:  # type: ignore[no-untyped-def]
    """End to end with real agents and broker: the sleep backend, job tags, two devices."""
    agents = [start_agent("edge-a", extra=["--tag", "line1"]), start_agent("edge-b")]
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as fleet:
        wait_online(fleet, "edge-a", "edge-b", agents=agents)
        plan = [Dispatched(d, build_job({"backend": "sleep", "workload": "fashion-mnist-mlp", "epochs": 2,
                                         "steps_per_epoch": 25, "synthetic": True, "batch_size": bs,
                                         "tags": ["nightly"] if d == "edge-b" else []},
                                        f"rep-{d}-{bs}", "rep-sweep"))
                for d in ("edge-a", "edge-b") for bs in (16, 64)]
        run_jobs(fleet, plan, timeout_s=120)
    by_device_tag = _cli(store, "report", "--tag", "line1", "--format", "csv")
    assert by_device_tag.exit_code == 0, by_device_tag.output
    rows = list(csv.DictReader(io.StringIO(by_device_tag.output)))
    assert {r["device"] for r in rows} == {"edge-a"} and len(rows) == 2
    by_job_tag = list(csv.DictReader(io.StringIO(_cli(store, "report", "--tag", "nightly", "-f", "csv").output)))
    assert {r["device"] for r in by_job_tag} == {"edge-b"}
    md = _cli(store, "report", "--sweep", "rep-sweep", "--format", "md").output
    assert "## Fleet view" in md and "edge-a" in md and "edge-b" in md


def test_empty_selection_renders_in_every_format(tmp_path: Path) -> None:
    store = ResultStore(f"sqlite:///{tmp_path / 'empty.db'}")
    for fmt, expected in (("md", "No results match"), ("csv", "device,workload"), ("json", '"cells": []'),
                          ("html", "No results match"), ("terminal", "no results match")):
        out = _cli(store, "report", "--format", fmt)
        assert out.exit_code == 0, out.output
        assert expected in out.output


def test_knob_variants_are_separate_cells(tmp_path: Path) -> None:
    """A knob sweep's configurations (layout, compilation) must not merge into one cell."""
    import shutil

    db = tmp_path / "knobs.db"  # a copy: opening a store migrates it
    shutil.copy(Path(__file__).resolve().parents[2] / "docs/results/h200-2026-11-28/results-study-knobs.db", db)
    db.chmod(0o644)
    store = ResultStore(f"sqlite:///{db}")
    report = build_report(store.results(sweep_id="h200-knobs-resnet50"), "torch")
    torch_cells = {c.precision: c.img_per_s for c in report.cells if c.backend == "torch"}
    assert len(torch_cells) == 4
    assert round(torch_cells["bf16 · channels_last · compiled"]) == 6001
    assert round(torch_cells["bf16 · channels_last · eager"]) == 3875


def test_sd_basis_names_pooled_samples() -> None:
    base: dict[str, Any] = dict(device_id="d", workload="W", model="mlp", dataset="fashion-mnist", mode="train",
                backend="keras-jax", batch_size=32, precision="fp32", gpus=0, outcome="OK", job_id="j",
                img_per_s=1.0, repeats=1)
    assert Cell(**base, n_batches=64, n_samples=64).sd_basis == "64 batches"
    assert Cell(**base, n_batches=64, n_samples=12).sd_basis == "12 samples of 64 batches"
    assert Cell(**base, n_batches=64).sd_basis == "64 batches"  # results from before n_samples
    # the interval of one run comes from its batch blocks, and says so
    assert Cell(**base, block_rates=(1.0,) * 10, ci95=0.1).ci_basis == "10 blocks of one run"
    assert Cell(**base).ci_basis == "-"
