"""Deploy, upgrade and roll back the agent container on Docker hosts.

Each target is a Docker engine reached through the Docker SDK (``ssh://``,
``tcp://`` with TLS, ``unix://``) and one device id. On it the agent runs as
the container ``edgebench-agent-<device>``:

* restart policy ``unless-stopped``, host network (the broker is reached like
  any host process), host PID namespace (NVML reports GPU memory by host PID,
  and the runner containers' PIDs are host PIDs);
* the GPUs as a device request (the NVIDIA container toolkit injects NVML);
* the engine's socket, to start runner containers, with the socket's group
  added so the unprivileged agent user may use it;
* two named volumes: ``edgebench-agent-<device>-state`` (its SQLite store and
  job directories; survives upgrades) and ``edgebench-agent-<device>-config``
  (agent.yaml and the device's certificates, mounted read-only), written
  through the Docker API, so a deploy needs nothing on the host but Docker;
* labels recording the image it runs and the image it replaced, which is
  what ``rollback`` restores.

An upgrade stops the old container only after the new one was created, starts
the new one, and puts the old one back if the new one does not stay up.
"""

from __future__ import annotations

import io
import re
import socket
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import yaml

from edgebench.common.agentconfig import AgentConfig
from edgebench.controller.errors import ControllerError

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from edgebench.controller.fleet import FleetClient

CONTAINER_PREFIX = "edgebench-agent-"
STATE_DIR = "/var/lib/edgebench-agent"
CONFIG_DIR = "/etc/edgebench"
AGENT_UID = 10001  # the user of every edgebench image (images/common/add-user.sh)

LABEL_ROLE = "edgebench.role"
LABEL_DEVICE = "edgebench.device"
LABEL_IMAGE = "edgebench.deploy.image"
LABEL_IMAGE_ID = "edgebench.deploy.image-id"
LABEL_PREVIOUS = "edgebench.deploy.previous-image"
LABEL_PREVIOUS_ID = "edgebench.deploy.previous-image-id"
LABEL_AT = "edgebench.deploy.at"


class DeployError(ControllerError):
    pass


# -- targets -------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    device_id: str
    url: str  # the Docker engine: ssh://user@host, tcp://host:2376, unix:///var/run/docker.sock

    @classmethod
    def parse(cls, text: str) -> Target:
        """``[DEVICE=]ENGINE``. ENGINE is a Docker URL or a bare host name
        (meaning ``ssh://host``); without DEVICE the device id is the host name
        (or this machine's for ``unix://``)."""
        device, sep, url = text.partition("=")
        if not sep or "://" in device:
            device, url = "", text
        if "://" not in url:
            url = f"ssh://{url}"
        parts = urlparse(url)
        if parts.scheme not in ("ssh", "tcp", "unix", "http", "https"):
            raise DeployError(f"{text!r}: the engine must be ssh://, tcp:// or unix://")
        if not device:
            host = parts.hostname or socket.gethostname()
            device = re.sub(r"[^A-Za-z0-9_.-]", "-", host.split(".")[0] if not _is_ip(host) else host)
        return cls(device, url)

    @property
    def container_name(self) -> str:
        return CONTAINER_PREFIX + self.device_id

    @property
    def state_volume(self) -> str:
        return f"{self.container_name}-state"

    @property
    def config_volume(self) -> str:
        return f"{self.container_name}-config"


