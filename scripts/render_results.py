"""Regenerate every report under docs/results/ from the stores committed beside it.

docs/results/ keeps only reports this script makes: each entry of REPORTS
names its stores (committed SQLite files, opened as copies: a store is
migrated when opened), its selection and its format. The pages carry the
newest result's time as their "generated" time and the stores' repository
paths as their store, so that a re-run on an unchanged tree writes the same
bytes (tests/controller/render/test_results_current.py checks that the
committed files are current). One self-contained HTML page is kept, the
fleet example (docs/report-example.png is its top); the rest are Markdown.

    .venv/bin/python scripts/render_results.py            # rewrite the files
    .venv/bin/python scripts/render_results.py --check    # exit 1 if any is stale
    .venv/bin/python scripts/render_results.py --screenshot   # also docs/report-example.png (chromium)
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgebench.controller.report import build_report  # noqa: E402
from edgebench.controller.selection import Selection, select  # noqa: E402
from edgebench.controller.store import ResultStore  # noqa: E402

H200 = "docs/results/h200-2026-11-28"


@dataclass(frozen=True)
class Entry:
    out: str  # repository path of the report
    stores: tuple[str, ...]  # repository paths; several are merged
    selection: Selection = field(default_factory=Selection)
    baseline: str | None = None
    fmt: str = "md"  # md, html, compare-md, history-md
    job: str | None = None  # html: the time-series job
    title: str = "edgebench report"
    compare: tuple[str, str] = ("", "")  # compare-md: baseline and candidate sides


CPU_EXAMPLE = ("docs/results/cpu-example/results.sqlite",)
FLEET = (*CPU_EXAMPLE, "tests/fixtures/report_store_gpu.sqlite", "tests/fixtures/report_store_scaling.sqlite")
COMPARE = ("tests/fixtures/compare_store.sqlite",)

REPORTS: tuple[Entry, ...] = (
    Entry("docs/results/cpu-example/report.md", CPU_EXAMPLE, baseline="torch"),
    Entry("docs/results/fleet-example/report.md", FLEET, baseline="torch"),
    Entry("docs/results/fleet-example/report.html", FLEET, baseline="torch", fmt="html", job="fleet-example-h200-09",
          title="edgebench report: two CPU boxes and two H200 machines"),
    Entry("docs/results/cpu-2026-11-28/study-2019-cpu.md", ("docs/results/cpu-2026-11-28/results-study-2019-cpu.db",),
          Selection(sweep="cpu-study-2019"), baseline="keras-tensorflow1"),
    Entry(f"{H200}/study-2019-gpu.md", (f"{H200}/results-study-knobs.db",), Selection(sweep="h200-study-2019"),
          baseline="torch"),
    Entry(f"{H200}/knobs-resnet50.md", (f"{H200}/results-study-knobs.db",), Selection(sweep="h200-knobs-resnet50"),
          baseline="torch"),
    Entry(f"{H200}/scaling-torch-ddp-4gpu.md", (f"{H200}/results-scaling.db",), Selection(backends=("torch",)),
          baseline="torch"),
    Entry(f"{H200}/scaling-keras-jax-2gpu.md", (f"{H200}/results-keras-jax-dp.db",), baseline="keras-jax"),
    Entry(f"{H200}/scaling-keras-jax-4gpu.md", (f"{H200}/results-keras-jax-dp-async.db",), baseline="keras-jax"),
    Entry(f"{H200}/scaling-keras-jax-4gpu-before-async-fix.md", (f"{H200}/results-keras-jax-dp-4gpu-sync.db",),
          baseline="keras-jax"),
    Entry("docs/results/h200-2026-12-02-inference/inference-resnet50.md",
          ("docs/results/h200-2026-12-02-inference/results-inference.db",), baseline="torch",
          title="edgebench report: ResNet-50 inference under MLPerf LoadGen on one H200 (2026-12-02)"),
    Entry("docs/results/compare-example/compare.md", COMPARE, fmt="compare-md", compare=("tag:ab-a", "tag:ab-b")),
    Entry("docs/results/compare-example/history.md", COMPARE, fmt="history-md"),
)


def _open(entry: Entry, workdir: Path) -> tuple[ResultStore, str]:
    """A private store holding the entry's stores (merged), and the label the page shows for it."""
    path = workdir / (Path(entry.out).stem + ".sqlite")
    path.unlink(missing_ok=True)
    shutil.copy(REPO / entry.stores[0], path)
    path.chmod(0o644)
    url = f"sqlite:///{path}"
    if len(entry.stores) > 1:
        sys.path.insert(0, str(REPO / "scripts"))
        from make_report_fixture import merge

        merge(url, [REPO / s for s in entry.stores[1:]])
    return ResultStore(url), " + ".join(entry.stores)


