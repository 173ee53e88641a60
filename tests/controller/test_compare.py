"""``controller compare`` on recorded runs: a planted regression is found, two runs of one configuration are not
told apart, and the statistics behind it give the known answers.

tests/fixtures/compare_store.sqlite holds real runs of this machine kind (scripts/make_report_fixture.py,
profiles ``ab`` and ``history``): sweep ``ab``, 16 rounds of one torch MLP job (3 repeats each) tagged
``ab-a``, ``ab-b``, ``ab-a``, ... so that the two halves are the same configuration measured in turns, under
the same (shared, busy) machine. Their validity records say so: 13 of 16 rounds are suspect, other
processes keeping 0.7-1.6 of the 2 CPUs busy. The planted regression is the ``ab-a`` half again, every
throughput times 0.85, re-ingested through the real ingestion path into a second store: said so below.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgebench.controller.cli import app
from edgebench.controller.compare import (
    CompareError,
    SideCell,
    compare,
    compare_cell,
    min_p,
    parse_side,
)
from edgebench.controller.groups import CellKey, DeviceGroup, GroupBy
from edgebench.controller.selection import Selection, select
from edgebench.controller.stats import mann_whitney, ratio_estimate, t95
from edgebench.controller.store import FactRow, ResultStore
from tests.controller.render.stores import FIXTURES, reingest, scale_throughput

runner = CliRunner()
COMPARE_STORE = FIXTURES / "compare_store.sqlite"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(the recorded store, a second store holding the ab-a half with a planted 15 % slowdown)."""
    import shutil

    tmp = tmp_path_factory.mktemp("compare")
    recorded = tmp / "recorded.sqlite"
    shutil.copy(COMPARE_STORE, recorded)
    recorded.chmod(0o644)
    base = ResultStore(f"sqlite:///{recorded}")
    rows, _ = select(base, Selection(tags=("ab-a",)))
    assert len(rows) == 8
    planted = ResultStore(f"sqlite:///{tmp / 'planted.sqlite'}")
    # PLANTED: the same eight recorded runs, every throughput x 0.85
    assert reingest(rows, planted, lambda res: scale_throughput(res, 0.85)) == 8
    base.close()
    planted.close()
    return f"sqlite:///{recorded}", f"sqlite:///{tmp / 'planted.sqlite'}"


