"""The report's inference section from rows as controller/inference_report.py makes them (the
agent test, tests/agent/test_inference_agent.py, makes them from real LoadGen runs; this one
covers what one box cannot: two devices, Server runs, and a fast but wrong winner-to-be)."""

from __future__ import annotations

from edgebench.controller.inference_report import InferenceRow, best_per_device
from edgebench.controller.render.drawing import draw
from edgebench.controller.render.inference_tables import inference_section
from edgebench.controller.render.markdown import render_document
from edgebench.controller.render.table import Document, Table

LAT = {"min": 0.8, "p50": 1.0, "p90": 1.2, "p95": 1.3, "p99": 1.6, "p99.9": 2.0, "max": 2.5}


def _row(device: str, runtime: str, scenario: str, headline: float, *, equivalent: bool = True,
         valid: bool = True, variant: str = "", lat_scale: float = 1.0) -> InferenceRow:
    name = {"SingleStream": "p90_ms", "Offline": "samples_per_s", "Server": "qps"}[scenario]
    return InferenceRow(
        job_id=f"{device}-{runtime}-{scenario}-{headline}", device_id=device, runtime=runtime, provider="cpu",
        precision="fp32", model="cnn", scenario=scenario, rules="quick", valid=valid,
        invalid_reason="" if valid else "min duration not met", equivalent=equivalent,
        equivalence_detail="" if equivalent else "max relative error 0.9 exceeds 0.001",
        max_rel_err=0.0 if equivalent else 0.9, headline_name=name, headline=headline,
        latency_ms={k: v * lat_scale for k, v in LAT.items()}, samples_per_s=None, mj_per_inference=None,
        energy_scope="", model_sha256="ab" * 32, dataset="fashion_mnist", batch_size=1, variant=variant,
        rules_detail="min 2000 ms, ≥ 100 queries")


ROWS = [
    _row("orin", "onnxruntime", "SingleStream", 1.2),
    _row("orin", "openvino", "SingleStream", 0.6, equivalent=False),  # fastest, but wrong
    _row("orin", "torch", "SingleStream", 0.9, valid=False),  # INVALID: no figure
    _row("xeon", "onnxruntime", "SingleStream", 0.4, lat_scale=0.3),
    _row("xeon", "torch", "SingleStream", 0.5, variant="eager", lat_scale=0.4),
    _row("xeon", "onnxruntime", "Server", 200.0),
    _row("xeon", "onnxruntime", "Server", 400.0, lat_scale=3.0),
]


def _tables() -> dict[str, Table]:
    section = inference_section(ROWS)
    assert section is not None
    return {b.key: b for b in section.blocks if isinstance(b, Table)}


def test_fast_but_wrong_never_wins_and_invalid_shows_no_figure() -> None:
    [(_, orin, excluded), _, _] = best_per_device(ROWS)
    assert orin is not None and orin.runtime == "onnxruntime"
    assert any("openvino" in e and "not equivalent" in e for e in excluded)
    assert any("torch" in e and "INVALID" in e for e in excluded)
    latency = _tables()["inference-latency"]
    fig = latency.column("figure")
    assert [r[fig].text for r in latency.rows if r[fig].raw is None] == ["INVALID"]
    best = _tables()["inference-best"]
    assert best.rows[0][3].text == "onnxruntime · fp32" and best.rows[0][3].style == "win"


def test_fleet_view_compares_like_with_like() -> None:
    fleet = _tables()["inference-fleet"]
    assert [c.key for c in fleet.columns][-2:] == ["orin", "xeon"]
    ort_ss = [r for r in fleet.rows if r[2].text == "onnxruntime · fp32" and r[1].text == "SingleStream"]
    [row] = ort_ss
    assert row[-1].style == "win" and row[-2].style == ""  # xeon's 0.4 ms beats orin's 1.2 ms
    # torch eager on xeon and torch (INVALID) on orin are different configurations: not one row
    torch_rows = [r for r in fleet.rows if r[2].text.startswith("torch")]
    assert len(torch_rows) == 2
    wrong = [r for r in fleet.rows if r[2].text == "openvino · fp32"]
    assert wrong[0][-2].text == "not equivalent"


def test_charts_and_text_renderers() -> None:
    tables = _tables()
    server = tables["inference-server"]
    assert [r[2].raw for r in server.rows] == [200.0, 400.0]
    for table in (tables["inference-latency"], server):
        assert table.chart is not None
        svg = draw(table.chart)
        assert svg is not None and svg.startswith("<svg")
    md = render_document(Document("t", sections=(inference_section(ROWS),)))  # type: ignore[arg-type]
    assert "Best runtime per device within accuracy tolerance" in md and "INVALID" in md
    assert "quick (min 2000 ms, ≥ 100 queries)" in md
