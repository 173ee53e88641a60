"""``controller deploy``: the agent container on a real Docker engine (here
the local one, through unix://), upgraded and rolled back, with the agents
announcing themselves on a real broker."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from edgebench.common import pki
from edgebench.common.cli import EdgebenchGroup
from edgebench.controller.commands.deploy import deploy_cmd
from edgebench.controller.deploy import (
    LABEL_IMAGE,
    LABEL_IMAGE_ID,
    LABEL_PREVIOUS,
    LABEL_PREVIOUS_ID,
    DeployError,
    DeploySettings,
    Target,
    deploy,
    device_files,
    gpu_device_requests,
    render_agent_config,
    rollback,
    wait_online,
)
from edgebench.controller.fleet import FleetClient
from edgebench.controller.store import ResultStore
from tests.images.fixtures import agent_containers, agent_image, build, docker_client  # noqa: F401 - fixtures

LOCAL = "unix:///var/run/docker.sock"


# -- without an engine -------------------------------------------------------------------
def test_target_parse() -> None:
    assert Target.parse("box1=ssh://ops@10.0.0.5") == Target("box1", "ssh://ops@10.0.0.5")
    assert Target.parse("ssh://ops@edge-07.plant.example") == Target("edge-07", "ssh://ops@edge-07.plant.example")
    assert Target.parse("edge-08") == Target("edge-08", "ssh://edge-08")
    assert Target.parse("tcp://10.0.0.9:2376") == Target("10.0.0.9", "tcp://10.0.0.9:2376")
    assert Target.parse(f"dev-a={LOCAL}").container_name == "edgebench-agent-dev-a"
    with pytest.raises(DeployError):
        Target.parse("box=ftp://x")


def test_gpu_device_requests() -> None:
    assert gpu_device_requests("none") == []
    [req] = gpu_device_requests("all")
    assert req["Count"] == -1 and req["Capabilities"] == [["gpu"]]
    [req] = gpu_device_requests("0,GPU-1234")
    assert req["DeviceIDs"] == ["0", "GPU-1234"]


def test_agent_config_with_device_credentials(tmp_path: Path) -> None:
    layout = pki.init_pki(tmp_path / "pki", ["broker.local"])
    pki.issue_device(layout, "box1", password="s3cret-password")
    files = device_files(tmp_path / "pki", "box1")
    assert {"ca.crt", "client.crt", "client.key", "password"} <= set(files)
    settings = DeploySettings(image="edgebench/agent:1", broker_url="mqtts://broker.local:8883", fleet="plant",
                              agent_config={"tags": ["line1"], "fleet": "plant-a"}, dataset_root="/srv/data")
    doc = yaml.safe_load(render_agent_config(Target("box1", LOCAL), settings, files))
    assert doc["device_id"] == "box1" and doc["fleet"] == "plant-a"  # the base config's fleet wins
    assert doc["broker_url"] == "mqtts://broker.local:8883" and doc["tags"] == ["line1"]
    assert doc["state_dir"] == "/var/lib/edgebench-agent" and doc["dataset_root"] == "/srv/data"
    assert doc["ca_file"] == "/etc/edgebench/ca.crt" and doc["key_file"] == "/etc/edgebench/client.key"
    assert doc["username"] == "box1" and doc["password"] == "s3cret-password"
    with pytest.raises(DeployError, match="invalid agent configuration"):
        render_agent_config(Target("box1", LOCAL), DeploySettings(
            image="x", broker_url="mqtt://b", fleet="f", agent_config={"no_such_field": 1}), {})
    with pytest.raises(DeployError, match="issue the device first"):
        device_files(tmp_path / "pki", "box2")


# -- a real engine -------------------------------------------------------------------------
def _online(cfg, devices: list[str], since: datetime) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    with FleetClient(cfg, ResultStore(cfg.store_url)) as fleet:
        return wait_online(fleet, devices, since, timeout_s=90)


def _now() -> datetime:
    return datetime.now(timezone.utc) - timedelta(seconds=2)


@pytest.mark.docker
def test_deploy_upgrade_and_rollback(docker_client, agent_image, agent_containers, mosquitto,  # noqa: F811
                                     controller_cfg, fleet) -> None:
    v1 = agent_image
    v2 = build("agent", "0.0.0-test2")  # same layers, other labels: another image id
    assert v1.image_id != v2.image_id
    devices = [f"{fleet}-a", f"{fleet}-b"]
    agent_containers.extend(devices)
    targets = [Target(d, LOCAL) for d in devices]
    settings = DeploySettings(image=v1.tag, broker_url=mosquitto.url, fleet=fleet, gpus="none",
                              agent_config={"tags": ["docker"]})

    since = _now()
    outcomes = [deploy(t, settings) for t in targets]
    assert [(o.ok, o.action, o.previous) for o in outcomes] == [(True, "deployed", None)] * 2, outcomes
    assert _online(controller_cfg, devices, since) == dict.fromkeys(devices, True)
    first = docker_client.containers.get(targets[0].container_name)
    host = first.attrs["HostConfig"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["NetworkMode"] == "host" and host["PidMode"] == "host" and host["GroupAdd"]
    assert {m["Destination"]: m["RW"] for m in first.attrs["Mounts"]} == {
        "/var/lib/edgebench-agent": True, "/etc/edgebench": False, "/var/run/docker.sock": True}
    assert first.image.id == v1.image_id and first.labels[LABEL_IMAGE] == v1.tag
    assert LABEL_PREVIOUS not in first.labels

    other_id = docker_client.containers.get(targets[1].container_name).id

    # upgrade one of them
    since = _now()
    up = deploy(targets[0], DeploySettings(**{**settings.__dict__, "image": v2.tag}))
    assert (up.ok, up.action, up.image, up.previous) == (True, "upgraded", v2.tag, v1.tag), up
    assert _online(controller_cfg, devices[:1], since) == {devices[0]: True}
    upgraded = docker_client.containers.get(targets[0].container_name)
    assert upgraded.image.id == v2.image_id
    assert upgraded.labels[LABEL_PREVIOUS] == v1.tag and upgraded.labels[LABEL_PREVIOUS_ID] == v1.image_id
    assert upgraded.attrs["Config"]["Image"] == v2.tag  # docker ps shows a readable name
    other = docker_client.containers.get(targets[1].container_name)
    assert other.id == other_id and other.image.id == v1.image_id  # untouched
    # the agent's store is in the same named volume as before; the old container is gone
    assert {m.get("Name") for m in upgraded.attrs["Mounts"]} >= {targets[0].state_volume, targets[0].config_volume}
    assert not docker_client.containers.list(all=True, filters={"name": f"{targets[0].container_name}-prev"})

    # and roll it back
    since = _now()
    back = rollback(targets[0], settings)
    assert (back.ok, back.action, back.image, back.previous) == (True, "rolled back", v1.tag, v2.tag), back
    assert _online(controller_cfg, devices[:1], since) == {devices[0]: True}
    restored = docker_client.containers.get(targets[0].container_name)
    assert restored.image.id == v1.image_id
    assert restored.labels[LABEL_IMAGE] == v1.tag and restored.labels[LABEL_IMAGE_ID] == v1.image_id
    assert restored.labels[LABEL_PREVIOUS] == v2.tag


@pytest.mark.docker
def test_deploy_command_table_and_exit_status(docker_client, agent_image, agent_containers, mosquitto,  # noqa: F811
                                              controller_cfg, fleet, tmp_path) -> None:
    """One host deploys and comes online, one engine is unreachable: both get
    a row, and the command exits 1."""
    app = typer.Typer(cls=EdgebenchGroup)  # the CLI edge: errors to one line and an exit code

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = controller_cfg

    app.command("deploy")(deploy_cmd)
    device = f"{fleet}-c"
    agent_containers.append(device)
    base = tmp_path / "agent.yaml"
    base.write_text(yaml.safe_dump({"tags": ["cli"]}))
    result = CliRunner().invoke(app, [
        "deploy", f"{device}={LOCAL}", f"{fleet}-down=tcp://127.0.0.1:9", "--image", agent_image.tag,
        "--gpus", "none", "--agent-config", str(base), "--wait-online", "90"])
    assert result.exit_code == 1, result.output
    # off a terminal: a header and one tab-separated row per host, every value whole
    header, *lines = result.stdout.splitlines()
    assert header.split("\t")[:3] == ["device", "engine", "outcome"]
    rows = {line.split("\t")[0]: dict(zip(header.split("\t"), line.split("\t"))) for line in lines}
    assert rows[device]["outcome"] == "deployed" and rows[device]["online"] == "yes"
    assert rows[f"{fleet}-down"]["outcome"] == "failed"
    assert "1 of 2 host(s) failed" in result.stderr
    # a rollback with nothing to roll back to is a failure too
    again = CliRunner().invoke(app, ["deploy", f"{device}={LOCAL}", "--rollback", "--wait-online", "0"])
    assert again.exit_code == 1 and "no previous image" in again.output.replace("\n", " ")
