"""Multi-arch images: the agent and a CPU runner built for linux/arm64 under QEMU
on this x86_64 machine, run under emulation (``agent info``, then one real
torch job agent container -> runner container -> broker -> store), and the
agent built for both platforms and pushed to a local registry as one manifest
list.

Needs what .ci/run provisions: a Docker engine with local/debian:bookworm
(scripts/start-dockerd.sh), QEMU registered for aarch64 binaries
(scripts/setup-qemu.sh) and the arm64 base (scripts/start-dockerd.sh --arch
arm64). Each test says which is missing when it skips. Emulation is slow
(docs/IMAGES.md has the times): the job is two epochs of five MLP steps.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgebench.controller.deploy import DeploySettings, Target, deploy
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.image_build import (
    BuildCli,
    BuildOptions,
    BuiltImage,
    base_for,
    build_command,
    build_images,
    build_tag,
)
from edgebench.controller.image_checks import manylinux_platforms
from edgebench.controller.images import ImagesError, catalogue, parse_platforms, select
from edgebench.controller.plan import build_job
from edgebench.controller.registry import manifest_platforms, push_images
from edgebench.controller.store import ResultStore
from edgebench.schemas import TERMINAL_STATES, JobState
from tests.helpers import run_jobs, wait_online
from tests.images.fixtures import (  # noqa: F401 - fixtures
    BASE_IMAGE,
    BUILD_SECONDS,
    agent_containers,
    docker_client,
)

SPECS = catalogue()
ARM64_BASE = f"{BASE_IMAGE}-arm64"
BASES = f"{BASE_IMAGE}-{{arch}}"  # local/debian:bookworm-amd64 / -arm64 (scripts/start-dockerd.sh)
BINFMT_ENTRY = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


# -- without an engine ---------------------------------------------------------------------
def test_parse_platforms() -> None:
    assert parse_platforms("linux/amd64, linux/arm64,linux/amd64") == ("linux/amd64", "linux/arm64")
    assert parse_platforms(None) == ()
    with pytest.raises(ImagesError, match="unknown platform"):
        parse_platforms("linux/riscv64")


def test_select_by_platform() -> None:
    arm = {s.name for s in select(SPECS, platforms=["linux/arm64"])}
    assert arm == {"agent", "keras-jax-cpu", "keras-tensorflow-cpu", "keras-torch-cpu", "torch-cpu",
                   "keras-mxnet-jetson", "keras-tensorflow-jetson", "keras-tensorflow1-jetson",
                   "keras-torch-jetson", "torch-jetson"}
    both = {s.name for s in select(SPECS, platforms=["linux/amd64", "linux/arm64"])}
    assert both == {"agent", "keras-jax-cpu", "keras-tensorflow-cpu", "keras-torch-cpu", "torch-cpu"}
    assert "torch-jetson" not in {s.name for s in select(SPECS, platforms=["linux/amd64"])}
    with pytest.raises(ImagesError, match="keras-jax builds for linux/amd64 only"):
        select(SPECS, ["keras-jax"], "gpu", ["linux/arm64"])


def test_build_command_per_platform(tmp_path: Path) -> None:
    spec = SPECS["torch-cpu"]
    cli = BuildCli("/usr/bin/docker", buildx=False)
    opts = BuildOptions(version="1.0", base_image=BASES, platforms=("linux/amd64", "linux/arm64"))
    arm = build_command(cli, spec, tmp_path, opts, {}, "linux/arm64", build_tag(spec, "1.0", "linux/arm64", True),
                        builder="linux/amd64")
    assert arm[arm.index("--platform") + 1] == "linux/arm64"
    assert arm[arm.index("-t") + 1] == "edgebench/torch-cpu:1.0-arm64"
    assert f"BASE_IMAGE={BASE_IMAGE}-arm64" in arm and "FRAMEWORKS=torch==2.9.1" in arm
    # byte-compiled natively, on the amd64 base, for the arm64 image
    assert "BYTECODE=cross" in arm and f"BUILD_BASE_IMAGE={BASE_IMAGE}-amd64" in arm
    amd = build_command(cli, spec, tmp_path, opts, {}, "linux/amd64", build_tag(spec, "1.0", "linux/amd64", True),
                        builder="linux/amd64")
    assert f"BASE_IMAGE={BASE_IMAGE}-amd64" in amd and not any(a.startswith("FRAMEWORKS=") for a in amd)
    assert not any(a.startswith("BYTECODE=") for a in amd)
    # the caller's own pins win over the platform's
    opts.build_args = {"FRAMEWORKS": "torch==2.8.0"}
    mine = build_command(cli, spec, tmp_path, opts, {}, "linux/arm64", "t")
    assert [a for a in mine if a.startswith("FRAMEWORKS=")] == ["FRAMEWORKS=torch==2.8.0"]
    assert build_tag(spec, "1.0", "linux/arm64", several=False) == "edgebench/torch-cpu:1.0"
    with pytest.raises(ImagesError, match="give --platform"):
        base_for(BASES, None)


def test_wheel_tags_for_aarch64() -> None:
    tags = manylinux_platforms(SPECS["torch-jetson"])
    assert tags[0] == "manylinux_2_35_aarch64" and tags[-1] == "linux_aarch64"  # L4T R36 = Ubuntu 22.04
    assert manylinux_platforms(SPECS["keras-tensorflow1-jetson"])[0] == "manylinux_2_27_aarch64"
    assert manylinux_platforms(SPECS["torch-cpu"], "linux/arm64")[0] == "manylinux_2_36_aarch64"
    assert manylinux_platforms(SPECS["torch-cpu"])[0] == "manylinux_2_36_x86_64"


# -- with an engine and QEMU -------------------------------------------------------------------
@pytest.fixture(scope="session")
def qemu(docker_client: Any) -> Any:  # noqa: F811
    if not (BINFMT_ENTRY.is_file() and BINFMT_ENTRY.read_text().startswith("enabled")):
        pytest.skip("arm64 binaries cannot run here: no binfmt_misc entry for aarch64 "
                    "(scripts/setup-qemu.sh, which .ci/run runs)")
    try:
        docker_client.images.get(ARM64_BASE)
    except Exception:  # noqa: BLE001 - any failure: no base
        pytest.skip(f"no {ARM64_BASE} (scripts/start-dockerd.sh --arch arm64, which .ci/run runs)")
    return docker_client


def _build(names: list[str], version: str, platforms: tuple[str, ...], **args: str) -> list[BuiltImage]:
    ca = os.environ.get("PIP_CERT")
    opts = BuildOptions(version=version, base_image=BASES, platforms=platforms, ca_bundle=Path(ca) if ca else None,
                        build_args=dict(args))
    t0 = time.monotonic()
    built = build_images([SPECS[n] for n in names], opts)
    BUILD_SECONDS[f"{'+'.join(names)}:{version} ({' '.join(platforms)})"] = time.monotonic() - t0
    return built


@pytest.fixture(scope="session")
def multiarch_agent(qemu: Any) -> list[BuiltImage]:
    return _build(["agent"], "0.0.0-test-multi", ("linux/amd64", "linux/arm64"))


@pytest.fixture(scope="session")
def arm64_torch(qemu: Any) -> BuiltImage:
    # PyPI's torch 2.9.1 for aarch64 (a CPU build); PyTorch's own index is unreachable here
    [built] = _build(["torch-cpu"], "0.0.0-test-arm64", ("linux/arm64",), TORCH_INDEX_URL="")
    return built


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path, docker_client: Any) -> Iterator[str]:  # noqa: F811
    """Debian's docker-registry (the distribution registry server) on a free loopback port;
    the local tags of what was pushed there go with it."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry not installed (scripts/setup-qemu.sh installs it)")
    import requests

    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "version": 0.1, "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"}}))
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"docker-registry did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        for image in docker_client.images.list():
            for tag in image.tags:
                if tag.startswith(f"127.0.0.1:{port}/"):
                    docker_client.images.remove(tag)


