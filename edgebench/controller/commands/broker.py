"""``controller broker``: an embedded MQTT broker for a single box or a trial."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from edgebench.common.broker import EmbeddedBroker
from edgebench.controller.commands._options import out


def broker(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 1883,
) -> None:
    """Run the embedded (amqtt, MQTT 3.1.1; the 'broker' extra) broker until interrupted.
    Fleets use Mosquitto (deploy/mosquitto)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedBroker(host, port) as b:
        out.print(f"embedded broker on {b.url} (clients use ?protocol=311)")
        stop.wait()
