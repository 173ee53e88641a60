"""CPU package energy from Linux powercap (RAPL), read around LoadGen's timed run.

Each top-level zone ``/sys/class/powercap/intel-rapl:N`` (name ``package-N``; AMD's
kernel driver exposes its packages under the same ``intel-rapl`` names) has a
monotonically rising ``energy_uj`` that wraps at ``max_energy_range_uj``. The energy is
the whole package's, every process on it: the result labels it ``cpu_package``.
``energy_uj`` is root-only on kernels since 5.10 (CVE-2020-8694): unreadable means no
figure, never a guess.
"""

import os

ROOT = "/sys/class/powercap"


def _read_int(path):
    with open(path) as fh:
        return int(fh.read().strip())


def package_zones(root=ROOT):
    """[(zone dir name, zone name, max range uJ)] of readable package zones."""
    zones = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return zones
    for entry in names:
        # top-level zones only (intel-rapl:0, not the core/uncore/dram sub-zones intel-rapl:0:0)
        if not entry.startswith("intel-rapl:") or entry.count(":") != 1:
            continue
        base = os.path.join(root, entry)
        try:
            with open(os.path.join(base, "name")) as fh:
                name = fh.read().strip()
            _read_int(os.path.join(base, "energy_uj"))
            max_uj = _read_int(os.path.join(base, "max_energy_range_uj"))
        except (OSError, ValueError):
            continue
        if name.startswith("package"):
            zones.append((entry, name, max_uj))
    return zones


class PackageEnergy(object):
    """begin() then end() -> joules over the interval (None where RAPL is not readable)."""

    def __init__(self, root=ROOT):
        self.root = root
        self.zones = package_zones(root)
        self._start = None

    @property
    def available(self):
        return bool(self.zones)

    def domains(self):
        return ["%s (%s)" % (entry, name) for entry, name, _ in self.zones]

    def _read(self):
        return [_read_int(os.path.join(self.root, entry, "energy_uj")) for entry, _, _ in self.zones]

    def begin(self):
        self._start = self._read() if self.zones else None

    def end(self):
        if not self.zones or self._start is None:
            return None
        total_uj = 0
        for (_, _, max_uj), a, b in zip(self.zones, self._start, self._read()):
            total_uj += (b - a) if b >= a else (max_uj - a + b)  # one wrap at most per run
        return total_uj / 1e6