def _is_ip(host: str) -> bool:
    return bool(re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+", host))


@dataclass(frozen=True)
class EngineTls:
    """Client certificates for ``tcp://host:2376`` (docs.docker.com: protect the daemon socket)."""

    ca_cert: Path
    client_cert: Path
    client_key: Path


def connect(url: str, tls: EngineTls | None = None, timeout_s: int = 60) -> docker.DockerClient:
    """A client for the engine at ``url``. ssh:// goes through the system ssh
    client (keys, agent and ~/.ssh/config as for any ssh session)."""
    import docker
    from docker.tls import TLSConfig

    try:
        if url.startswith("ssh://"):
            return docker.DockerClient(base_url=url, use_ssh_client=True, timeout=timeout_s)
        tls_config: TLSConfig | bool = False
        if tls is not None:
            tls_config = TLSConfig(client_cert=(str(tls.client_cert), str(tls.client_key)),
                                   ca_cert=str(tls.ca_cert), verify=True)
            url = url.replace("tcp://", "https://", 1)
        return docker.DockerClient(base_url=url, tls=tls_config, timeout=timeout_s)
    except docker.errors.DockerException as exc:
        raise DeployError(f"cannot reach the Docker engine at {url}: {exc}") from exc


# -- settings -----------------------------------------------------------------------
@dataclass
class DeploySettings:
    image: str
    broker_url: str
    fleet: str
    agent_config: dict[str, Any] = field(default_factory=dict)  # the base agent.yaml
    gpus: str = "all"  # all | none | 0,1 | GPU-uuid,...
    dataset_root: str | None = None  # host path, mounted read-only at the same path
    docker_socket: str = "/var/run/docker.sock"
    pki_dir: Path | None = None  # edgebench.common.pki root: devices/<id>/ and signing/jobs.pub
    env: dict[str, str] = field(default_factory=dict)
    tls: EngineTls | None = None
    copy_image: bool = False  # copy the image from the local engine when the host lacks it
    settle_s: float = 3.0  # the new container must still run after this long


def gpu_device_requests(gpus: str) -> list[Any]:
    from docker.types import DeviceRequest

    spec = gpus.strip().lower()
    if spec in ("", "none", "0"):
        return []
    if spec == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=[g.strip() for g in gpus.split(",") if g.strip()], capabilities=[["gpu"]])]


def device_files(pki_dir: Path | None, device_id: str) -> dict[str, bytes]:
    """Files for the config volume from an edgebench.common.pki root: the device's
    ca.crt, client.crt, client.key and password, and the job-signing public key."""
    if pki_dir is None:
        return {}
    files: dict[str, bytes] = {}
    device_dir = pki_dir / "devices" / device_id
    if not device_dir.is_dir():
        raise DeployError(f"{device_dir} not found: issue the device first (controller pki device "
                          f"{device_id})")
    for name in ("ca.crt", "client.crt", "client.key", "password"):
        if (device_dir / name).is_file():
            files[name] = (device_dir / name).read_bytes()
    pub = pki_dir / "signing" / "jobs.pub"
    if pub.is_file():
        files["jobs.pub"] = pub.read_bytes()
    return files


def render_agent_config(target: Target, settings: DeploySettings, files: Mapping[str, bytes]) -> str:
    """agent.yaml for the container: the base config with this device's
    identity, the container's paths and the uploaded credentials. Validated
    against AgentConfig before anything is deployed."""
    doc: dict[str, Any] = dict(settings.agent_config)
    doc.update(device_id=target.device_id, fleet=doc.get("fleet", settings.fleet),
               broker_url=doc.get("broker_url", settings.broker_url), state_dir=STATE_DIR)
    if settings.dataset_root:
        doc["dataset_root"] = settings.dataset_root
    for name, key in (("ca.crt", "ca_file"), ("client.crt", "cert_file"), ("client.key", "key_file"),
                      ("jobs.pub", "job_public_key")):
        if name in files:
            doc[key] = f"{CONFIG_DIR}/{name}"
    if "password" in files:
        doc.setdefault("username", target.device_id)
        doc["password"] = files["password"].decode().strip()
    try:
        AgentConfig.model_validate(doc)
    except Exception as exc:  # pydantic ValidationError: report which field
        raise DeployError(f"{target.device_id}: invalid agent configuration: {exc}") from exc
    return yaml.safe_dump(doc, sort_keys=False)


# -- outcomes ------------------------------------------------------------------------
@dataclass
class Outcome:
    target: Target
    action: str  # deployed | upgraded | redeployed | rolled back | failed
    ok: bool
    image: str = ""
    previous: str | None = None
    detail: str = ""
    online: bool | None = None


# -- the work ------------------------------------------------------------------------
def _tar(files: Mapping[str, bytes], mode: Callable[[str], int]) -> bytes:
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.uid = info.gid = AGENT_UID
            info.mode = mode(name)
            info.mtime = int(now)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _file_mode(name: str) -> int:
    return 0o400 if name in ("client.key", "password", "agent.yaml") else 0o444


