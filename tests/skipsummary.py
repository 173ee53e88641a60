"""A summary of skipped tests by group (docker, legacy, postgres, browser, mosquitto ...),
printed at the end of every run, so a run that skipped a whole group says so and why.

``--skip-summary-json PATH`` (or ``EDGEBENCH_SKIP_SUMMARY``) also writes it as JSON:
``{"docker": {"count": 12, "reasons": ["no Docker engine"]}, ...}``. ``.ci/run`` reads it
and fails when a group it provisions was skipped.

The hooks are imported into tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

# Groups that the machine can provide, with what provides them. A skip's reason decides its group
# first (it says what was missing); the test's marker second.
GROUPS: dict[str, tuple[str, str]] = {
    "mosquitto": (r"mosquitto", "apt-get install mosquitto mosquitto-clients"),
    "docker": (r"docker", "scripts/start-dockerd.sh (as root)"),
    "legacy": (r"venv|python 3\.6|pyenv|legacy", "scripts/setup-legacy-venvs.sh"),
    "postgres": (r"postgres|initdb|pg_ctl", "apt-get install postgresql"),
    "browser": (r"chromium|browser", "apt-get install chromium"),
    "gpu": (r"\bgpu\b|cuda|nvml", "a machine with an NVIDIA GPU"),
    "wheel": (r"wheel", "the CPU wheels in EDGEBENCH_WHEELHOUSE"),
    "package": (r"could not import|no module named", "make install (a missing Python package)"),
}
MARKERS = ("docker", "legacy", "postgres", "browser", "mosquitto", "gpu")


def group_of(reason: str, markers: set[str]) -> str:
    for name, (pattern, _) in GROUPS.items():
        if re.search(pattern, reason, re.IGNORECASE):
            return name
    return next((m for m in MARKERS if m in markers), "other")


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--skip-summary-json", default=os.environ.get("EDGEBENCH_SKIP_SUMMARY"),
                     help="write the skipped tests per group to this JSON file")


def summarise(reports: list[Any]) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "reasons": []})
    for report in reports:
        if not getattr(report, "skipped", False) or hasattr(report, "wasxfail"):
            continue
        reason = _reason(report)
        markers = {k for k, v in getattr(report, "keywords", {}).items() if v}
        group = groups[group_of(reason, markers)]
        group["count"] += 1
        if reason not in group["reasons"]:
            group["reasons"].append(reason)
    return dict(groups)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    groups = summarise(terminalreporter.stats.get("skipped", []))
    path = config.getoption("--skip-summary-json")
    if path:
        Path(path).write_text(json.dumps(groups, indent=2))
    if not groups:
        return
    terminalreporter.section("skipped groups")
    for name, group in sorted(groups.items(), key=lambda kv: -kv[1]["count"]):
        fix = GROUPS.get(name, ("", ""))[1]
        reasons = "; ".join(group["reasons"][:3]) + (" ..." if len(group["reasons"]) > 3 else "")
        terminalreporter.write_line(f"{name}: {group['count']} skipped ({reasons})" + (f" -> {fix}" if fix else ""))
