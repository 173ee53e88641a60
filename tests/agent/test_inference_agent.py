"""Inference through a real agent and a real Mosquitto (issue 18's CI verification):
ONNX Runtime, OpenVINO, LiteRT and torch, SingleStream and Offline on the catalogue MLP
and CNN and SingleStream on ResNet-56, each result carrying LoadGen's summary and a
passing equivalence check; a model with perturbed weights failing equivalence; a runtime
that is not installed REJECTED; a run that cannot meet LoadGen's minimums INVALID.

Quick rules with a 200 ms minimum keep the whole module near two minutes on two cores;
one model cache for the module, so each model is exported once.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgebench.controller.plan import build_job
from edgebench.controller.store import ResultStore
from edgebench.schemas import JobSpec, JobState, Result
from tests.agent.conftest import write_agent_config
from tests.helpers import wait_online

pytestmark = pytest.mark.slow

RUNTIMES = ["onnxruntime", "openvino", "litert", "torch"]
_NEEDS = {"onnxruntime": ["onnxruntime", "onnx", "onnxscript", "torch"], "openvino": ["openvino", "onnx", "torch"],
          "litert": ["ai_edge_litert", "tensorflow", "keras"], "torch": ["torch"]}
missing = [m for rt in RUNTIMES for m in _NEEDS[rt] + ["mlperf_loadgen"] if importlib.util.find_spec(m) is None]
if missing:
    pytest.skip(f"inference runtimes not installed ({', '.join(sorted(set(missing)))}): make install",
                allow_module_level=True)

TERMINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED, JobState.REJECTED}
QUICK = {"rules": "quick", "min_duration_ms": 200, "synthetic": True}


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


def _agent(start_agent, tmp_path: Path, cache: Path):
    env = {"EDGEBENCH_MODEL_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2"}
    backends = {rt: {"executor": "local", "env": env} for rt in RUNTIMES}
    # configured, but its runtime is not installed here: jobs for it must be REJECTED up front
    backends["tensorrt"] = {"executor": "local", "env": env}
    config = write_agent_config(tmp_path / "agent.yaml", backends=backends)
    return start_agent("box1", config=config)


def _job(job_id: str, backend: str, workload: str, scenario: str, **extra) -> JobSpec:
    return build_job({"backend": backend, "workload": workload, "scenario": scenario, "batch_size": 8,
                      **QUICK, **extra}, job_id)


def _results(watcher, jobs: list[JobSpec], agent, timeout_s: float = 600) -> dict[str, object]:
    watcher.dispatch("box1", *jobs)
    return {j.job_id: watcher.wait_for(j.job_id, TERMINAL, timeout_s, agent) for j in jobs}


def test_every_runtime_under_loadgen(start_agent, watcher, tmp_path, model_cache):
    agent = _agent(start_agent, tmp_path, model_cache)
    [status] = wait_online(watcher.fc, "box1", agents=[agent]).values()
    infos = {b.backend: b for b in status.backends}
    assert infos["onnxruntime"].available and "CPUExecutionProvider" in infos["onnxruntime"].providers
    assert infos["openvino"].available and "CPU" in infos["openvino"].providers
    assert not infos["tensorrt"].available and "tensorrt" in infos["tensorrt"].detail

    jobs = [_job(f"{rt}-{model}-{sc}", rt, f"fashion-mnist-{model}", sc)
            for rt in RUNTIMES for model in ("mlp", "cnn") for sc in ("single-stream", "offline")]
    jobs += [_job(f"{rt}-resnet56-ss", rt, "cifar10-resnet56", "single-stream") for rt in RUNTIMES]
    jobs.append(_job("trt-missing", "tensorrt", "fashion-mnist-cnn", "single-stream"))
    events = _results(watcher, jobs, agent)

    rejected = events.pop("trt-missing")
    assert rejected.state == JobState.REJECTED and rejected.field == "backend"
    assert "not available" in (rejected.reason or "") and "tensorrt" in (rejected.reason or "")
    for job_id, ev in events.items():
        assert ev.state == JobState.SUCCEEDED, (job_id, ev.reason, (ev.log_tail or "")[-2000:])
        res = ev.result
        assert isinstance(res, Result)
        run = res.runs[0]
        inf = run.inference
        assert inf is not None, job_id
        lg = inf.loadgen
        assert lg.valid, (job_id, lg.invalid_reason, lg.summary_text)
        assert lg.scenario == ("Offline" if "offline" in job_id else "SingleStream")
        assert lg.loadgen_version and lg.rules.value == "quick" and "MLPerf Results Summary" in lg.summary_text
        assert lg.sample_count > 0 and lg.duration_s >= 0.2
        assert inf.equivalence.passed, (job_id, inf.equivalence)
        assert inf.model.sha256 and inf.model.size_bytes > 0
        assert inf.runtime == res.job.backend.value
        assert run.throughput.images == lg.sample_count  # energy per inference divides by LoadGen's count
        assert res.knobs["scenario"] == res.job.inference.scenario.value
        if lg.scenario == "SingleStream":
            assert run.latency and run.latency.p90_ms == pytest.approx(lg.latency_ns["p90"] / 1e6)
    # one file per (model, format) on the box, whichever runtime asked first
    onnx = {events[f"{rt}-cnn-offline"].result.runs[0].inference.model.sha256 for rt in ("onnxruntime", "openvino")}
    assert len(onnx) == 1
    fmt = events["litert-cnn-offline"].result.runs[0].inference.model.format
    assert fmt == "tflite"
    assert events["torch-cnn-offline"].result.runs[0].inference.model.format == "torch-module"
    store = ResultStore(watcher.fc.cfg.store_url)
    assert store.results(job_id="onnxruntime-cnn-offline")[0].outcome == "OK"


def test_corrupted_weights_fail_equivalence_and_minimums_fail_validity(start_agent, watcher, tmp_path, model_cache):
    import onnx
    from onnx import numpy_helper

    from edgebench.runner.inference.artifacts import Cache
    from edgebench.runner.inference.export import ensure

    cache = Cache(str(model_cache))
    good, _ = ensure("cnn", "fashion_mnist", "onnx", "fp32", cache=cache)
    model = onnx.load(good.path)
    weights = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w = numpy_helper.to_array(weights)
    w = w + np.random.RandomState(0).normal(scale=float(w.std()), size=w.shape).astype(w.dtype)
    weights.CopyFrom(numpy_helper.from_array(w, weights.name))
    bad_path = tmp_path / "perturbed.onnx"
    onnx.save(model, str(bad_path))
    # the perturbed file travels with the original's reference, as a tampered artifact would
    bad = cache.put(str(bad_path), dict(good.meta, source="perturbed copy"), good.reference())
    assert bad.sha256 != good.sha256

    agent = _agent(start_agent, tmp_path, model_cache)
    wait_online(watcher.fc, "box1", agents=[agent])
    jobs = [
        _job("ort-perturbed", "onnxruntime", "fashion-mnist-cnn", "single-stream", model_sha256=bad.sha256),
        _job("ort-unmet", "onnxruntime", "fashion-mnist-mlp", "single-stream", min_query_count=10_000_000,
             max_duration_ms=300),
        _job("ort-unknown", "onnxruntime", "fashion-mnist-mlp", "single-stream", model_sha256="0" * 64),
    ]
    events = _results(watcher, jobs, agent)
    ev = events["ort-perturbed"]
    assert ev.state == JobState.SUCCEEDED, ev.reason
    eq = ev.result.runs[0].inference.equivalence
    assert not eq.passed and eq.max_rel_err > eq.tolerance_rel and "relative error" in eq.detail
    assert ev.result.runs[0].inference.model.sha256 == bad.sha256

    ev = events["ort-unmet"]
    assert ev.state == JobState.SUCCEEDED, ev.reason
    lg = ev.result.runs[0].inference.loadgen
    assert not lg.valid and lg.min_queries_met is False

    ev = events["ort-unknown"]
    assert ev.state == JobState.FAILED and "no model with sha256" in (ev.reason or "")

    # the report: the perturbed run is shown, flagged, and never the best; INVALID shows no figure
    from typer.testing import CliRunner

    from edgebench.controller import inference_report
    from edgebench.controller.cli import app

    results = [events[j].result for j in ("ort-perturbed", "ort-unmet")]
    rows = inference_report.rows(results)
    assert {r.job_id: r.rankable for r in rows} == {"ort-perturbed": False, "ort-unmet": False}
    [(_, best, excluded)] = [b for b in inference_report.best_per_device(rows) if b[0][1] == "cnn"]
    assert best is None and "not equivalent" in excluded[0]
    text = inference_report.markdown(rows)
    assert "**FAIL**" in text and "INVALID" in text
    cdf = inference_report.latency_cdf(rows[0])
    assert cdf[0][1] == 0.0 and cdf[-1][1] == 1.0 and [p for p, _ in cdf] == sorted(p for p, _ in cdf)
    cfg = watcher.fc.cfg
    out = CliRunner().invoke(app, ["--broker", cfg.broker_url, "--fleet", cfg.fleet, "--store", cfg.store_url,
                                   "inference", "report"])
    assert out.exit_code == 0, out.output
    assert "Best runtime per device" in out.output
    out = CliRunner().invoke(app, ["models", "export", "-w", "fashion-mnist-cnn", "-r", "onnxruntime",
                                   "--cache", str(model_cache)])
    assert out.exit_code == 0, out.output
    assert good.sha256[:16] in out.output and "cached" in out.output
