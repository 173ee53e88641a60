"""The HTML report: one self-contained file, rendered for real in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edgebench.controller.render import charts, timeseries
from edgebench.controller.render.html import render_html
from edgebench.controller.report import Report, Selection, build_report, select
from tests.controller.render.stores import copy_store


class _Counter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.external: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs:
            if name in ("src", "href", "xlink:href") and value and not value.startswith("#"):
                self.external.append(value)
            if name == "id" and value and tag in ("section",):
                self.ids.append(value)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    store = copy_store(tmp_path_factory.mktemp("html"), gpu=True)
    rows, statuses = select(store, Selection())
    return build_report(rows, "torch", statuses=statuses, selection=Selection(), store_url=store.url)


@pytest.fixture(scope="module")
def page(report: Report, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("page") / "report.html"
    path.write_text(render_html(report, job_id="fleet-example-h200-09"), encoding="utf-8")
    return path


def test_page_is_self_contained_with_charts_and_tables(page: Path) -> None:
    html = page.read_text()
    parsed = _Counter()
    parsed.feed(html)
    assert parsed.external == []  # nothing to fetch: no CDN, no images, no fonts
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert "url(" not in html.split("</style>")[0]
    # Figure 4 per device (3), fleet charts (MLP, CNN), batch charts (3 devices), the time series
    assert parsed.tags.get("svg", 0) >= 9
    assert parsed.tags.get("table", 0) >= 2 + 2 + 3 * 2
    assert {"machines", "fleet", "device-h200", "device-cpu-1core", "timeseries", "notes"} <= set(parsed.ids)
    assert "Out of memory" in html
    assert "fraction of the sample period during which one or more kernels ran" in html
    assert 'class="num' in html  # numbers right-aligned


def test_timeseries_section_shows_the_chosen_gpu_job(page: Path, report: Report) -> None:
    html = page.read_text()
    section = html[html.index('id="timeseries"'):]
    assert "fleet-example-h200-09" in section.split("</p>")[0]
    for label in ("GPU0 utilisation %", "GPU0 board power W", "GPU0 memory used (device)", "measured window"):
        assert label in section
    # default: the first GPU job; a CPU job draws the runner's CPU and memory instead
    assert report.timeseries_job() is not None and not report.timeseries_job().cpu_only  # type: ignore[union-attr]
    cpu = next(c for c in report.cells if c.cpu_only and (c.device_id, c.job_id) in report.timeseries)
    svg = timeseries.timeseries_chart(cpu, report.timeseries[(cpu.device_id, cpu.job_id)])
    assert "no GPU on this device" in svg and "runner CPU % of one core" in svg


def test_figure4_is_honest_about_cpu_devices(report: Report) -> None:
    sections = {s.device.device_id: s for s in report.device_sections()}
    gpu_svg = charts.figure4(sections["h200"])
    cpu_svg = charts.figure4(sections["cpu-1core"])
    assert gpu_svg.startswith("<svg") and 'role="img"' in gpu_svg
    assert "GPU utilisation % (time a kernel ran)" in gpu_svg and "OOM" in gpu_svg
    assert "CPU use (runner, % of one core)" in cpu_svg and "GPU utilisation" not in cpu_svg


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def _run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (.ci/run installs it with apt)")
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def test_chromium_renders_the_page(page: Path, tmp_path: Path) -> None:
    dom = _run_chromium(["--dump-dom", page.as_uri()], tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert len(re.findall(r"<svg\b", text)) >= 9
    assert len(re.findall(r"<table\b", text)) >= 10
    assert "edgebench report" in text and "h200" in text and "cpu-2core" in text
    shot = tmp_path / "shot.png"
    res = _run_chromium([f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri()], tmp_path / "profile")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1400, 2400)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 200  # drawn: header band, tables, bars
