"""MQTT topic layout. Everything a device reads or writes lives under its own
subtree, so one ACL pattern confines each device (see deploy/mosquitto)."""

from __future__ import annotations

ROOT = "edgebench/v1"


def agent_base(fleet: str, device_id: str) -> str:
    return f"{ROOT}/{fleet}/agents/{device_id}"


def jobs(fleet: str, device_id: str) -> str:
    return f"{agent_base(fleet, device_id)}/jobs"


def events(fleet: str, device_id: str) -> str:
    return f"{agent_base(fleet, device_id)}/events"


def status(fleet: str, device_id: str) -> str:
    return f"{agent_base(fleet, device_id)}/status"


def group_jobs(fleet: str, group: str) -> str:
    return f"{ROOT}/{fleet}/groups/{group}/jobs"


def fleet_jobs(fleet: str) -> str:
    return f"{ROOT}/{fleet}/jobs"


def all_events(fleet: str) -> str:
    return f"{ROOT}/{fleet}/agents/+/events"


def all_status(fleet: str) -> str:
    return f"{ROOT}/{fleet}/agents/+/status"
