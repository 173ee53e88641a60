"""Energy per power rail inside the measured window(s): pure functions over
snapshots, like :mod:`agent.telemetry.summary`, so replayed Jetson traces go
through exactly the code the agent runs.

A Jetson reports its module's rails (the one GpuSample is the module): each
rail's power series, per source, is integrated over the windows with the same
trapezoid rule (edges interpolated) as a GPU without an energy counter, and
divided into J per epoch, images per J and mJ per image (per inference in
infer mode).
"""

from __future__ import annotations

from collections.abc import Sequence

from edgebench.agent.telemetry.snapshot import Snapshot
from edgebench.agent.telemetry.summary import Window, in_windows, integrate, stat
from edgebench.schemas.telemetry import RailEnergy

# Rails that carry everything the module draws (tegrastats and sysfs use the same names).
MODULE_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")


def rail_series(snapshots: Sequence[Snapshot], name: str, source: str) -> tuple[list[float], list[float]]:
    """(times, watts) of one rail from one source, strictly increasing in time."""
    ts: list[float] = []
    vs: list[float] = []
    for snap in snapshots:
        for gpu in snap.gpus:
            for rail in gpu.rails:
                if rail.name == name and rail.source == source and (not ts or snap.t > ts[-1]):
                    ts.append(snap.t)
                    vs.append(rail.power_w)
    return ts, vs


def per_image(energy_j: float | None, window_images: int | None, measured_epochs: int | None
              ) -> tuple[float | None, float | None, float | None]:
    """(J per epoch, images per J, mJ per image) of one energy figure; None where undefined."""
    if energy_j is None:
        return None, None, None
    per_epoch = energy_j / measured_epochs if measured_epochs else None
    img_per_j = window_images / energy_j if energy_j > 0 and window_images is not None else None
    mj_per_image = energy_j * 1000.0 / window_images if window_images else None
    return per_epoch, img_per_j, mj_per_image


def summarize_rails(snapshots: Sequence[Snapshot], windows: Sequence[Window], window_images: int | None = None,
                    measured_epochs: int | None = None) -> list[RailEnergy]:
    """One RailEnergy per (rail, source) seen in the snapshots, module input first."""
    keys: dict[tuple[str, str], None] = {}
    for snap in snapshots:
        for gpu in snap.gpus:
            for rail in gpu.rails:
                keys.setdefault((rail.name, rail.source), None)
    out: list[RailEnergy] = []
    for name, source in keys:
        ts, watts = rail_series(snapshots, name, source)
        inside = [w for t, w in zip(ts, watts) if in_windows(t, windows)]
        parts = [integrate(ts, watts, b, e) for b, e in windows]
        known = [p for p in parts if p is not None]
        energy_j = sum(known) if known else None
        per_epoch, img_per_j, mj_per_image = per_image(energy_j, window_images, measured_epochs)
        out.append(RailEnergy(
            name=name, source=source,  # type: ignore[arg-type]
            scope="module_input" if name in MODULE_INPUT_RAILS else "rail",
            samples=len(inside), power_w=stat(inside), energy_j=energy_j, energy_j_per_epoch=per_epoch,
            img_per_j=img_per_j, energy_mj_per_image=mj_per_image,
        ))
    out.sort(key=lambda r: (r.scope != "module_input", r.source != "hwmon", r.name))
    return out
