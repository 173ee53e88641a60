"""Which stored results a report, an export or one side of a comparison covers.

A :class:`Selection` is a set of filters; :func:`select` asks the store for
the rows (its read methods do the SQL) and applies the one filter SQL cannot
do cheaply, tags, which live in device statuses and job specs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TypedDict

from edgebench.controller.errors import ControllerUsageError
from edgebench.controller.store import FactRow, ResultRow, ResultStore
from edgebench.schemas import AgentStatus


class SelectionError(ControllerUsageError, ValueError):
    """A filter names something that does not parse (a time, a workload)."""


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO date/time (naive = UTC) or an age such as ``30m``, ``12h``, ``7d``, ``2w``."""
    text = text.strip()
    m = _RELATIVE.match(text)
    if m:
        start = (now or datetime.now(timezone.utc)) - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
        return start.astimezone(timezone.utc)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SelectionError(f"not a time: {text!r} (use 2026-11-28, 2026-11-28T15:00 or an age like 12h, 7d)")\
            from None
    # stored times are UTC: compare in UTC (SQLite compares them as text)
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


class StoreFilters(TypedDict):
    sweep_ids: tuple[str, ...]
    device_ids: tuple[str, ...]
    backends: tuple[str, ...]
    models: tuple[str, ...]
    workloads: tuple[tuple[str, str], ...]
    since: datetime | None
    until: datetime | None


@dataclass(frozen=True)
class Selection:
    """Which stored results a report (or an export) covers."""

    sweep: str | None = None
    devices: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()  # catalogue names (fashion-mnist-mlp) or model/dataset
    backends: tuple[str, ...] = ()
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def describe(self) -> str:
        parts = []
        if self.sweep:
            parts.append(f"sweep {self.sweep}")
        for name, values in (("device", self.devices), ("tag", self.tags), ("workload", self.workloads),
                             ("backend", self.backends)):
            if values:
                parts.append(f"{name} {', '.join(values)}")
        if self.model:
            parts.append(f"model {self.model}")
        if self.since:
            parts.append(f"since {self.since:%Y-%m-%d %H:%M} UTC")
        if self.until:
            parts.append(f"until {self.until:%Y-%m-%d %H:%M} UTC")
        return "; ".join(parts) or "all stored results"

    def store_filters(self) -> StoreFilters:
        """The filters the store's read methods apply in SQL."""
        return {"sweep_ids": (self.sweep,) if self.sweep else (), "device_ids": self.devices,
                "backends": self.backends, "models": (self.model,) if self.model else (),
                "workloads": tuple(sorted(workload_keys(self.workloads))), "since": self.since,
                "until": self.until}


def workload_keys(names: tuple[str, ...]) -> set[tuple[str, str]]:
    """(model, dataset) of catalogue names or ``model/dataset`` strings."""
    from edgebench.runner.catalogue import WORKLOADS

    keys = set()
    for name in names:
        if name in WORKLOADS:
            keys.add((str(WORKLOADS[name]["model"]), str(WORKLOADS[name]["dataset"])))
        elif "/" in name:
            model, dataset = name.split("/", 1)
            keys.add((model, dataset))
        else:
            raise SelectionError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)} (or model/dataset)")
    return keys


def _tagged(store: ResultStore, rows: list[ResultRow] | list[FactRow], statuses: dict[str, AgentStatus],
            tags: tuple[str, ...]) -> set[tuple[str, str]]:
    wanted = set(tags)
    device_hit = {d for d, s in statuses.items() if wanted & set(s.tags)}
    rest = [(r.job_id, r.device_id) for r in rows if r.device_id not in device_hit]
    spec_tags = store.job_tags(rest)
    return {(r.job_id, r.device_id) for r in rows
            if r.device_id in device_hit or wanted & spec_tags.get((r.job_id, r.device_id), set())}


def select(store: ResultStore, selection: Selection) -> tuple[list[ResultRow], dict[str, AgentStatus]]:
    """The stored results a selection covers, and the statuses of the devices they ran on."""
    rows = store.select_results(**selection.store_filters())
    statuses = {s.device_id: s for s in store.devices()}
    if selection.tags:
        keep = _tagged(store, rows, statuses, selection.tags)
        rows = [r for r in rows if (r.job_id, r.device_id) in keep]
    used = {r.device_id for r in rows}
    return rows, {d: s for d, s in statuses.items() if d in used}


def select_facts(store: ResultStore, selection: Selection) -> list[FactRow]:
    """The compact rows (controller/facts.py) of the OK results a selection covers, oldest first."""
    rows = store.select_facts(**selection.store_filters())
    if selection.tags:
        statuses = {s.device_id: s for s in store.devices()}
        keep = _tagged(store, rows, statuses, selection.tags)
        rows = [r for r in rows if (r.job_id, r.device_id) in keep]
    return rows
