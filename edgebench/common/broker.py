"""An embedded MQTT broker (amqtt) for the quickstart and single-box use.

Real fleets use Mosquitto (deploy/mosquitto) or a clustered broker; this one
exists so that `controller demo` needs nothing installed but Python packages.
It speaks MQTT 3.1.1 only: clients connect with ``?protocol=311``.

amqtt gives up on a QoS 1 delivery that its subscriber has not acknowledged
within 5 s (amqtt/mqtt/protocol/handler.py) and does not send it again. The
controller acknowledges only while it pumps (after storing), so an event it
misses that way comes back through reconciliation (the agent replays what it
kept); Mosquitto keeps such a message in flight until it is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from edgebench.common.errors import EdgebenchError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BrokerError(EdgebenchError):
    """The embedded broker could not start (the port is taken, ...)."""


class EmbeddedBroker:
    """amqtt running on its own event loop in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None):
        self.host = host
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}?protocol=311"

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        # imported here, in the caller's thread, so that a missing 'broker' extra is an
        # ImportError the CLI names, not a thread that dies and a 10 s timeout
        from amqtt.broker import Broker  # noqa: F401

        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._serve, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise BrokerError(f"the embedded broker did not start within {timeout_s:g} s")
        if self._error is not None:
            raise BrokerError(f"the embedded broker failed: {self._error}")
        return self

    def _serve(self) -> None:
        from amqtt.broker import Broker

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 1000}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        async def boot() -> None:
            self._broker = Broker(config)
            await self._broker.start()

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(10)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
