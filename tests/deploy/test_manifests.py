"""The deployment files parse and say what they must: the compose dev fleet,
the systemd unit (systemd-analyze verify where available) and the Kubernetes
DaemonSet with its ConfigMap and Secret. No compose plugin, kubeconform or
cluster here: structure is checked field by field, and every agent.yaml is
validated against AgentConfig itself."""

from __future__ import annotations

import getpass
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgebench.agent.config import AgentConfig, LocalBackend
from tests.conftest import REPO, free_port, mosquitto_binary

DEPLOY = REPO / "deploy"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# -- compose --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())  # merge keys resolved
    assert isinstance(doc, dict)
    return doc


def test_compose_runs_a_broker_agents_and_a_collector(compose: dict[str, Any]) -> None:
    services = compose["services"]
    agents = {k: v for k, v in services.items() if k.startswith("agent-")}
    assert len(agents) >= 2 and {"mosquitto", "collector"} <= set(services)
    device_ids = []
    for name, svc in agents.items():
        assert re.fullmatch(r"edgebench/agent:\$\{EDGEBENCH_VERSION:-[0-9.]+\}", svc["image"]), name
        cmd = svc["command"]
        device_ids.append(cmd[cmd.index("--device-id") + 1])
        assert cmd[cmd.index("--broker") + 1] == "mqtt://mosquitto:1883"
        assert cmd[cmd.index("--config") + 1] == "/etc/edgebench/agent.yaml"
        assert svc["depends_on"]["mosquitto"]["condition"] == "service_healthy"
        mounts = {m.split(":")[1]: m for m in svc["volumes"]}
        assert mounts["/etc/edgebench/agent.yaml"].endswith(":ro")
        state = mounts["/var/lib/edgebench-agent"].split(":")[0]
        assert state in compose["volumes"], f"{name}: undeclared volume {state}"
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert svc["deploy"]["resources"]["limits"]["memory"]
    assert len(set(device_ids)) == len(device_ids), "every agent needs its own device id"
    states = [next(m for m in s["volumes"] if ":/var/lib/edgebench-agent" in m) for s in agents.values()]
    assert len(set(states)) == len(states), "every agent needs its own store"
    collector = services["collector"]
    assert collector["entrypoint"] == ["controller"] and collector["command"][-1] == "collect"
    assert services["mosquitto"]["healthcheck"]["test"][:2] == ["CMD", "mosquitto_sub"]
    assert "127.0.0.1:1883:1883" in services["mosquitto"]["ports"]  # not on the plant network


def test_compose_agent_config_is_a_valid_agent_config() -> None:
    cfg = AgentConfig.load(DEPLOY / "compose" / "agent.yaml", device_id="cpu-1")
    assert isinstance(cfg.backends["sleep"], LocalBackend)
    assert cfg.backends["sleep"].python == "/opt/venv/bin/python"  # the agent image's venv
    assert str(cfg.state_dir) == "/var/lib/edgebench-agent"


def test_compose_broker_config_runs_in_mosquitto(tmp_path: Path) -> None:
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    port = free_port()
    text = (DEPLOY / "compose" / "mosquitto-dev.conf").read_text().replace("/mosquitto/", f"{tmp_path}/")
    text = re.sub(r"^listener 1883$", f"listener {port} 127.0.0.1", text, flags=re.MULTILINE)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text + f"\nuser {getpass.getuser()}\n")  # root may not drop to "mosquitto" here
    (tmp_path / "data").mkdir()
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("the dev broker config did not start mosquitto")
    finally:
        proc.terminate()
        proc.wait(10)


# -- systemd --------------------------------------------------------------------------------

UNIT = DEPLOY / "systemd" / "edgebench-agent.service"


def _unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    joined = re.sub(r"\\\n\s*", " ", text)  # continuation lines
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _env_file() -> dict[str, str]:
    lines = (DEPLOY / "systemd" / "edgebench-agent.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_systemd_unit_is_hardened_and_configures_through_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _unit_settings(UNIT.read_text())
    # no variables expanded into flags: the agent reads EDGEBENCH_* itself
    assert s["ExecStart"] == ["/opt/edgebench/venv/bin/agent run"]
    assert s["EnvironmentFile"] == ["/etc/edgebench/agent.env"]
    env = _env_file()
    assert set(env) == {"EDGEBENCH_CONFIG", "EDGEBENCH_DEVICE_ID", "EDGEBENCH_BROKER_URL", "EDGEBENCH_FLEET"}
    # the environment file, loaded as the agent loads it, gives what it says
    config = tmp_path / "agent.yaml"
    config.write_text("fleet: from-yaml\ntags: [jetson]\n")
    for key, value in {**env, "EDGEBENCH_CONFIG": str(config), "EDGEBENCH_SECRETS_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    cfg = AgentConfig.load()
    assert (cfg.device_id, cfg.broker_url, cfg.fleet, cfg.tags) == (
        env["EDGEBENCH_DEVICE_ID"], env["EDGEBENCH_BROKER_URL"], env["EDGEBENCH_FLEET"], ["jetson"])
    assert s["User"] == ["edgebench"] and s["StateDirectory"] == ["edgebench-agent"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
                       "KillMode": "mixed", "Restart": "on-failure"}.items():
        assert s[key] == [value], key
    assert s["PrivateDevices"] == ["no"]  # the GPUs must stay visible


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    agent = shutil.which("agent", path=str(Path(sys.executable).parent))
    assert agent is not None
    # verify checks that ExecStart exists: point it at this checkout's entry point
    unit = tmp_path / "edgebench-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/edgebench/venv/bin/agent", agent))
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "edgebench-agent.service" not in out.stderr, out.stderr


