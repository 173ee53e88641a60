"""The docker executor against a real engine and a real runner image; the
allowlist and GPU request rules without one."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest

from edgebench.agent.config import BackendConfig, DockerBackend, LocalBackend
from edgebench.agent.executors.docker import (
    DockerExecutor,
    DockerRunnerProcess,
    ImageNotAllowed,
    check_image_allowed,
    check_job_image,
    frameworks_from_label,
    gpu_request,
    image_allowed,
    normalize_image_ref,
)
from edgebench.agent.jobrun import JobRun
from edgebench.agent.validation import Rejection
from edgebench.schemas import Backend, JobSpec, JobState
from tests.helpers import sleep_job
from tests.images.fixtures import agent_image, docker_client, jax_image  # noqa: F401 - fixtures


# -- rules, no engine needed --------------------------------------------------------------
def test_allowlist_exact_default_tag_and_patterns() -> None:
    allow = ["edgebench/keras-jax:0.1.0", "registry.site:5000/edgebench/*:0.2.*", "edgebench/torch"]
    assert image_allowed("edgebench/keras-jax:0.1.0", allow)
    assert not image_allowed("edgebench/keras-jax:0.1.1", allow)
    assert image_allowed("edgebench/torch", allow) and image_allowed("edgebench/torch:latest", allow)
    assert not image_allowed("edgebench/torch:0.1.0", allow)
    assert image_allowed("registry.site:5000/edgebench/keras-torch:0.2.3", allow)
    assert not image_allowed("registry.site:5000/other/keras-torch:0.2.3", allow)
    assert not image_allowed("edgebench/keras-jax:0.1.0", [])  # empty allows nothing
    assert normalize_image_ref("registry.site:5000/x") == "registry.site:5000/x:latest"
    assert normalize_image_ref("x@sha256:abc") == "x@sha256:abc"
    with pytest.raises(ImageNotAllowed, match="not on the agent's image_allowlist"):
        check_image_allowed("evil/miner:1", allow)


def test_check_job_image_rejects_with_the_backend_field() -> None:
    job = sleep_job("j").model_copy(update={"backend": Backend.KERAS_JAX})
    backends: dict[str, BackendConfig] = {"keras-jax": DockerBackend(image="other/image:1"), "sleep": LocalBackend()}
    with pytest.raises(Rejection) as info:
        check_job_image(job, backends, ["edgebench/keras-jax:1"])
    assert info.value.field == "backend" and "other/image:1" in info.value.reason
    allowed: dict[str, BackendConfig] = {"keras-jax": DockerBackend(image="edgebench/keras-jax:1")}
    check_job_image(job, allowed, ["edgebench/keras-jax:1"])
    check_job_image(sleep_job("j2"), backends, [])  # local backends are not images


def test_gpu_request_renumbers_inside_the_container() -> None:
    assert gpu_request({"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}) == ([], {})
    assert gpu_request({}) == ([], {})
    [req], env = gpu_request({"CUDA_VISIBLE_DEVICES": "1,3"}, uuids=lambda ids: None)  # no NVML: indices
    assert req["DeviceIDs"] == ["1", "3"] and req["Capabilities"] == [["gpu"]]
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    # with NVML, indices as the agent sees them become UUIDs, which the engine reads the same way
    [req], env = gpu_request({"CUDA_VISIBLE_DEVICES": "0,1"}, uuids=lambda ids: [f"GPU-{i}" for i in ids])
    assert req["DeviceIDs"] == ["GPU-0", "GPU-1"] and env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    [req], _ = gpu_request({"CUDA_VISIBLE_DEVICES": "GPU-abc"})
    assert req["DeviceIDs"] == ["GPU-abc"]
    [req], env = gpu_request({"CUDA_VISIBLE_DEVICES": "all"})
    assert req["Count"] == -1 and env == {}


def test_frameworks_label_to_versions() -> None:
    assert frameworks_from_label("keras==3.15.1 jax[cuda12]==0.10.2 pillow") == {"keras": "3.15.1", "jax": "0.10.2"}


# -- a real engine ---------------------------------------------------------------------------
def _executor(image: str, tmp_path: Path, allow: list[str] | None = None, **cfg: object) -> DockerExecutor:
    return DockerExecutor(DockerBackend(image=image, **cfg), tmp_path / "state" / "runner-code",  # type: ignore[arg-type]
                          [image] if allow is None else allow)


def _job_dir(tmp_path: Path, job: JobSpec) -> Path:
    job_dir = tmp_path / "state" / "jobs" / f"{job.job_id}-1"
    job_dir.mkdir(parents=True, mode=0o700)  # private, as an agent may create it
    (job_dir / "job.json").write_text(json.dumps(job.model_dump(mode="json")))
    return job_dir


@pytest.mark.docker
def test_probe_reads_the_image_labels(jax_image, tmp_path) -> None:  # noqa: F811
    ex = _executor(jax_image.tag, tmp_path)
    info = ex.probe("keras-jax")
    assert info.available and info.executor == "docker", info.detail
    assert info.versions["keras"] == "3.15.1" and info.versions["cuda"] == "none"
    wrong = ex.probe("torch")
    assert not wrong.available and "built for backend 'keras-jax'" in wrong.detail
    blocked = _executor(jax_image.tag, tmp_path, allow=["edgebench/other:1"]).probe("keras-jax")
    assert not blocked.available and "image_allowlist" in blocked.detail
    missing = _executor("edgebench/not-built:0", tmp_path).probe("keras-jax")
    assert not missing.available and "not on this host" in missing.detail


@pytest.mark.docker
def test_sleep_job_through_jobrun(jax_image, tmp_path) -> None:  # noqa: F811
    """The agent's own job path (JobRun) with the runner in a container."""
    job = sleep_job("j-docker-sleep", epochs=2, steps=5)
    # a backend's own PYTHONPATH goes after the image's runner package
    ex = _executor(jax_image.tag, tmp_path, env={"PYTHONPATH": "/opt/site-extra"})
    run = JobRun(job=job, attempt=1, device_id="box", executor=ex, job_dir=tmp_path / "state" / "jobs" / "j-1",
                 dataset_root=tmp_path / "no-datasets", fingerprint=lambda libs: _fingerprint(libs),
                 on_progress=lambda p: None, env={"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"})
    outcome = run.run()
    assert outcome.state is JobState.SUCCEEDED, (outcome.reason, outcome.log_tail)
    assert outcome.result is not None and outcome.result.summary.n_batches == 5
    # which image, and exactly which build: reports group devices by image digest
    fp = outcome.result.fingerprint
    assert fp.container_image == jax_image.tag and fp.container_digest == jax_image.image_id  # a local build: its id


