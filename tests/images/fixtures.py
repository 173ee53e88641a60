"""Docker fixtures shared by the image, docker-executor and deploy tests.

Import the fixtures you use into a test module (``from tests.images.fixtures
import docker_client, agent_image  # noqa: F401``). Builds are memoised per
test process, so each image is built once however many modules ask for it,
and BuildKit's layer cache makes a rebuild in a later run take seconds.

Images are built on a local base (``EDGEBENCH_TEST_BASE_IMAGE``, default
local/debian:bookworm, made by scripts/start-dockerd.sh) because Docker Hub
is unreachable here. The CPU torch wheel is not on PyPI; it comes from a
wheelhouse (``EDGEBENCH_WHEELHOUSE``, default /opt/wheels) when one holds it.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgebench.controller.image_build import BuildOptions, BuiltImage, build_images
from edgebench.controller.images import catalogue

BASE_IMAGE = os.environ.get("EDGEBENCH_TEST_BASE_IMAGE", "local/debian:bookworm")
VERSION = "0.0.0-test"
WHEELHOUSE = Path(os.environ.get("EDGEBENCH_WHEELHOUSE", "/opt/wheels"))
TORCH_CPU_WHEEL = "torch-2.13.0+cpu-*.whl"
# name -> seconds, for the terminal summary (tests/images/conftest.py)
BUILD_SECONDS: dict[str, float] = {}


@functools.cache
def _engine() -> tuple[Any, str | None]:
    """(client, None) when an engine and the base image are there, else (None, why not)."""
    try:
        import docker
    except ImportError:
        return None, "the docker package is not installed (the docker extra)"
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine
        return None, f"no Docker engine reachable ({exc}); scripts/start-dockerd.sh starts one"
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        return None, f"base image {BASE_IMAGE} missing; scripts/start-dockerd.sh builds it"
    return client, None


def engine_or_skip() -> Any:
    client, reason = _engine()
    if client is None:
        pytest.skip(reason or "no Docker engine")
    return client


@functools.cache
def build(name: str, version: str = VERSION) -> BuiltImage:
    spec = catalogue()[name]
    ca = os.environ.get("PIP_CERT")
    args: dict[str, str] = {}
    wheelhouse = None
    if "TORCH_INDEX_URL" in spec.args:
        if not list(WHEELHOUSE.glob(TORCH_CPU_WHEEL)):
            pytest.skip(f"no {TORCH_CPU_WHEEL} in {WHEELHOUSE} (EDGEBENCH_WHEELHOUSE), and PyTorch's CPU index is "
                        "unreachable here")
        args["TORCH_INDEX_URL"] = ""  # unreachable here: only PyPI and the wheelhouse
        wheelhouse = WHEELHOUSE
    opts = BuildOptions(version=version, base_image=BASE_IMAGE, ca_bundle=Path(ca) if ca else None,
                        wheelhouse=wheelhouse, build_args=args)
    t0 = time.monotonic()
    [built] = build_images([spec], opts)
    BUILD_SECONDS[f"{name}:{version}"] = time.monotonic() - t0
    return built


@pytest.fixture(scope="session")
def docker_client() -> Any:
    return engine_or_skip()


@pytest.fixture(scope="session")
def agent_image(docker_client: Any) -> BuiltImage:
    return build("agent")


@pytest.fixture(scope="session")
def jax_image(docker_client: Any) -> BuiltImage:
    return build("keras-jax-cpu")


@pytest.fixture(scope="session")
def torch_image(docker_client: Any) -> BuiltImage:
    return build("torch-cpu")


@pytest.fixture
def agent_containers(docker_client: Any) -> Iterator[list[str]]:
    """Device ids whose agent containers and volumes are removed after the test."""
    devices: list[str] = []
    yield devices
    from edgebench.controller.deploy import Target

    for device in devices:
        target = Target(device, "unix:///var/run/docker.sock")
        for name in (target.container_name, f"{target.container_name}-next", f"{target.container_name}-prev"):
            try:
                docker_client.containers.get(name).remove(force=True)
            except Exception:  # noqa: BLE001 - not there
                pass
        for volume in (target.state_volume, target.config_volume):
            try:
                vol = docker_client.volumes.get(volume)
            except Exception:  # noqa: BLE001 - not there
                continue
            # runner containers the agent left behind (a test failed mid-job)
            for runner in docker_client.containers.list(all=True, filters={"label": "edgebench.role=runner"}):
                if runner.labels.get("edgebench.agent-state", "").startswith(vol.attrs["Mountpoint"]):
                    runner.remove(force=True)
            vol.remove(force=True)