# -- Kubernetes -----------------------------------------------------------------------------

K8S = DEPLOY / "k8s"


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in _docs(path):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), path.name
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_daemonset_targets_gpu_nodes_with_the_nvidia_runtime(manifests: dict[tuple[str, str], Any]) -> None:
    ds = manifests[("DaemonSet", "edgebench-agent")]
    assert ds["apiVersion"] == "apps/v1"
    pod = ds["spec"]["template"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["hostPID"] is True
    text = (K8S / "daemonset.yaml").read_text()
    assert re.search(r"# hostPID: NVML .*host PID", text), "hostPID needs its trade-off explained"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    [agent] = spec["containers"]
    assert agent["image"].startswith("edgebench/agent:")
    limits = agent["resources"]["limits"]
    assert limits["memory"] and "nvidia.com/gpu" in limits and "cpu" not in limits  # no CFS throttling
    assert agent["securityContext"]["allowPrivilegeEscalation"] is False
    assert agent["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # the device id is the node name, through the downward API
    env = {e["name"]: e for e in agent["env"]}
    assert env["EDGEBENCH_DEVICE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["EDGEBENCH_CONFIG"]["value"] == "/etc/edgebench/agent.yaml"
    # configuration through the environment, not variables expanded into flags
    assert "args" not in agent and "$(" not in yaml.safe_dump(agent)
    # every mount names a volume, every volume source exists among the manifests
    volumes = {v["name"]: v for v in spec["volumes"]}
    for c in [*spec["initContainers"], *spec["containers"]]:
        for m in c["volumeMounts"]:
            assert m["name"] in volumes, (c["name"], m["name"])
        assert c["resources"]["limits"], c["name"]
    assert ("ConfigMap", volumes["config"]["configMap"]["name"]) in manifests
    assert ("Secret", volumes["certs-all"]["secret"]["secretName"]) in manifests
    assert ("ServiceAccount", spec["serviceAccountName"]) in manifests
    namespaces = {d["metadata"].get("namespace") for d in manifests.values() if d["kind"] != "Namespace"}
    assert namespaces == {"edgebench"} and ("Namespace", "edgebench") in manifests


def test_configmap_holds_a_valid_agent_config(manifests: dict[tuple[str, str], Any]) -> None:
    ds = manifests[("DaemonSet", "edgebench-agent")]
    [agent] = ds["spec"]["template"]["spec"]["containers"]
    cfg = AgentConfig.model_validate({**yaml.safe_load(manifests[("ConfigMap", "edgebench-agent")]["data"]
                                                       ["agent.yaml"]), "device_id": "gpu-node-1"})
    mounts = {m["mountPath"] for m in agent["volumeMounts"]}
    for path in (cfg.ca_file, cfg.cert_file, cfg.key_file):
        assert path is not None and str(Path(path).parent) in mounts
    assert str(cfg.state_dir) in mounts and str(cfg.dataset_root) in mounts
    assert cfg.metrics_port == agent["ports"][0]["containerPort"]


def test_secret_carries_a_ca_and_per_node_pairs(manifests: dict[tuple[str, str], Any]) -> None:
    secret = manifests[("Secret", "edgebench-agent-certs")]
    keys = set(secret["stringData"])
    assert "ca.crt" in keys
    nodes = {k.rsplit(".", 1)[0] for k in keys - {"ca.crt"}}
    assert nodes and all({f"{n}.crt", f"{n}.key"} <= keys for n in nodes)
    ds = manifests[("DaemonSet", "edgebench-agent")]
    [init] = ds["spec"]["template"]["spec"]["initContainers"]
    script = init["command"][-1]
    assert '"/certs-all/${NODE_NAME}.crt"' in script and '"/certs-all/${NODE_NAME}.key"' in script
