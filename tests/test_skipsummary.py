"""The end-of-run summary of skipped test groups (tests/skipsummary.py), on a real pytest run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.skipsummary import group_of


def test_groups_come_from_the_reason_then_the_marker() -> None:
    assert group_of("the mosquitto binary is not installed", set()) == "mosquitto"
    assert group_of("no Docker engine", {"docker"}) == "docker"
    assert group_of("venv keras-tf1-py36 missing", {"legacy"}) == "legacy"
    assert group_of("something else entirely", {"postgres"}) == "postgres"
    assert group_of("could not import 'torch': No module named 'torch'", set()) == "package"
    assert group_of("??", set()) == "other"


def test_a_run_ends_with_the_skipped_groups_and_writes_them(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from tests.skipsummary import pytest_addoption, pytest_terminal_summary\n")
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_no_broker(): pytest.skip('the mosquitto binary is not installed')\n"
        "@pytest.mark.docker\n"
        "def test_engine(): pytest.skip('no Docker engine')\n"
        "@pytest.mark.docker\n"
        "def test_engine2(): pytest.skip('no Docker engine')\n")
    summary = tmp_path / "skips.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "-W", "ignore::pytest.PytestUnknownMarkWarning", "--rootdir", str(tmp_path),
                           "--skip-summary-json", str(summary), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped groups" in proc.stdout
    assert "docker: 2 skipped (no Docker engine) -> scripts/start-dockerd.sh" in proc.stdout
    assert "mosquitto: 1 skipped" in proc.stdout
    assert json.loads(summary.read_text()) == {
        "mosquitto": {"count": 1, "reasons": ["the mosquitto binary is not installed"]},
        "docker": {"count": 2, "reasons": ["no Docker engine"]},
    }
