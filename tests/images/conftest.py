"""Report how long the image builds took (CI has a budget for everything)."""

from __future__ import annotations

from typing import Any

from tests.images.fixtures import BUILD_SECONDS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if BUILD_SECONDS:
        builds = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in BUILD_SECONDS.items())
        terminalreporter.write_line(f"edgebench image builds: {builds}")