def _ensure_image(client: docker.DockerClient, image: str, copy_from_local: bool) -> Any:
    import docker

    try:
        return client.images.get(image)
    except docker.errors.ImageNotFound:
        pass
    if copy_from_local:
        local = docker.from_env()
        try:
            data = local.images.get(image).save(named=True)
            client.images.load(b"".join(data))
            return client.images.get(image)
        except docker.errors.DockerException as exc:
            raise DeployError(f"cannot copy {image} from the local engine: {exc}") from exc
        finally:
            local.close()
    try:
        return client.images.pull(image)
    except docker.errors.DockerException as exc:
        raise DeployError(f"{image} is not on the host and cannot be pulled ({exc}); push it to a registry the "
                          "host can reach, or use --copy-image") from exc


def _socket_gid(client: docker.DockerClient, image_id: str, sock: str) -> int:
    """The group owning the engine's socket on the host, read from inside a
    throwaway container of the agent image (the only way through the API)."""
    out = client.containers.run(
        image_id, entrypoint=["python", "-c", "import os; print(os.stat('/docker.sock').st_gid)"],
        volumes={sock: {"bind": "/docker.sock", "mode": "ro"}}, network_mode="none", remove=True,
    )
    return int(bytes(out).decode().strip())


def _write_config(client: docker.DockerClient, image_id: str, volume: str, files: Mapping[str, bytes]) -> None:
    """Write files into the config volume through a container that never starts."""
    client.volumes.create(volume, labels={LABEL_ROLE: "agent-config"})
    helper = client.containers.create(image_id, volumes={volume: {"bind": "/config", "mode": "rw"}},
                                      network_mode="none", entrypoint=["true"])
    try:
        helper.put_archive("/config", _tar(files, _file_mode))
    finally:
        helper.remove(force=True)


def _get(client: docker.DockerClient, name: str) -> Container | None:
    import docker

    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def _settled(container: Container, settle_s: float) -> str | None:
    """None when the container is still running (not restarting) after settle_s, else why not."""
    time.sleep(settle_s)
    container.reload()
    state = container.attrs.get("State", {})
    if state.get("Running") and not state.get("Restarting") and container.attrs.get("RestartCount", 0) == 0:
        return None
    logs = bytes(container.logs(tail=15)).decode("utf-8", "replace").strip()
    return f"the agent did not stay up (status {state.get('Status')}, exit {state.get('ExitCode')}): {logs}"