@pytest.mark.docker
@pytest.mark.slow
def test_users_keras_model_trains_in_a_runner_container(jax_image, tmp_path, monkeypatch) -> None:  # noqa: F811
    """A user's .keras file, delivered into the agent's cache (a shared directory here), mounted
    read-only into the runner container: its own digest's directory and nothing else of the cache."""
    import shutil

    from edgebench.agent.artifacts import Artifacts
    from edgebench.agent.validation import check_job
    from edgebench.controller.plan import build_job
    from edgebench.schemas.artifact import ModelArtifactRef
    from tests.artifact_models import make_keras, ref_doc

    model = make_keras(tmp_path / "tiny.keras")
    shared = tmp_path / "share"
    (shared / "sha256").mkdir(parents=True)
    ref = ModelArtifactRef.model_validate(ref_doc(model, "keras", kind="directory", shape=(8, 8, 1), layout="NHWC"))
    shutil.copy(model, shared / "sha256" / ref.digest)
    other = Artifacts(tmp_path / "state" / "models", shared_dir=shared)
    job = build_job({"backend": "keras-jax", "model": "tiny", "samples": 256, "batch_size": 16, "epochs": 2},
                    "j-docker-user-model", None, lambda _ref, _job: (ref, None))
    ex = _executor(jax_image.tag, tmp_path)
    check_job(job, {"keras-jax": ex.probe("keras-jax")}, gpu_count=0)  # no longer refused for docker
    run = JobRun(job=job, attempt=1, device_id="box", executor=ex, job_dir=tmp_path / "state" / "jobs" / "j-um",
                 dataset_root=tmp_path / "no-datasets", fingerprint=lambda libs: _fingerprint(libs),
                 on_progress=lambda p: None, env={"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"},
                 artifacts=other)
    (tmp_path / "state" / "models" / "sha256" / ("0" * 64)).mkdir(parents=True)  # another model: not mounted
    from docker.models.containers import ContainerCollection

    created: list[dict[str, object]] = []
    real_create = ContainerCollection.create

    def create(self: object, *args: object, **kwargs: object) -> object:
        created.append(kwargs)
        return real_create(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ContainerCollection, "create", create)  # the real engine, its arguments recorded
    outcome = run.run()
    assert outcome.state is JobState.SUCCEEDED, (outcome.reason, outcome.log_tail)
    assert outcome.result is not None and outcome.result.summary.window_img_per_s > 0
    assert outcome.result.job.model_artifact is not None and outcome.result.job.model_artifact.digest == ref.digest
    [kwargs] = created
    mounts = {m["Target"]: m for m in kwargs["mounts"]}  # type: ignore[attr-defined]
    assert {t for t in mounts if t.startswith("/edgebench/models")} == {f"/edgebench/models/sha256/{ref.digest}"}
    assert mounts[f"/edgebench/models/sha256/{ref.digest}"]["ReadOnly"] is True
    assert kwargs["environment"]["EDGEBENCH_MODEL_CACHE"] == "/edgebench/models"  # type: ignore[index]