def _newest(store: ResultStore) -> object:
    with sqlite3.connect(store.url.removeprefix("sqlite:///")) as conn:
        (t,) = conn.execute("SELECT max(finished_at) FROM results").fetchone()
    from datetime import datetime, timezone

    return datetime.fromisoformat(t).replace(tzinfo=timezone.utc) if t else datetime(2026, 1, 1, tzinfo=timezone.utc)


def render(entry: Entry, workdir: Path) -> str:
    store, label = _open(entry, workdir)
    try:
        if entry.fmt == "compare-md":
            return _compare(entry, store, label)
        if entry.fmt == "history-md":
            return _history(entry, store, label)
        rows, statuses = select(store, entry.selection)
        rep = build_report(rows, entry.baseline, statuses=statuses, selection=entry.selection, store_url=label,
                           generated_at=_newest(store))  # type: ignore[arg-type]
        if entry.fmt == "html":
            from edgebench.controller.render.html import render_html

            return render_html(rep, job_id=entry.job, title=entry.title)
        from edgebench.controller.render.markdown import render_markdown

        return render_markdown(rep)
    finally:
        store.close()


def _compare(entry: Entry, store: ResultStore, label: str) -> str:
    from dataclasses import replace

    from edgebench.controller.compare import compare, parse_side
    from edgebench.controller.render.comparisons import comparison_document
    from edgebench.controller.render.markdown import render_document

    a, b = (parse_side(side, store.url) for side in entry.compare)
    comp = compare(a, b)
    comp.baseline = replace(comp.baseline, store_url=f"sqlite:///{label}")
    comp.candidate = replace(comp.candidate, store_url=f"sqlite:///{label}")
    return render_document(comparison_document(comp, fail_pct=10.0))


def _history(entry: Entry, store: ResultStore, label: str) -> str:
    from edgebench.controller.history import build_history, explain
    from edgebench.controller.render.comparisons import history_document
    from edgebench.controller.render.markdown import render_document
    from edgebench.controller.selection import select_facts

    hist = explain(build_history(select_facts(store, entry.selection)), store)
    return render_document(history_document(hist, entry.selection.describe(), f"sqlite:///{label}"))


def render_all(only: Callable[[Entry], bool] = lambda e: True) -> dict[str, str]:
    out = {}
    with tempfile.TemporaryDirectory(prefix="edgebench-results-") as tmp:
        for entry in REPORTS:
            if only(entry):
                out[entry.out] = render(entry, Path(tmp))
    return out


def screenshot(html: Path, png: Path) -> None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium fonts-dejavu-core)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", "--window-size=1400,2400", f"--screenshot={png}",
                        html.resolve().as_uri()], check=True, capture_output=True, timeout=180)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="Only check; exit 1 when a file is stale.")
    parser.add_argument("--screenshot", action="store_true", help="Also render docs/report-example.png.")
    args = parser.parse_args()
    stale = []
    for path, text in render_all().items():
        target = REPO / path
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    for path in stale:
        print(("stale: " if args.check else "wrote ") + path)
    if args.screenshot:
        screenshot(REPO / "docs/results/fleet-example/report.html", REPO / "docs/report-example.png")
    if args.check and stale:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
