"""A stored result's compact facts: what comparisons over many results read instead of the result.

``controller compare`` and ``controller report --history`` look at every
result of a selection, 100,000 of them in the scale benchmark
(benchmarks/report_scale.py). A stored result is 5-250 KB of JSON, mostly its
time series; parsing 100,000 of them takes minutes. The store keeps these
facts in their own narrow table (``result_facts``, controller/store.py),
written when the result is ingested, so a comparison reads a few hundred bytes
per result.

Pure functions of a :class:`Result`; no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from edgebench.schemas import Result

# Set by the runner on ThroughputSummary: img/s of consecutive blocks of
# measured batches inside the window (issue 20 item 2). Read by name so that
# results from before it existed, which lack it, still load.
BLOCKS_FIELD = "block_img_per_s"


def _finite(value: Any) -> float | None:
    """A positive finite number, else None (a device may send inf: pydantic floats admit it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def block_rates(summary: Any) -> list[float]:
    """Per-block img/s of a throughput summary; [] where the runner recorded none."""
    blocks = getattr(summary, BLOCKS_FIELD, None)
    if not blocks:
        return []
    return [v for v in (_finite(b) for b in blocks) if v is not None]


def hardware_of(res: Result) -> str:
    """The device-group hardware: the GPU model of a GPU job, else the CPU model."""
    fp = res.fingerprint
    if res.gpus > 0 and fp.gpus:
        return fp.gpus[0].name[:128]
    return f"CPU {fp.cpu_model}"[:128]


def power_mode_of(res: Result) -> str | None:
    """The power mode of a device group: a Jetson's nvpmodel mode, else a GPU's enforced power limit."""
    validity = res.telemetry.validity if res.telemetry else None
    if validity is not None and validity.jetson is not None and validity.jetson.nvpmodel_mode:
        return validity.jetson.nvpmodel_mode[:64]
    knob = res.knobs.get("power_mode") or getattr(res.job, "power_mode", None)
    if knob:
        return str(getattr(knob, "value", knob))[:64]
    if res.gpus <= 0:
        return None
    limit = None
    if validity is not None and validity.gpus and validity.gpus[0].power_limit_w_max:
        limit = validity.gpus[0].power_limit_w_max
    elif res.fingerprint.gpus and res.fingerprint.gpus[0].power_limit_w:
        limit = res.fingerprint.gpus[0].power_limit_w
    return None if limit is None else f"{limit:.0f} W"


@dataclass(frozen=True)
class Samples:
    """What a result offers as independent-ish samples of its throughput."""

    repeats: list[float] = field(default_factory=list)  # window img/s of each repeat
    blocks: list[float] = field(default_factory=list)  # the headline repeat's batch blocks

    def to_json(self) -> dict[str, Any]:
        return {"repeats": self.repeats, "blocks": self.blocks}


def samples_of(res: Result) -> Samples:
    repeats = [_finite(r.throughput.window_img_per_s) for r in res.runs]
    return Samples(repeats=[v for v in repeats if v is not None], blocks=block_rates(res.summary))


def facts_values(res: Result) -> dict[str, Any]:
    """The ``result_facts`` columns of one result (keys match the table's columns)."""
    fp = res.fingerprint
    gpu = fp.gpus[0] if res.gpus > 0 and fp.gpus else None
    validity = res.telemetry.validity if res.telemetry else None
    tel = res.telemetry
    stats = {
        **samples_of(res).to_json(),
        "reasons": list(validity.reasons) if validity else [],
        "images": sum(r.throughput.images for r in res.runs),
        "energy_j": _finite(tel.energy_j) if tel else None,
        "window_s": _finite(res.summary.window_s),
    }
    return {
        "data_format": res.data_format.value if res.data_format else None,
        "compiled": res.compile,
        "input_placement": res.job.input.value if res.job.input else None,
        "hardware": hardware_of(res),
        "driver": (gpu.driver or None) if gpu else None,
        "image_digest": (fp.container_digest or None),
        "power_mode": power_mode_of(res),
        "verdict": validity.verdict if validity else None,
        "stats_json": json.dumps(stats, separators=(",", ":"), allow_nan=False),
    }
