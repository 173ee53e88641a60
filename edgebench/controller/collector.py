"""The long-lived collector behind ``controller collect``: store every event as it
arrives, reconcile lost ones every few minutes, and outlive a store outage."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edgebench.controller.fleet import FleetClient, StoreUnavailable
from edgebench.controller.reconcile import DEFAULT_POLICY, ReconcilePolicy, reconcile
from edgebench.controller.store import ResultStore
from edgebench.schemas import JobEvent

log = logging.getLogger(__name__)

FIRST_RECONCILE_S = 30.0  # after start: retained statuses and the session's backlog have arrived by then


def run_collector(fleet: FleetClient, store: ResultStore, stop: threading.Event,
                  on_event: Callable[[JobEvent, bool], None] | None = None,
                  policy: ReconcilePolicy = DEFAULT_POLICY, reconcile_every_s: float | None = 300.0,
                  clock: Callable[[], float] = time.monotonic) -> None:
    """Pump until ``stop`` is set. ``reconcile_every_s`` None: never reconcile."""
    next_reconcile = clock() + min(FIRST_RECONCILE_S, reconcile_every_s or 0)
    backoff_s = 1.0
    while not stop.is_set():
        try:
            fleet.pump(0.5, on_event)
            backoff_s = 1.0
        except StoreUnavailable as exc:
            log.error("%s; retrying in %.0f s", exc, backoff_s)
            stop.wait(backoff_s)
            backoff_s = min(60.0, backoff_s * 2)
            continue
        if reconcile_every_s is not None and clock() >= next_reconcile:
            next_reconcile = clock() + reconcile_every_s
            try:
                reconcile(fleet, store, policy=policy)
            except Exception:  # noqa: BLE001 - a failed pass is tried again next interval
                log.exception("reconciliation pass failed")
