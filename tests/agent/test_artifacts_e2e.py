"""Issue 19's CI verification, embedded delivery: a small ONNX model and a small .keras model are
registered, dispatched to a real agent over the real Mosquitto broker, fetched from the controller's
own artifact server through per-job signed URLs, and run: ONNX on ONNX Runtime and OpenVINO under
LoadGen, .keras trained on keras-jax and keras-torch. A tampered artifact is refused by its digest and
the agent goes on; the second job for a model downloads nothing."""

from __future__ import annotations

import importlib.util
import json
import socket

import pytest

from edgebench.controller.artifact_delivery import Delivery
from edgebench.controller.plan import build_jobs
from edgebench.schemas import ErrorType, JobState, Result
from tests.agent.conftest import write_agent_config
from tests.artifact_models import make_keras, make_onnx
from tests.helpers import wait_online
from tests.oci_registry import ISSUER, SERVICE, running_registry

pytestmark = pytest.mark.slow

NEEDED = ["onnx", "onnxruntime", "openvino", "mlperf_loadgen", "keras", "jax", "torch"]
missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
if missing:
    pytest.skip(f"not installed: {', '.join(missing)} (make install)", allow_module_level=True)

TERMINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED, JobState.REJECTED}
BACKENDS = ("onnxruntime", "openvino", "keras-jax", "keras-torch")
QUICK = {"rules": "quick", "min_duration_ms": 200, "batch_size": 8}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_users_models_over_the_broker_with_the_embedded_server(start_agent, watcher, controller_cfg, tmp_path):
    port = _free_port()
    cfg = controller_cfg.model_copy(update={"artifact_dir": tmp_path / "artifacts", "artifact_addr": "127.0.0.1",
                                            "artifact_port": port, "artifact_url": f"http://127.0.0.1:{port}"})
    delivery = Delivery(cfg, watcher.fc.store)
    onnx_entry = delivery.registry.add(make_onnx(tmp_path / "tiny.onnx"), "tiny-onnx")
    keras_entry = delivery.registry.add(make_keras(tmp_path / "tiny.keras"), "tiny-keras")
    assert keras_entry.input_shape == (8, 8, 1) and keras_entry.classes == 4

    env = {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    config = write_agent_config(tmp_path / "agent.yaml",
                                backends={b: {"executor": "local", "env": env} for b in BACKENDS},
                                artifact_fetch_attempts=2, artifact_fetch_backoff_s=0.1)
    agent = start_agent("box1", config=config)
    wait_online(watcher.fc, "box1", agents=[agent])

    def resolve(ref: str, job_id: str):  # type: ignore[no-untyped-def]
        return delivery.job_reference(ref, job_id), delivery.registry.resolve(ref).dataset

    cases = [{"backend": "onnxruntime", "model": "tiny-onnx", **QUICK},
             {"backend": "openvino", "model": "tiny-onnx", **QUICK},
             {"backend": "keras-jax", "model": "tiny-keras", "samples": 512, "batch_size": 16},
             {"backend": "keras-torch", "model": "tiny-keras", "samples": 512, "batch_size": 16}]
    jobs = build_jobs(cases, "own", resolve)
    with delivery.server() as server:
        watcher.dispatch("box1", *jobs)
        events = {j.job_id: watcher.wait_for(j.job_id, TERMINAL, 600, agent) for j in jobs}
        for job in jobs:
            ev = events[job.job_id]
            assert ev.state == JobState.SUCCEEDED, (job.backend, ev.reason, agent.log()[-3000:])
            result = ev.result
            assert isinstance(result, Result) and result.summary.window_img_per_s > 0
            if job.backend.value in ("onnxruntime", "openvino"):
                inf = result.runs[0].inference
                assert inf is not None and inf.model.sha256 == onnx_entry.digest
                assert inf.equivalence.passed, inf.equivalence
        # each file crossed the network once: the second job for each model found it in the cache
        assert server.served == 2, server.served
        assert server.bytes_out == onnx_entry.size_bytes + keras_entry.size_bytes

        # a tampered artifact on the server: the agent refuses it by its digest, and goes on
        tampered = tmp_path / "other.onnx"
        make_onnx(tampered, classes=3)
        bad = delivery.registry.add(tampered, "tampered")
        stored = delivery.registry.dir / "sha256" / bad.digest
        flipped = bytearray(stored.read_bytes())
        flipped[-1] ^= 0x01  # one bit of the bias, same size: only the digest can tell
        stored.write_bytes(bytes(flipped))
        refused, after = build_jobs([{"backend": "onnxruntime", "model": "tampered", **QUICK},
                                     {"backend": "onnxruntime", "model": "tiny-onnx", **QUICK}], "own2", resolve)
        watcher.dispatch("box1", refused, after)
        ev = watcher.wait_for(refused.job_id, TERMINAL, 300, agent)
        assert ev.state == JobState.FAILED and ev.error_type == ErrorType.ARTIFACT
        assert (ev.reason or "").startswith("digest-mismatch:"), ev.reason
        ok = watcher.wait_for(after.job_id, TERMINAL, 300, agent)
        assert ok.state == JobState.SUCCEEDED, ok.reason
        assert server.served == 3  # the tampered download; the last job used the cache


def test_users_model_from_the_team_store(start_agent, watcher, controller_cfg, tmp_path):
    """The same path with the OCI registry as the store: pushed once, pulled once per agent with a
    per-job token over TLS; the second job downloads nothing."""
    with running_registry(tmp_path / "registry") as registry:
        cfg = controller_cfg.model_copy(update={
            "artifact_dir": tmp_path / "artifacts", "artifact_delivery": "oci", "artifact_oci_url": registry.url,
            "artifact_oci_token_key": registry.token_key, "artifact_oci_token_cert": registry.token_cert,
            "artifact_oci_issuer": ISSUER, "artifact_oci_service": SERVICE,
            "artifact_oci_ca_file": str(registry.ca_file)})
        delivery = Delivery(cfg, watcher.fc.store)
        entry = delivery.registry.add(make_onnx(tmp_path / "tiny.onnx"), "team-model")
        config = write_agent_config(tmp_path / "agent.yaml", backends={"onnxruntime": {"executor": "local"}},
                                    artifact_ca_file=str(registry.ca_file), artifact_fetch_backoff_s=0.1)
        agent = start_agent("box1", config=config)
        wait_online(watcher.fc, "box1", agents=[agent])

        def resolve(ref: str, job_id: str):  # type: ignore[no-untyped-def]
            return delivery.job_reference(ref, job_id), delivery.registry.resolve(ref).dataset

        jobs = build_jobs([{"backend": "onnxruntime", "model": "team-model@1", **QUICK}] * 2, "team", resolve)
        assert all(j.model_artifact is not None and j.model_artifact.location.kind == "oci" for j in jobs)
        watcher.dispatch("box1", *jobs)
        for job in jobs:
            ev = watcher.wait_for(job.job_id, TERMINAL, 300, agent)
            assert ev.state == JobState.SUCCEEDED, (ev.reason, agent.log()[-3000:])
            assert ev.result is not None and ev.result.runs[0].inference.model.sha256 == entry.digest
        fetched = [line for line in agent.log().splitlines() if "team-model@1" in line and "fetched" in line]
        assert len(fetched) == 1, fetched  # the second job found it in the cache


def test_the_readme_commands(start_agent, controller_cfg, tmp_path):
    """README "Benchmark your own model": models add, list, dispatch --model (which serves the file while
    it waits), rm, through the CLI with its settings from the environment."""
    from typer.testing import CliRunner

    from edgebench.controller.cli import app

    port = _free_port()
    env = {"EDGEBENCH_ARTIFACT_DIR": str(tmp_path / "artifacts"), "EDGEBENCH_ARTIFACT_PORT": str(port),
           "EDGEBENCH_ARTIFACT_ADDR": "127.0.0.1", "EDGEBENCH_ARTIFACT_URL": f"http://127.0.0.1:{port}"}
    runner = CliRunner()

    def cli(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["--broker", controller_cfg.broker_url, "--fleet", controller_cfg.fleet,
                                   "--store", controller_cfg.store_url, *args], env=env)

    out = cli("models", "add", str(make_onnx(tmp_path / "mine.onnx")), "--name", "mine")
    assert out.exit_code == 0, out.output
    listed = cli("models", "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["name"] == "mine"
    config = write_agent_config(tmp_path / "agent.yaml", backends={"onnxruntime": {"executor": "local"}})
    agent = start_agent("box1", config=config)
    from edgebench.controller.fleet import FleetClient
    from edgebench.controller.store import ResultStore

    with FleetClient(controller_cfg, ResultStore(controller_cfg.store_url)) as fc:
        wait_online(fc, "box1", agents=[agent])
    out = cli("dispatch", "-d", "box1", "-b", "onnxruntime", "--model", "mine", "--rules", "quick",
              "--wait-timeout", "300")
    assert out.exit_code == 0, out.output + agent.log()[-3000:]
    assert "user/artifact-input" in out.output
    out = cli("models", "rm", "mine@1")
    assert out.exit_code == 0 and cli("models", "list", "--json").stdout.strip() == "[]"
