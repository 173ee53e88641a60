"""Assemble the Jetson telemetry traces that CI replays (tests/fixtures/jetson_trace_*.jsonl).

No Jetson is reachable from the development machines, so these are not
recordings of one run: each is a trace in the agent's own format (the one
agent.telemetry.trace writes) whose raw readings are real-format data from
public sources, laid on a time axis of ours:

- ``line``: real tegrastats lines of the module (tests/fixtures/tegrastats_*.txt,
  sources in their first lines), idle outside the measured window and, where a
  busy line exists (Orin Nano), busy inside it;
- ``hwmon``: the INA3221 rails as sysfs gives them (bus mV, mA), the values of
  tests/fixtures/hwmon_*.json for the idle line, and for the busy line the
  same split of that line's rail powers (see the notes in those files).

Ticks every 0.1 s (the agent's default interval), a window from 1.0 s to 5.0 s
whose edges fall on ticks (the sampler takes a fresh tick at each edge), and an
end record saying how many images and epochs the window held.

    python scripts/make_jetson_traces.py    # rewrites the two fixtures
"""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
T0 = 1_764_620_000.0  # 2025-12-01T20:13:20Z, an arbitrary epoch for the time axis


def lines(stem: str) -> list[str]:
    text = (FIXTURES / f"{stem}.txt").read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def tree_rails(stem: str) -> dict[str, dict[str, float]]:
    files = json.loads((FIXTURES / f"{stem}.json").read_text())["files"]
    rails: dict[str, dict[str, float]] = {}
    for path, value in files.items():
        name = path.rsplit("/", 1)[-1]
        if name.startswith("in") and name.endswith("_label") and value not in ("sum of shunt voltages", "NC"):
            base = path.rsplit("/", 1)[0]
            c = name[2:-6]
            rails[value] = {"mv": float(files[f"{base}/in{c}_input"]), "ma": float(files[f"{base}/curr{c}_input"])}
    return rails


def trace(name: str, note: str, inventory: dict[str, object], idle: tuple[str, dict], busy: tuple[str, dict],
          images: int, epochs: int) -> None:
    out = [{"kind": "header", "format": 1, "source": "jetson", "interval_s": 0.1, "inventory": [inventory],
            "host": "replayed", "recorded_at": T0, "note": note}]
    for k in range(61):
        t = round(T0 + 0.1 * k, 3)
        if k == 10:
            out.append({"kind": "window", "edge": "begin", "t": t})
        line, rails = busy if 10 <= k <= 50 else idle
        out.append({"kind": "tick", "t": t, "raw": {"line": line, "hwmon": rails},
                    "proc": {"pids": [4242], "cpu_pct": 98.0 if 10 <= k <= 50 else 3.0, "rss_bytes": 1_200_000_000}})
        if k == 50:
            out.append({"kind": "window", "edge": "end", "t": t})
    out.append({"kind": "end", "t": round(T0 + 6.1, 3), "window_images": images, "measured_epochs": epochs})
    (FIXTURES / name).write_text("".join(json.dumps(o, separators=(",", ":")) + "\n" for o in out))


def main() -> None:
    nano_idle, nano_busy = lines("tegrastats_orin_nano_r36")
    # the busy line's rail powers (16321/7104/3120 mW) at a 4.976 V bus: the input sags under load
    busy_rails = {"VDD_IN": {"mv": 4976.0, "ma": 3280.0}, "VDD_CPU_GPU_CV": {"mv": 4976.0, "ma": 1428.0},
                  "VDD_SOC": {"mv": 4976.0, "ma": 627.0}}
    trace("jetson_trace_orin_nano_r36.jsonl",
          "Assembled by scripts/make_jetson_traces.py: real Orin Nano Super tegrastats lines "
          "(tegrastats_orin_nano_r36.txt: idle outside the window, busy inside) and the INA3221 rails of "
          "hwmon_orin_nano_r36.json; the time axis is ours.",
          {"index": 0, "name": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
           "uuid": None, "driver": "L4T R36.4", "cuda": None, "mem_total_bytes": 7_990_149_120,
           "power_limit_w": None},
          (nano_idle, tree_rails("hwmon_orin_nano_r36")), (nano_busy, busy_rails), images=8000, epochs=2)
    (nx,) = lines("tegrastats_xavier_nx_r35")
    trace("jetson_trace_xavier_nx_r35.jsonl",
          "Assembled by scripts/make_jetson_traces.py: the real Xavier NX tegrastats line "
          "(tegrastats_xavier_nx_r35.txt, the only one: the same reading all along) and the INA3221 rails of "
          "hwmon_xavier_nx_r35.json; the time axis is ours.",
          {"index": 0, "name": "NVIDIA Jetson Xavier NX Developer Kit", "uuid": None, "driver": "L4T R35.4",
           "cuda": None, "mem_total_bytes": 7_183_675_392, "power_limit_w": None},
          (nx, tree_rails("hwmon_xavier_nx_r35")), (nx, tree_rails("hwmon_xavier_nx_r35")), images=640, epochs=1)


if __name__ == "__main__":
    main()