def _replace(client: docker.DockerClient, target: Target, settings: DeploySettings, image: Any,
             image_ref: str, config_files: Mapping[str, bytes] | None) -> Outcome:
    """Create the new container, swap it for the old one, and undo on failure."""
    import docker
    from docker.types import LogConfig, Mount

    old = _get(client, target.container_name)
    previous_ref = old.labels.get(LABEL_IMAGE) if old is not None else None
    previous_id = old.labels.get(LABEL_IMAGE_ID) if old is not None else None
    if config_files is not None:
        _write_config(client, image.id, target.config_volume, config_files)
    gid = _socket_gid(client, image.id, settings.docker_socket)
    mounts = [
        Mount(STATE_DIR, target.state_volume, type="volume"),
        Mount(CONFIG_DIR, target.config_volume, type="volume", read_only=True),
        Mount("/var/run/docker.sock", settings.docker_socket, type="bind"),
    ]
    if settings.dataset_root:
        mounts.append(Mount(settings.dataset_root, settings.dataset_root, type="bind", read_only=True))
    labels = {
        LABEL_ROLE: "agent", LABEL_DEVICE: target.device_id, LABEL_IMAGE: image_ref, LABEL_IMAGE_ID: image.id,
        LABEL_AT: datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if previous_ref:
        labels[LABEL_PREVIOUS] = previous_ref
        labels[LABEL_PREVIOUS_ID] = previous_id or ""
    staging = _get(client, f"{target.container_name}-next")
    if staging is not None:
        staging.remove(force=True)
    # Create from the reference when it still names this image (docker ps then
    # shows a readable name), else from the id (a rollback after a re-tag).
    try:
        same = client.images.get(image_ref).id == image.id
    except docker.errors.ImageNotFound:
        same = False
    new = client.containers.create(
        image_ref if same else image.id,
        command=["--config", f"{CONFIG_DIR}/agent.yaml"],
        name=f"{target.container_name}-next",
        # the executor inspects its own container to translate paths (agent/executors/docker.py)
        environment={**settings.env, "EDGEBENCH_AGENT_CONTAINER": target.container_name},
        mounts=mounts,
        device_requests=gpu_device_requests(settings.gpus),
        group_add=[str(gid)],
        network_mode="host",
        pid_mode="host",
        restart_policy={"Name": "unless-stopped"},
        labels=labels,
        log_config=LogConfig(type="json-file", config={"max-size": "50m", "max-file": "3"}),
        stop_signal="SIGTERM",
    )
    if old is not None:
        # the agent finishes its outbox and says goodbye on SIGTERM; one store, one agent
        old.stop(timeout=30)
        old.rename(f"{target.container_name}-prev")
    new.rename(target.container_name)
    try:
        new.start()
        problem = _settled(new, settings.settle_s)
    except Exception as exc:  # noqa: BLE001 - any start failure means: put the old one back
        problem = str(exc)
    if problem is not None:
        new.remove(force=True)
        if old is not None:
            old.rename(target.container_name)
            old.start()
        return Outcome(target, "failed", False, image_ref, previous_ref, problem)
    if old is not None:
        old.remove()
    action = "deployed" if old is None else ("redeployed" if previous_id == image.id else "upgraded")
    return Outcome(target, action, True, image_ref, previous_ref)


def deploy(target: Target, settings: DeploySettings) -> Outcome:
    """Deploy or upgrade the agent on one host (never raises: failures are outcomes)."""
    import docker

    client = None
    try:
        files = device_files(settings.pki_dir, target.device_id)
        files["agent.yaml"] = render_agent_config(target, settings, files).encode()
        client = connect(target.url, settings.tls)
        image = _ensure_image(client, settings.image, settings.copy_image)
        return _replace(client, target, settings, image, settings.image, files)
    except (DeployError, docker.errors.DockerException, OSError) as exc:
        return Outcome(target, "failed", False, settings.image, None, str(exc))
    finally:
        if client is not None:
            client.close()


def rollback(target: Target, settings: DeploySettings) -> Outcome:
    """Put back the image the current agent container replaced (its labels say
    which). The config volume is left as it is."""
    import docker

    client = None
    try:
        client = connect(target.url, settings.tls)
        current = _get(client, target.container_name)
        if current is None:
            raise DeployError(f"no {target.container_name} container on {target.url}")
        previous_ref = current.labels.get(LABEL_PREVIOUS)
        previous_id = current.labels.get(LABEL_PREVIOUS_ID)
        if not previous_ref:
            raise DeployError(f"{target.container_name} records no previous image to roll back to")
        try:
            image = client.images.get(previous_id or previous_ref)
        except docker.errors.ImageNotFound:
            image = client.images.get(previous_ref)
        outcome = _replace(client, target, settings, image, previous_ref, None)
        if outcome.ok:
            outcome.action = "rolled back"
        return outcome
    except (DeployError, docker.errors.DockerException, OSError) as exc:
        return Outcome(target, "failed", False, "", None, str(exc))
    finally:
        if client is not None:
            client.close()


def wait_online(fleet: FleetClient, device_ids: list[str], since: datetime, timeout_s: float) -> dict[str, bool]:
    """Which devices announced themselves online on the broker after ``since``
    (a status retained from before the deploy does not count)."""
    deadline = time.monotonic() + timeout_s
    online: dict[str, bool] = dict.fromkeys(device_ids, False)
    while time.monotonic() < deadline and not all(online.values()):
        fleet.pump(0.2)
        for device in device_ids:
            status = fleet.statuses.get(device)
            online[device] = bool(status is not None and status.online and status.at >= since)
    return online