def _fingerprint(libraries: dict[str, str]):  # type: ignore[no-untyped-def]
    from edgebench.agent.fingerprint import machine_fingerprint

    return machine_fingerprint(libraries, [])


@pytest.mark.docker
def test_container_isolation_pid_and_kill(docker_client, jax_image, tmp_path) -> None:  # noqa: F811
    """A hung runner: no network, read-only mounts, host PID visible to the
    agent, limits applied; kill() removes the container and its processes."""
    datasets = tmp_path / "datasets"
    datasets.mkdir(mode=0o755)
    ex = _executor(jax_image.tag, tmp_path, env={"EDGEBENCH_SLEEP_FAULT": "hang"}, cpus=0.5, mem_limit="512m")
    job = sleep_job("j-docker-hang", epochs=3, steps=5)
    proc = ex.start(_job_dir(tmp_path, job), {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}, datasets)
    assert isinstance(proc, DockerRunnerProcess)
    try:
        lines = proc.lines()
        kinds = []
        for line in lines:
            kinds.append(json.loads(line)["type"])
            if kinds.count("phase") >= 2:  # the measured epoch began: the fault struck
                break
        assert kinds[0] == "hello"
        attrs = docker_client.containers.get(proc.container_id).attrs
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "none" and host["PidMode"] == "host"
        assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 512 * 2**20
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
        assert {m["Destination"]: m["RW"] for m in attrs["Mounts"]} == \
            {"/edgebench/job": False, "/edgebench/datasets": False}
        # the host PID is the runner's: the telemetry sampler can follow it and its children
        assert proc.pid is not None
        root = psutil.Process(proc.pid)
        assert "runner" in " ".join(root.cmdline())
        deadline = time.monotonic() + 30
        while not root.children(recursive=True) and time.monotonic() < deadline:
            time.sleep(0.2)  # the hang fault starts a child, as frameworks start workers
        family = [root, *root.children(recursive=True)]
        assert len(family) >= 2
    finally:
        proc.kill()
    assert proc.wait(30) == -9
    _gone, alive = psutil.wait_procs(family, timeout=10)
    assert not alive
    assert not docker_client.containers.list(all=True, filters={"id": proc.container_id})
    proc.kill()  # idempotent


