"""Replayed Jetson sysfs trees: tests/fixtures/hwmon_*.json written out as files.

Each fixture lists a module's INA3221 files (path under /sys/bus/i2c/drivers
-> content) and says where its layout and values come from. A null content is
an input the board cannot read (an NC channel: EIO); it becomes a directory,
whose read fails with an OSError just as the board's file does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TREES = sorted(p.stem for p in FIXTURES.glob("hwmon_*.json"))


def tree_doc(stem: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / f"{stem}.json").read_text())
    return doc


def materialize(stem: str, root: Path) -> Path:
    """Write the tree under ``root`` (standing for /sys/bus/i2c/drivers); returns root."""
    for rel, content in tree_doc(stem)["files"].items():
        path = root / rel
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{content}\n")
    return root