def _cli(store_url: str, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--store", store_url, *args])


# --- the recorded data -----------------------------------------------------------------------


def test_the_planted_15_percent_regression_is_found(stores: tuple[str, str]) -> None:
    recorded, planted = stores
    # Unpaired, the recorded runs' own spread (1,157 to 127,089 img/s: the shared box) hides 15 %: the
    # rank test rightly cannot tell, and says no change within noise.
    unpaired = compare(parse_side("tag:ab-a", recorded), parse_side(f"store:{planted}", recorded)).cells[0]
    assert unpaired.verdict == "no change" and unpaired.basis == "8 runs vs 8 runs"
    # Paired run by run (each candidate run beside the baseline run it was measured with), it is found.
    comp = compare(parse_side("tag:ab-a", recorded), parse_side(f"store:{planted}", recorded), paired=True)
    (cell,) = comp.cells
    assert cell.verdict == "slower" and cell.basis == "8 pairs of runs"
    est = cell.estimate
    assert est is not None and est.ratio == pytest.approx(0.85)
    assert est.high is not None and est.high < 1.0 and est.p is not None and est.p < 0.05
    assert [c.key.backend for c in comp.regressions(10)] == ["torch"]
    assert comp.regressions(20) == []  # 15 % is not more than 20 %
    gated = _cli(recorded, "compare", "tag:ab-a", f"store:{planted}", "--paired", "--fail-on-regression", "10")
    assert gated.exit_code == 1, gated.output
    assert "regression:" in gated.output and "-15.0 %" in gated.output
    assert _cli(recorded, "compare", "tag:ab-a", f"store:{planted}", "--paired",
                "--fail-on-regression", "20").exit_code == 0


def test_two_runs_of_one_configuration_show_no_regression(stores: tuple[str, str]) -> None:
    recorded, _ = stores
    for paired, basis in ((False, "8 runs vs 8 runs"), (True, "8 pairs of runs")):
        comp = compare(parse_side("tag:ab-a", recorded), parse_side("tag:ab-b", recorded), paired=paired)
        (cell,) = comp.cells
        assert cell.verdict == "no change" and cell.basis == basis
        est = cell.estimate
        assert est is not None and est.p is not None and est.p > 0.05
        # the recorded noise: the 95 % interval of the ratio is wide, and it holds 1
        assert est.low is not None and est.high is not None and est.low < 1.0 < est.high
        assert comp.regressions(10) == []
    for extra in ((), ("--paired",)):
        out = _cli(recorded, "compare", "tag:ab-a", "tag:ab-b", "--fail-on-regression", "10", *extra)
        assert out.exit_code == 0, out.output


def test_suspect_results_can_be_left_out(stores: tuple[str, str]) -> None:
    recorded, _ = stores
    comp = compare(parse_side("tag:ab-a", recorded), parse_side("tag:ab-b", recorded), exclude_suspect=True)
    assert comp.excluded_suspect == 13  # the recording's validity records: 3 of 16 rounds were valid
    (cell,) = comp.cells
    # 2 valid runs against 1: their 3 repeats each are the samples
    assert cell.basis == "6 repeats vs 3 repeats" and cell.verdict == "no change"
    valid = [r.img_per_s for r in (cell.baseline.rows if cell.baseline else ())]
    assert min(valid) > 100_000  # the quiet rounds ran at 111-127 k img/s; the busy ones at 1-73 k


def test_compare_formats_on_the_command_line(stores: tuple[str, str], tmp_path: Path) -> None:
    recorded, planted = stores
    doc = json.loads(_cli(recorded, "compare", "tag:ab-a", f"store:{planted}", "--paired", "-f", "json").output)
    assert doc["kind"] == "edgebench-compare" and doc["counts"] == {"slower": 1} and doc["paired"] is True
    cell = doc["cells"][0]
    assert cell["group"]["hardware"].startswith("CPU ") and cell["verdict"] == "slower"
    assert cell["ratio"] == pytest.approx(0.85) and len(cell["baseline"]["job_ids"]) == 8
    md = _cli(recorded, "compare", "tag:ab-a", "tag:ab-b", "-f", "md").output
    assert "| workload | backend | config |" in md and "no change" in md
    html_path = tmp_path / "compare.html"
    res = _cli(recorded, "compare", "tag:ab-a", "tag:ab-b", "-f", "html", "--out", str(html_path))
    assert res.exit_code == 0, res.output
    html = html_path.read_text()
    assert "<svg" in html and "Ratio per cell" in html and "<script" not in html
    terminal = _cli(recorded, "compare", "tag:ab-a", "tag:ab-b")
    assert terminal.exit_code == 0 and "no change" in terminal.output


def test_bad_sides_are_refused(stores: tuple[str, str], tmp_path: Path) -> None:
    recorded, _ = stores
    nothing = _cli(recorded, "compare", "no-such-sweep", "tag:ab-b")
    assert nothing.exit_code == 2 and "selects no OK result" in nothing.output
    assert _cli(recorded, "compare", "since:whenever", "ab").exit_code == 2
    with pytest.raises(CompareError, match="no store file"):
        parse_side(str(tmp_path / "missing.sqlite"), recorded)


def test_side_forms() -> None:
    store = "sqlite:////x.db"
    assert parse_side("nightly-1", store).selection.sweep == "nightly-1"
    side = parse_side("store:/tmp/other.db,sweep:s1,tag:t1", store, Selection(backends=("torch",)))
    assert side.store_url == "sqlite:////tmp/other.db"
    assert side.selection.sweep == "s1" and side.selection.tags == ("t1",) and side.selection.backends == ("torch",)
    ranged = parse_side("2026-11-01..2026-11-15", store).selection
    assert ranged.since is not None and ranged.until is not None and ranged.since.day == 1
    assert parse_side("..2026-11-15", store).selection.since is None
    assert parse_side("postgresql+psycopg://u@h/db", store).store_url == "postgresql+psycopg://u@h/db"


# --- the statistics -----------------------------------------------------------------------


def test_exact_rank_test_values() -> None:
    # complete separation: p = 2 / C(n + m, n)
    assert mann_whitney([1, 2, 3], [4, 5, 6]).p == pytest.approx(0.1)  # type: ignore[union-attr]
    assert mann_whitney([1, 2, 3, 4], [5, 6, 7, 8]).p == pytest.approx(2 / 70)  # type: ignore[union-attr]
    assert min_p(3, 3) == pytest.approx(0.1) and min_p(8, 8) == pytest.approx(2 / 12870)
    # ties: the normal approximation with its tie correction
    tied = mann_whitney([1, 1, 2, 2], [2, 3, 3, 3])
    assert tied is not None and not tied.exact and 0 < tied.p < 0.1
    assert t95(1) == 12.706 and t95(35) == pytest.approx(2.031, abs=0.01) and t95(10_000) == 1.96


def test_hodges_lehmann_ratio_and_interval() -> None:
    est = ratio_estimate([100, 101, 99, 100.5, 99.5], [85, 86, 84, 85.5, 84.2])
    assert est is not None and est.ratio == pytest.approx(0.85, abs=0.005)
    assert est.low is not None and est.high is not None and est.low < est.ratio < est.high < 1
    # samples scaled by a constant: the ratio is that constant
    xs = [3.0, 7.0, 5.0, 11.0]
    assert ratio_estimate(xs, [2 * x for x in xs]).ratio == pytest.approx(2.0)  # type: ignore[union-attr]
    assert ratio_estimate([], [1.0]) is None
    # large sides: estimated from quantiles, close to the truth
    big = ratio_estimate([100.0 + (i % 7) for i in range(2000)], [90.0 + (i % 7) for i in range(2000)])
    assert big is not None and big.ratio == pytest.approx(93 / 103, rel=0.01) and big.p < 1e-6


def _rows(rates: list[float], repeats: int = 0) -> tuple[FactRow, ...]:
    return tuple(FactRow(job_id=f"j{i}", device_id="d", attempt=1, sweep_id=None, outcome="OK", backend="torch",
                         mode="train", model="mlp", dataset="fashion_mnist", batch_size=32, precision="fp32", gpus=0,
                         img_per_s=r, finished_at=None, data_format=None, compiled=None, hardware="CPU x",
                         driver=None, image_digest=None, power_mode=None, verdict=None,
                         stats_json=json.dumps({"repeats": [r] * repeats, "blocks": []}))
                 for i, r in enumerate(rates))


def test_three_against_three_is_too_few_to_tell() -> None:
    key = CellKey(DeviceGroup("CPU x"), "mlp", "fashion_mnist", "train", "torch", 32, "fp32", 0)
    few = compare_cell(key, SideCell(_rows([100, 101, 102])), SideCell(_rows([50, 51, 52])), 0.05)
    # 3 runs a side: repeats pooled instead (here none), and no test can reach p < 0.05 on 3 vs 3
    assert few.verdict == "too few samples" and few.basis == "3 runs vs 3 runs"
    assert few.estimate is not None and few.estimate.ratio == pytest.approx(0.5, abs=0.01)
    pooled = compare_cell(key, SideCell(_rows([100, 101, 102], repeats=3)), SideCell(_rows([50, 51, 52], 3)), 0.05)
    assert pooled.basis == "9 repeats vs 9 repeats"  # ties inside each side: the normal approximation
    only = compare_cell(key, SideCell(_rows([1.0])), None, 0.05)
    assert only.verdict == "only in baseline" and only.estimate is None


def test_grouping_by_device_or_full_stack(stores: tuple[str, str]) -> None:
    recorded, _ = stores
    a, b = parse_side("tag:ab-a", recorded), parse_side("tag:ab-b", recorded)
    for by in GroupBy:
        comp = compare(a, b, group_by=by)
        assert len(comp.cells) == 1
        group = comp.cells[0].key.group
        assert (group.device_id == "cpu-2core") == (by is GroupBy.device)
    assert math.isfinite(compare(a, b).cells[0].estimate.ratio)  # type: ignore[union-attr]