@pytest.mark.docker
def test_crash_keeps_the_stderr_tail_and_status(docker_client, jax_image, tmp_path) -> None:  # noqa: F811
    ex = _executor(jax_image.tag, tmp_path, env={"EDGEBENCH_SLEEP_FAULT": "crash"})
    job = sleep_job("j-docker-crash", epochs=2, steps=3)
    proc = ex.start(_job_dir(tmp_path, job), {"CUDA_VISIBLE_DEVICES": ""}, tmp_path / "absent")
    assert isinstance(proc, DockerRunnerProcess)
    lines = list(proc.lines())
    assert json.loads(lines[0])["type"] == "hello"
    assert all(line.startswith("{") for line in lines)  # stderr never reaches the protocol stream
    assert proc.wait(60) == 3
    assert "crash" in proc.stderr_tail().lower()
    assert not docker_client.containers.list(all=True, filters={"id": proc.container_id})


@pytest.mark.docker
def test_long_lines_survive_the_log_driver(docker_client, jax_image) -> None:  # noqa: F811
    """The log driver splits lines over 16 KiB; the stream puts them back."""
    container = docker_client.containers.create(
        jax_image.tag, entrypoint=["python", "-c", "print('{' + 'x' * 100000 + '}'); print('{}')"],
        network_mode="none")
    container.start()
    container.reload()
    proc = DockerRunnerProcess(container, jax_image.tag, jax_image.image_id)
    lines = list(proc.lines())
    assert [len(line) for line in lines] == [100003, 3]
    assert proc.wait(30) == 0


@pytest.mark.docker
def test_image_off_the_allowlist_never_starts(jax_image, tmp_path) -> None:  # noqa: F811
    ex = _executor(jax_image.tag, tmp_path, allow=["edgebench/something-else:1"])
    job = sleep_job("j-docker-blocked")
    with pytest.raises(ImageNotAllowed):
        ex.start(_job_dir(tmp_path, job), {}, tmp_path)


@pytest.mark.docker
def test_remove_stale_runners(docker_client, jax_image, tmp_path) -> None:  # noqa: F811
    ex = _executor(jax_image.tag, tmp_path, env={"EDGEBENCH_SLEEP_FAULT": "hang"})
    proc = ex.start(_job_dir(tmp_path, sleep_job("j-docker-stale", epochs=3)), {}, tmp_path)
    assert isinstance(proc, DockerRunnerProcess)
    # a new agent life (same state dir) sweeps what the old one left running
    assert _executor(jax_image.tag, tmp_path).remove_stale_runners() == 1
    assert not docker_client.containers.list(all=True, filters={"id": proc.container_id})
    assert os.path.isdir(tmp_path / "state" / "jobs")


@pytest.mark.docker
def test_finds_its_own_container(docker_client, agent_image) -> None:  # noqa: F811
    """Inside a container the executor finds that container's id (for path
    translation); on the engine's host, other containers' mounts do not fool it."""
    from edgebench.agent.executors.docker import _container_id_from_mountinfo

    if not Path("/.dockerenv").exists():
        assert _container_id_from_mountinfo() is None
    container = docker_client.containers.run(
        agent_image.tag, entrypoint=["python", "-c", "from edgebench.agent.executors.docker import "
                                     "_container_id_from_mountinfo as f; print(f())"],
        network_mode="host", detach=True)
    try:
        assert container.wait(timeout=60)["StatusCode"] == 0
        assert container.logs().decode().strip() == container.id
    finally:
        container.remove(force=True)
