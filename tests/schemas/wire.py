"""Every message the test suite puts on the session broker, checked in both
directions against the exported JSON Schema (tests/schemas/agreement.py).

tests/conftest.py starts a capture client on ``#`` right after the session's
Mosquitto and checks what it captured at the end of the session; a
disagreement fails the session (as a teardown error naming the message).
"""

from __future__ import annotations

import queue
import sys
import time

from edgebench.common.mqtt import BrokerSettings, MqttClient
from tests.schemas.agreement import disagreement


class WireCapture:
    def __init__(self, url: str):
        self.client = MqttClient(BrokerSettings.from_url(url), f"wire-capture-{time.monotonic_ns()}",
                                 max_inflight=1000)
        self.client.connect()
        self.client.subscribe(["#"], qos=0)

    def check(self) -> None:
        self.client.close()
        payloads = []
        while True:
            try:
                payloads.append(self.client.messages.get_nowait().payload)
            except queue.Empty:
                break
        t0 = time.monotonic()
        problems = [p for p in map(disagreement, set(payloads)) if p]
        print(f"\nwire capture: {len(payloads)} messages ({len(set(payloads))} distinct) checked against the JSON "
              f"Schema in {time.monotonic() - t0:.1f} s: {len(problems)} disagreement(s)", file=sys.stderr)
        assert not problems, "pydantic and the JSON Schema disagree on messages the suite sent:\n" + "\n".join(
            problems[:10])
