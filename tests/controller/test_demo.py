"""``controller demo`` end to end on its embedded broker and a real local agent (the sleep
backend, so it takes seconds): its results stay in a store of their own and its report
says that it shows the demo's sweep."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from edgebench.controller.demo import DemoOptions, default_demo_store_url, run_demo
from edgebench.controller.store import ResultStore, default_store_url


def test_demo_results_are_kept_apart_and_the_report_says_what_it_shows(tmp_path: Path) -> None:
    assert default_demo_store_url() != default_store_url()
    assert default_demo_store_url().endswith("/demo.db")
    store_url = f"sqlite:///{tmp_path / 'demo.db'}"
    buf = io.StringIO()
    sweep_id = run_demo(DemoOptions(store_url=store_url, dataset_root=tmp_path / "data", backends=("sleep",),
                                    mlp_samples=256, cnn_samples=64, timeout_s=120),
                        Console(file=buf, width=200, color_system=None))
    shown = buf.getvalue()
    assert "edgebench report" in shown and f"selection sweep {sweep_id} · " in shown
    assert "all stored results" not in shown
    assert "using synthetic data" in shown
    assert f"results stored in {store_url} (sweep {sweep_id}), apart from fleet results" in shown
    rows = ResultStore(store_url).results()
    assert {r.sweep_id for r in rows} == {sweep_id} and len(rows) == 2 and {r.outcome for r in rows} == {"OK"}
