"""Stand-ins for a Jetson's ``nvpmodel`` and ``jetson_clocks`` (no Jetson is
reachable here), for the power-mode tests.

They print what the real tools print, in the formats of JetPack 5/6 as
recorded in public sources: ``nvpmodel -q`` as in jetson_stats' emulator
(rbonghi/jetson_stats tests/nvpmodel) and NVIDIA forum/README captures
("NVPM WARN: fan mode is not set!", "NV Power Mode: MAXN_SUPER", "2"); a mode
that changes the number of online cores answers ``-m`` with the reboot prompt
captured on an Orin Nano and a Thor ("NVPM WARN: Reboot required for changing
to this power mode: 3", "DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:",
then "NVPM ERROR: optMask is 1, no request for power mode" on any other
answer). The modes are an Orin Nano Super's on JetPack 6.2 (0 15W, 1 25W,
2 MAXN_SUPER, 3 7W). Every call is appended to ``calls.log`` so a test can
check exactly which modes were set, and in which order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORIN_NANO_MODES = {0: "15W", 1: "25W", 2: "MAXN_SUPER", 3: "7W"}
REBOOT_MODES = (3,)  # 7W takes CPU cores offline: a reboot on the real board

NVPMODEL = r'''
import json, sys
from pathlib import Path
here = Path(__file__).resolve().parent
state = here / "state.json"
cfg = json.loads(state.read_text())
with (here / "calls.log").open("a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
modes = {int(k): v for k, v in cfg["modes"].items()}
args = sys.argv[1:]
if args[:1] in (["-q"], ["--query"]):
    print("NVPM WARN: fan mode is not set!")
    print("NV Power Mode: " + modes[cfg["mode"]])
    print(cfg["mode"])
    sys.exit(0)
if args[:1] in (["-m"], ["--mode"]):
    want = int(args[1])
    if want not in modes:
        print("NVPM ERROR: Invalid power mode %d" % want)
        sys.exit(1)
    if want in cfg["reboot"] and want != cfg["mode"]:
        print("NVPM WARN: Golden image context is already created")
        print("NVPM WARN: Reboot required for changing to this power mode: %d" % want)
        print("NVPM WARN: DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:")
        answer = sys.stdin.readline().strip()
        if answer.lower() == "yes":
            print("NVPM WARN: rebooting")
            sys.exit(0)
        print("NVPM ERROR: optMask is 1, no request for power mode")
        sys.exit(255)
    if cfg.get("refuse"):
        print("NVPM ERROR: failed to set power mode")
        sys.exit(1)
    cfg["mode"] = want
    state.write_text(json.dumps(cfg))
    sys.exit(0)
print("usage: nvpmodel [-q] [-m MODE]")
sys.exit(2)
'''

# jetson_clocks --show of an Orin Nano, clocks not pinned (the floor below the ceiling)
JETSON_CLOCKS = r'''
import sys
if sys.argv[1:] != ["--show"]:
    sys.exit(1)
print("SOC family:tegra234  Machine:NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super")
print("Online CPUs: 0-5")
for cpu in range(6):
    print("cpu%d: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=1728000 CurrentFreq=1344000 "
          "IdleStates: WFI=1 c7=1 " % cpu)
print("GPU MinFreq=306000000 MaxFreq=1020000000 CurrentFreq=306000000")
print("EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=0")
print("FAN Dynamic Speed control=active hwmon1_pwm=109")
print("NV Power Mode: MAXN_SUPER")
'''


class FakeJetsonTools:
    """A bin directory holding nvpmodel and jetson_clocks, and their state."""

    def __init__(self, root: Path, mode: int = 2, modes: dict[int, str] | None = None,
                 reboot: tuple[int, ...] = REBOOT_MODES) -> None:
        self.bin = root
        root.mkdir(parents=True, exist_ok=True)
        self.state = root / "state.json"
        self.calls_log = root / "calls.log"
        self.state.write_text(json.dumps({"mode": mode, "modes": {str(k): v for k, v in
                                                                  (modes or ORIN_NANO_MODES).items()},
                                          "reboot": list(reboot)}))
        for name, body in (("nvpmodel", NVPMODEL), ("jetson_clocks", JETSON_CLOCKS)):
            path = root / name
            path.write_text(f"#!{sys.executable}\n{body}")
            path.chmod(0o755)

    @property
    def mode(self) -> int:
        return int(json.loads(self.state.read_text())["mode"])

    @mode.setter
    def mode(self, value: int) -> None:
        """Someone else changes the mode (an operator, a thermal policy)."""
        cfg = json.loads(self.state.read_text())
        cfg["mode"] = value
        self.state.write_text(json.dumps(cfg))

    def refuse(self, on: bool = True) -> None:
        cfg = json.loads(self.state.read_text())
        cfg["refuse"] = on
        self.state.write_text(json.dumps(cfg))

    def calls(self) -> list[str]:
        return self.calls_log.read_text().splitlines() if self.calls_log.exists() else []

    def sets(self) -> list[int]:
        """The modes set with -m, in order."""
        return [int(c.split()[1]) for c in self.calls() if c.startswith("-m ")]