@pytest.mark.docker
def test_arm64_agent_image_runs_agent_info_under_emulation(multiarch_agent: list[BuiltImage], qemu: Any) -> None:
    arm = next(b for b in multiarch_agent if b.platform == "linux/arm64")
    assert arm.tag == "edgebench/agent:0.0.0-test-multi-arm64"
    attrs = qemu.images.get(arm.tag).attrs
    assert attrs["Architecture"] == "arm64" and attrs["Config"]["Labels"]["edgebench.platforms"] == \
        "linux/amd64 linux/arm64"
    t0 = time.monotonic()
    out = qemu.containers.run(arm.tag, entrypoint=["agent", "info"], network_mode="none", remove=True)
    BUILD_SECONDS["agent info under QEMU"] = time.monotonic() - t0
    text = out.decode()
    fingerprint = json.loads(text[text.index("{"):])
    assert fingerprint["arch"] == "aarch64" and fingerprint["jetson"] is None
    assert "sleep" in text


@pytest.mark.docker
def test_manifest_list_in_a_local_registry(multiarch_agent: list[BuiltImage], qemu: Any, registry: str) -> None:
    import requests

    [pushed] = push_images(multiarch_agent, registry, "0.0.0-test-multi")
    assert pushed.reference == f"{registry}/edgebench/agent:0.0.0-test-multi"
    assert pushed.per_platform == (f"{pushed.reference}-amd64", f"{pushed.reference}-arm64")
    assert manifest_platforms(pushed.reference) == ["linux/amd64", "linux/arm64"]
    # read back from the registry itself, not through the docker CLI
    r = requests.get(f"http://{registry}/v2/edgebench/agent/manifests/0.0.0-test-multi", timeout=10, headers={
        "Accept": "application/vnd.docker.distribution.manifest.list.v2+json, "
                  "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["mediaType"] in ("application/vnd.docker.distribution.manifest.list.v2+json",
                                "application/vnd.oci.image.index.v1+json")
    assert sorted(m["platform"]["architecture"] for m in doc["manifests"]) == ["amd64", "arm64"]
    # one name, each platform its own build
    arm = qemu.images.pull(pushed.reference.rsplit(":", 1)[0], tag="0.0.0-test-multi", platform="linux/arm64")
    assert arm.attrs["Architecture"] == "arm64"
    amd = next(b for b in multiarch_agent if b.platform == "linux/amd64")
    assert qemu.images.get(amd.tag).attrs["Architecture"] == "amd64"


@pytest.mark.docker
def test_arm64_job_agent_container_to_runner_container_to_store(
        multiarch_agent, arm64_torch, agent_containers, qemu,  # noqa: F811
        mosquitto, controller_cfg, fleet, tmp_path) -> None:
    """The production path under emulation: the arm64 agent container starts the
    arm64 torch runner container through the engine's socket; one real CPU job
    (torch 2.9.1 on aarch64) reaches the store with an aarch64 fingerprint."""
    agent = next(b for b in multiarch_agent if b.platform == "linux/arm64")
    assert qemu.images.get(arm64_torch.tag).attrs["Architecture"] == "arm64"
    datasets = tmp_path / "datasets"
    datasets.mkdir(mode=0o755)
    device = f"{fleet}-arm64"
    agent_containers.append(device)
    settings = DeploySettings(
        image=agent.tag, broker_url=mosquitto.url, fleet=fleet, gpus="none", dataset_root=str(datasets),
        agent_config={"image_allowlist": [arm64_torch.tag],
                      "backends": {"torch": {"executor": "docker", "image": arm64_torch.tag, "cpus": 2.0,
                                             "mem_limit": "3g"}}},
    )
    t0 = time.monotonic()
    outcome = deploy(Target(device, "unix:///var/run/docker.sock"), settings)
    assert outcome.ok, outcome.detail
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as client:
        status = wait_online(client, device, timeout_s=300)[device]
        assert {b.backend: b.available for b in status.backends if b.executor == "docker"} == {"torch": True}
        job = build_job({"backend": "torch", "workload": "fashion-mnist-mlp", "epochs": 2, "steps_per_epoch": 5,
                         "min_batches": 0, "min_window_s": 0,  # five batches are the point under emulation
                         "synthetic": True, "gpus": 0, "step_timeout_s": 600}, f"{fleet}-arm64-torch")
        events = run_jobs(client, [Dispatched(device, job)], timeout_s=900)
    BUILD_SECONDS["arm64 agent online + torch job under QEMU"] = time.monotonic() - t0
    finals = [e for e in events if e.state in TERMINAL_STATES]
    assert [e.state for e in finals] == [JobState.SUCCEEDED], [(e.reason, e.log_tail) for e in finals]
    [row] = store.results(job_id=job.job_id)
    result = row.result()
    assert row.outcome == "OK" and result is not None and result.summary.n_batches == 5
    assert result.fingerprint.arch == "aarch64"
    assert result.fingerprint.libraries.get("torch", "").startswith("2.9.1")


@pytest.mark.docker
def test_cli_builds_for_arm64_and_pushes(multiarch_agent: list[BuiltImage], qemu: Any, registry: str) -> None:
    """``controller images build --platform linux/arm64 --push``: one platform, one plain tag
    (layers cached by the fixture's build of the same Dockerfile)."""
    from typer.testing import CliRunner

    from edgebench.controller.cli import app

    ca = os.environ.get("PIP_CERT")
    args = ["images", "build", "-b", "agent", "--platform", "linux/arm64", "--base-image", BASES,
            "--version", "0.0.0-test-cli", "--push", registry, *(["--ca-bundle", ca] if ca else [])]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "built edgebench/agent:0.0.0-test-cli" in out.output
    assert f"pushed {registry}/edgebench/agent:0.0.0-test-cli linux/arm64" in out.output
    assert qemu.images.get("edgebench/agent:0.0.0-test-cli").attrs["Architecture"] == "arm64"
    bad = CliRunner().invoke(app, ["images", "build", "-b", "keras-jax", "--variant", "gpu", "--platform",
                                   "linux/arm64"])
    assert bad.exit_code == 2 and "builds for linux/amd64 only" in bad.output
