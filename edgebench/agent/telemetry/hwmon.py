"""A Jetson's own power monitors (TI INA3221) read through sysfs.

Every Jetson module carries one or two INA3221s, three channels each, on the
supplies NVIDIA chose per module (Orin Nano/NX and Xavier NX: VDD_IN, the
whole module's input, then VDD_CPU_GPU_CV and VDD_SOC; AGX Orin: VDD_GPU_SOC,
VDD_CPU_CV, VIN_SYS_5V0 and, on a second chip, VDDQ_VDD2_1V8AO, with no
module input channel). tegrastats prints the same sensors; reading sysfs
directly works where tegrastats is absent (an agent container that has /sys,
as every container does) and at the sampler's own rate.

Two kernel drivers, two layouts (zeus reads both, see docs/JETSON.md):

- JetPack 5 and 6, the mainline hwmon driver ``ina3221``:
  ``/sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmon<N>/in<C>_label`` names
  channel C; ``in<C>_input`` is its bus voltage in mV, ``curr<C>_input`` its
  current in mA (Documentation/hwmon/ina3221.rst). Power is V x I, computed
  here. ``in7`` is "sum of shunt voltages", not a rail. A channel wired to
  nothing is labelled NC, and reading its ``*_input`` fails (EIO).
- JetPack 4, NVIDIA's IIO driver ``ina3221x``:
  ``/sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device<N>/rail_name_<C>``,
  with ``in_power<C>_input`` (mW), ``in_voltage<C>_input`` (mV) and
  ``in_current<C>_input`` (mA).

Reading is split like every telemetry source: :func:`read_rails` returns
JSON-able raw values (what a trace records), :func:`rail_power_w` turns one
into watts, so replayed trees and traces go through the same code.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

I2C_DRIVERS = Path("/sys/bus/i2c/drivers")
# labels of channels that are not a supply rail
NOT_RAILS = {"sum of shunt voltages", "nc"}
_HWMON_LABEL = re.compile(r"^in(\d+)_label$")
_IIO_LABEL = re.compile(r"^rail_name_(\d+)$")

RawRails = dict[str, dict[str, float]]  # rail -> {"mv": ..., "ma": ...} or {"mw": ...}


@dataclass(frozen=True)
class RailFiles:
    """Where one rail's readings are: a voltage/current pair, or a power file."""

    name: str
    device: str  # the I2C device, "1-0040"
    channel: int
    voltage_mv: Path | None = None
    current_ma: Path | None = None
    power_mw: Path | None = None


def _label(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def discover_rails(root: Path = I2C_DRIVERS) -> list[RailFiles]:
    """Every INA3221 rail under ``root`` (default /sys/bus/i2c/drivers), first name wins.

    Devices are visited in name order, so a rail name that two chips report
    (never seen, but labels come from the device tree) is read from the lower
    I2C address."""
    rails: dict[str, RailFiles] = {}
    for label_file in sorted(root.glob("ina3221/*/hwmon/hwmon*/in*_label")):
        m = _HWMON_LABEL.match(label_file.name)
        name = _label(label_file)
        if not m or not name or name.lower() in NOT_RAILS or name in rails:
            continue
        c, d = m.group(1), label_file.parent
        volt, curr = _existing(d / f"in{c}_input"), _existing(d / f"curr{c}_input")
        if volt and curr:
            rails[name] = RailFiles(name, label_file.parents[2].name, int(c), voltage_mv=volt, current_ma=curr)
    for label_file in sorted(root.glob("ina3221x/*/iio:device*/rail_name_*")):
        m = _IIO_LABEL.match(label_file.name)
        name = _label(label_file)
        if not m or not name or name.lower() in NOT_RAILS or name in rails:
            continue
        c, d = m.group(1), label_file.parent
        power = _existing(d / f"in_power{c}_input")
        volt, curr = _existing(d / f"in_voltage{c}_input"), _existing(d / f"in_current{c}_input")
        if power or (volt and curr):
            rails[name] = RailFiles(name, label_file.parents[1].name, int(c), voltage_mv=volt, current_ma=curr,
                                    power_mw=power)
    return list(rails.values())


def _number(path: Path) -> float:
    return float(path.read_text().strip())


def read_rails(rails: Iterable[RailFiles]) -> RawRails:
    """One reading of every rail; a rail whose file cannot be read this time is left out."""
    out: RawRails = {}
    for rail in rails:
        try:
            if rail.power_mw is not None:
                out[rail.name] = {"mw": _number(rail.power_mw)}
            elif rail.voltage_mv is not None and rail.current_ma is not None:
                out[rail.name] = {"mv": _number(rail.voltage_mv), "ma": _number(rail.current_ma)}
        except (OSError, ValueError) as exc:
            log.debug("rail %s unreadable: %s", rail.name, exc)
    return out


def rail_power_w(values: dict[str, float]) -> float | None:
    """Watts from one raw rail reading (mW, or mV x mA); None when incomplete or negative."""
    if "mw" in values:
        watts = values["mw"] / 1000.0
    elif "mv" in values and "ma" in values:
        watts = values["mv"] * values["ma"] / 1e6
    else:
        return None
    return watts if watts >= 0 else None
