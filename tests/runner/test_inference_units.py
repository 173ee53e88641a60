"""Inference's library parts, each against the real thing where it is on the box:
LoadGen runs a real test against a numpy "runtime", the cache hashes real files,
RAPL is read from a sysfs tree laid out as the kernel lays it out (no RAPL here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edgebench.runner.inference import equivalence, harness, rapl
from edgebench.runner.inference.artifacts import ArtifactError, Cache, recipe_digest
from edgebench.schemas.inference import Equivalence, LoadGenSummary

pytest.importorskip("mlperf_loadgen")


class SleepRuntime:
    """A stand-in SUT: sleeps a fixed time per batch, counts what it was asked."""

    name = "sleep"

    def __init__(self, per_batch_s: float = 0.0005, fail_after: int | None = None):
        self.per_batch_s = per_batch_s
        self.calls = 0
        self.samples = 0
        self.fail_after = fail_after

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.samples += len(x)
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("device lost")
        time.sleep(self.per_batch_s)
        return x.reshape(len(x), -1)[:, :2]

    def predict_many(self, batches, done):
        for k, x in enumerate(batches):
            self.predict(x)
            done(k)


def _run(tmp_path: Path, scenario: str, inference: dict, runtime=None, hints=None):
    runtime = runtime or SleepRuntime()
    samples = np.zeros((32, 4), dtype="float32")
    inference = {"rules": "quick", **inference}
    summary = harness.run(runtime, samples, "mlp", scenario, inference, 4, str(tmp_path / scenario),
                          hints or {"latency_s": 0.0005, "samples_per_s": 8000})
    return LoadGenSummary.model_validate(summary, strict=False), runtime


def test_single_stream_summary_is_loadgens(tmp_path: Path) -> None:
    s, rt = _run(tmp_path, "single-stream", {"min_duration_ms": 300})
    assert s.scenario == "SingleStream" and s.mode == "PerformanceOnly" and s.rules.value == "quick"
    assert s.valid, s.invalid_reason
    assert s.query_count == rt.calls >= 100  # quick mode keeps MLPerf's SingleStream minimum of 100 queries
    assert s.sample_count == s.query_count
    assert set(s.latency_ns) >= {"min", "max", "mean", "p50", "p90", "p95", "p99", "p99.9"}
    assert 0.5e6 <= s.latency_ns["p50"] <= s.latency_ns["p90"] <= s.latency_ns["p99"] <= s.latency_ns["max"]
    assert s.headline[0] == "p90_ms" and s.headline[1] == pytest.approx(s.latency_ns["p90"] / 1e6)
    assert s.duration_s >= 0.3 and "90.0th percentile latency" in s.summary_text
    assert s.effective["min_duration_ms"] == "300" and s.effective["edgebench_rules"] == "quick"
    assert s.detail_log and "loadgen_file_sha1" not in s.detail_log


def test_offline_is_one_query_of_many_samples(tmp_path: Path) -> None:
    s, rt = _run(tmp_path, "offline", {"min_duration_ms": 200})
    assert s.scenario == "Offline" and s.query_count == 1
    assert s.sample_count == rt.samples > 100
    assert rt.calls == -(-s.sample_count // 4)  # batches of batch_size 4
    assert s.samples_per_s and s.headline[0] == "samples_per_s"


def test_offline_pads_a_compiled_runtimes_last_batch(tmp_path: Path) -> None:
    class Compiled(SleepRuntime):
        static_batch = True  # torch.compile / jax.jit: a new shape would compile again

        def __init__(self) -> None:
            super().__init__()
            self.sizes: set[int] = set()

        def predict(self, x: np.ndarray) -> np.ndarray:
            self.sizes.add(len(x))
            return super().predict(x)

    rt = Compiled()
    # 1.5 x 1,000 samples/s x 0.2 s: a query of a few hundred samples, in batches of 7
    raw = harness.run(rt, np.zeros((32, 4), dtype="float32"), "mlp", "offline",
                      {"rules": "quick", "min_duration_ms": 200}, 7, str(tmp_path / "padded"),
                      {"samples_per_s": 1000})
    s = LoadGenSummary.model_validate(raw, strict=False)
    assert s.valid, s.invalid_reason
    assert rt.sizes == {7}  # every batch at batch_size, the last one too
    padded = -s.sample_count % 7
    assert padded == 0 or s.effective["edgebench_padded_samples"].startswith(f"{padded} ")


def test_multi_stream_sends_8_samples_per_query(tmp_path: Path) -> None:
    s, rt = _run(tmp_path, "multi-stream", {"min_duration_ms": 100, "min_query_count": 50})
    assert s.scenario == "MultiStream" and s.effective["samples_per_query"] == "8"
    assert rt.samples == 8 * rt.calls and s.sample_count == 8 * s.query_count
    assert s.headline[0] == "p99_ms"


def test_server_reports_scheduled_qps_and_its_bound(tmp_path: Path) -> None:
    s, _ = _run(tmp_path, "server", {"min_duration_ms": 300, "target_qps": 200, "target_latency_ms": 50,
                                     "min_query_count": 50})
    assert s.scenario == "Server" and s.effective["target_qps"] == "200"
    assert s.effective["target_latency_ns"] == "50000000"
    assert s.scheduled_qps and s.scheduled_qps == pytest.approx(200, rel=0.3)


def test_unmet_minimum_is_invalid_not_a_number(tmp_path: Path) -> None:
    # the run stops at max_duration before the query minimum: LoadGen's verdict is INVALID
    s, _ = _run(tmp_path, "single-stream", {"min_duration_ms": 100, "max_duration_ms": 200,
                                            "min_query_count": 1_000_000})
    assert not s.valid and s.min_queries_met is False


def test_a_warm_up_slower_than_the_run_is_recalibrated_once(tmp_path: Path) -> None:
    # a loaded box: the warm-up saw 10 x less than the run gets; LoadGen runs out of its queries
    # (INVALID, min duration not met), the second run takes its hints from the first
    s, _ = _run(tmp_path, "offline", {"min_duration_ms": 200}, hints={"latency_s": 0.005, "samples_per_s": 800})
    assert s.valid and s.duration_s >= 0.2, s.invalid_reason
    assert "first run INVALID" in s.effective["edgebench_recalibrated"]
    assert float(s.effective["target_qps"]) > 800 * 1.5
    s, _ = _run(tmp_path, "single-stream", {"min_duration_ms": 300}, hints={"latency_s": 0.02})
    assert s.valid and s.duration_s >= 0.3, s.invalid_reason
    assert "edgebench_recalibrated" in s.effective


def test_recalibration_leaves_a_good_or_a_bounded_run_alone(tmp_path: Path) -> None:
    s, _ = _run(tmp_path, "offline", {"min_duration_ms": 200})
    assert s.valid and "edgebench_recalibrated" not in s.effective
    # the job's own limits make the verdict: INVALID stays INVALID, not retried
    s, _ = _run(tmp_path, "offline", {"min_duration_ms": 200, "max_duration_ms": 150}, hints={"samples_per_s": 800})
    assert "edgebench_recalibrated" not in s.effective


def test_a_runtime_error_invalidates_the_run(tmp_path: Path) -> None:
    s, _ = _run(tmp_path, "single-stream", {"min_duration_ms": 100}, SleepRuntime(fail_after=5))
    assert not s.valid and "device lost" in s.invalid_reason


def test_mlperf_rules_are_loadgens_own(tmp_path: Path) -> None:
    lg = harness.loadgen()
    s, notes = harness.build_settings(lg, "resnet50", "offline", {"rules": "mlperf"}, {"samples_per_s": 100})
    assert s.min_duration_ms == 600_000 and s.min_query_count == 24576  # mlperf.conf, as shipped
    assert s.offline_expected_qps == pytest.approx(150)
    s, notes = harness.build_settings(lg, "cnn", "multi-stream", {"rules": "quick"}, {"latency_s": 0.002})
    assert s.min_duration_ms == harness.QUICK_MIN_DURATION_MS and s.min_query_count == 662
    assert s.multi_stream_samples_per_query == 8 and "quick" in notes


def test_equivalence_tolerances() -> None:
    rng = np.random.RandomState(0)
    ref = rng.normal(size=(16, 10)).astype("float32")
    ok = equivalence.compare(ref + 1e-6, ref, "fp32", "ref")
    assert ok["passed"] and ok["top1_agreement"] == 1.0 and ok["decisive_samples"] > 0
    Equivalence.model_validate(ok, strict=False)
    bad = equivalence.compare(ref + rng.normal(scale=0.5, size=ref.shape), ref, "fp32", "ref")
    assert not bad["passed"] and "relative error" in bad["detail"]
    # int8-sized noise passes at int8's tolerance, not at fp32's
    noisy = ref + rng.normal(scale=0.02, size=ref.shape)
    assert equivalence.compare(noisy, ref, "int8", "ref")["passed"]
    assert not equivalence.compare(noisy, ref, "fp32", "ref")["passed"]
    assert not equivalence.compare(ref[:, :5], ref, "fp32", "ref")["passed"]
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert "finite" in equivalence.compare(nan, ref, "fp16", "ref")["detail"]


def test_cache_refuses_what_does_not_match_its_digest(tmp_path: Path) -> None:
    cache = Cache(str(tmp_path / "cache"))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really onnx, but bytes with a digest")
    inputs = np.ones((2, 3), dtype="float32")
    art = cache.put(str(model), {"format": "onnx", "precision": "fp32"}, (inputs, inputs * 2, "doubling"))
    assert cache.get(art.sha256).reference()[2] == "doubling"
    assert cache.put(str(model), {"format": "onnx", "precision": "fp32"}).sha256 == art.sha256  # kept
    rec = {"model": "mlp", "v": 1}
    cache.note_recipe(rec, art)
    assert cache.find_recipe(rec).sha256 == art.sha256 and cache.find_recipe({"model": "cnn"}) is None
    assert recipe_digest({"b": 1, "a": 2}) == recipe_digest({"a": 2, "b": 1})
    Path(art.path).write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="tampered"):
        cache.get(art.sha256)
    assert cache.find_recipe(rec) is None  # a corrupt artifact is exported again, never loaded
    with pytest.raises(ArtifactError):
        cache.get("../../etc")
    with pytest.raises(ArtifactError, match="no model"):
        cache.get("0" * 64)


def test_cache_checks_the_reference_digest(tmp_path: Path) -> None:
    cache = Cache(str(tmp_path))
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x" * 100)
    art = cache.put(str(model), {"format": "tflite"}, (np.zeros((1, 2)), np.zeros((1, 2)), "zeros"))
    (Path(art.directory) / "reference.npz").write_bytes(b"junk")
    with pytest.raises(ArtifactError, match="reference"):
        art.reference()
    with pytest.raises(ArtifactError, match="format"):
        cache.put(str(model), {"format": "pickle"})


def _powercap(root: Path, zones: dict[str, tuple[str, int, int]]) -> None:
    for entry, (name, energy, max_range) in zones.items():
        d = root / entry
        d.mkdir(parents=True, exist_ok=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")


def test_rapl_package_energy_with_a_wrap(tmp_path: Path) -> None:
    # two packages, a core sub-zone (not counted twice), and psys (not a package)
    _powercap(tmp_path, {"intel-rapl:0": ("package-0", 262_143_000_000, 262_143_328_850),
                         "intel-rapl:1": ("package-1", 1_000_000, 262_143_328_850),
                         "intel-rapl:0:0": ("core", 5, 262_143_328_850),
                         "intel-rapl:2": ("psys", 7, 262_143_328_850)})
    meter = rapl.PackageEnergy(str(tmp_path))
    assert meter.domains() == ["intel-rapl:0 (package-0)", "intel-rapl:1 (package-1)"]
    meter.begin()
    _powercap(tmp_path, {"intel-rapl:0": ("package-0", 671_150, 262_143_328_850),  # wrapped: +1.0 J
                         "intel-rapl:1": ("package-1", 3_500_000, 262_143_328_850)})  # +2.5 J
    assert meter.end() == pytest.approx(3.5)


def test_rapl_absent_or_unreadable_is_none(tmp_path: Path) -> None:
    assert not rapl.PackageEnergy(str(tmp_path / "none")).available
    _powercap(tmp_path, {"intel-rapl:0": ("package-0", 1, 10)})
    (tmp_path / "intel-rapl:0" / "energy_uj").chmod(0)
    meter = rapl.PackageEnergy(str(tmp_path))
    if meter.available:  # root reads a 0-mode file anyway
        pytest.skip("running as root: permissions do not hide the counter")
    meter.begin()
    assert meter.end() is None


def test_detail_log_parse_keeps_errors(tmp_path: Path) -> None:
    log = tmp_path / "mlperf_log_detail.txt"
    recs = [
        {"key": "effective_scenario", "value": "SingleStream"},
        {"key": "result_validity", "value": "INVALID"},
        {"key": "error_runtime", "value": "Ran out of generated queries", "metadata": {"is_error": True}},
        {"key": "result_query_count", "value": 10},
        {"key": "power_begin", "value": "12-01-2026 21:52:33.180"},
        {"key": "power_end", "value": "12-01-2026 21:52:34.430"},
    ]
    log.write_text("".join(":::MLLOG " + json.dumps(r) + "\n" for r in recs) + "garbage line\n")
    s = harness.parse_detail_log(str(log))
    assert not s["valid"] and s["errors"] == ["error_runtime: Ran out of generated queries"]
    assert s["duration_s"] == pytest.approx(1.25) and s["query_count"] == 10


@pytest.mark.parametrize("kind", ["numpy", "jax", "torch"])
def test_offline_batches_index_staged_samples_of_every_framework(tmp_path: Path, kind: str) -> None:
    """Staged samples are numpy, jax.Array (Keras-on-JAX) or torch tensors: Offline's batches index each with an
    index array (a Python list fails on a jax.Array: the first H200 run's Keras-on-JAX Offline job did)."""
    samples: object = np.arange(32 * 4, dtype="float32").reshape(32, 4)
    if kind == "jax":
        jnp = pytest.importorskip("jax.numpy")
        samples = jnp.asarray(samples)
    elif kind == "torch":
        torch = pytest.importorskip("torch")
        samples = torch.from_numpy(np.asarray(samples))

    class Staged(SleepRuntime):
        def predict(self, x):  # type: ignore[no-untyped-def]
            self.calls += 1
            self.samples += len(x)
            return np.asarray(x).reshape(len(x), -1)[:, :2]

    rt = Staged()
    raw = harness.run(rt, samples, "mlp", "offline", {"rules": "quick", "min_duration_ms": 100}, 4,
                      str(tmp_path / kind), {"samples_per_s": 8000})
    s = LoadGenSummary.model_validate(raw, strict=False)
    assert s.valid and not s.invalid_reason and rt.samples >= s.sample_count > 4, (s.invalid_reason, rt.samples)


def test_offline_batches_are_gathered_when_the_runtime_asks() -> None:
    """Offline's batches are gathered one at a time as the runtime takes them (all at once, a ResNet-50 224x224
    query on an H200 would hold ~48 GB and spend its gathering before the first batch ran)."""
    gathered: list[list[int]] = []

    def gather(idx: list[int]) -> list[int]:
        gathered.append(idx)
        return idx

    batches = harness.Batches([[0, 1], [2, 3], [4]], gather)
    assert batches.lengths == [2, 2, 1] and len(batches) == 3 and gathered == []
    it = iter(batches)
    assert next(it) == [0, 1] and gathered == [[0, 1]]
    assert batches[2] == [4] and list(it) == [[2, 3], [4]]


def test_offline_hands_the_runtime_lazy_batches_of_the_whole_query(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    class Recording(SleepRuntime):
        def predict_many(self, batches, done):  # type: ignore[no-untyped-def]
            seen["lengths"] = list(batches.lengths)
            super().predict_many(batches, done)

    s, rt = _run(tmp_path, "offline", {"min_duration_ms": 200}, runtime=Recording())
    assert s.valid, s.invalid_reason
    assert sum(seen["lengths"]) == s.sample_count == rt.samples  # type: ignore[arg-type]


def test_a_compiled_runtime_sees_the_reference_batch_in_the_jobs_own_shape() -> None:
    """Equivalence must compile nothing the timed run does not use: a static_batch runtime gets the reference
    batch in chunks of the job's batch size, the last padded (the H200's torch.compile runs saw a second shape
    and recompiled a dynamic graph that ran below eager)."""
    from edgebench.runner.inference.run import predict_reference

    class Compiled:
        static_batch = True

        def __init__(self) -> None:
            self.sizes: list[int] = []

        def predict(self, x: np.ndarray) -> np.ndarray:
            self.sizes.append(len(x))
            return x[:, :2] * 2

    ref = np.arange(16 * 3, dtype="float32").reshape(16, 3)
    for bs, calls in ((1, [1] * 16), (8, [8, 8]), (5, [5, 5, 5, 5]), (256, [256])):
        rt = Compiled()
        out = predict_reference(rt, ref, bs)
        assert rt.sizes == calls and np.array_equal(out, ref[:, :2] * 2), bs

    eager = SleepRuntime()
    assert predict_reference(eager, ref, 256).shape == (16, 2) and eager.calls == 1  # no padding needed


def test_torch_offline_on_cuda_queues_the_next_batch_before_copying_the_last_back() -> None:
    """The torch runtime keeps one batch in flight on CUDA: launch k+1, then fetch k (the host's dispatch overlaps
    the device's work); every batch is fetched and reported complete, in order."""
    pytest.importorskip("torch")
    from edgebench.runner.inference.torch_runtime import TorchModule

    events: list[str] = []
    rt = TorchModule({}, "bf16", None, gpus=1, model="resnet50", dataset="imagenet")

    class Cuda:
        type = "cuda"

    rt.device = Cuda()
    rt._launch = lambda x: events.append(f"launch {x}") or x  # type: ignore[method-assign]
    rt._fetch = lambda out: events.append(f"fetch {out}")  # type: ignore[method-assign]
    rt.predict_many([0, 1, 2], lambda k: events.append(f"done {k}"))
    assert events == ["launch 0", "launch 1", "fetch 0", "done 0", "launch 2", "fetch 1", "done 1",
                      "fetch 2", "done 2"]


def test_a_first_query_that_measured_only_latency_is_recalibrated_until_it_holds(tmp_path: Path) -> None:
    # a GPU at a big batch: each call costs the same 20 ms whatever its size, so LoadGen's first,
    # tiny Offline query measures one call's latency, and one correction from it still falls short
    # (an H200, bs1024: 6,435 samples/s from the first query against 21,918 in the 4 s run)
    rt = SleepRuntime(per_batch_s=0.02)
    raw = harness.run(rt, np.zeros((64, 4), dtype="float32"), "mlp", "offline",
                      {"rules": "quick", "min_duration_ms": 200}, 64, str(tmp_path / "latency-bound"),
                      {"samples_per_s": 10})
    s = LoadGenSummary.model_validate(raw, strict=False)
    assert s.valid and s.duration_s >= 0.2, s.invalid_reason
    assert "2 recalibrated run(s)" in s.effective["edgebench_recalibrated"]
    assert (tmp_path / "latency-bound-recalibrated-2" / "mlperf_log_summary.txt").is_file()


def test_warm_up_times_the_compiling_first_call_apart_and_gathers_any_array_type(tmp_path: Path) -> None:
    from edgebench.runner.inference.run import warm_up

    class Compiling:
        def __init__(self) -> None:
            self.calls = 0

        def predict(self, x):
            self.calls += 1
            time.sleep(0.3 if self.calls == 1 else 0.001)  # the first call compiles
            return x

    jnp = pytest.importorskip("jax.numpy")
    for samples in (np.zeros((3, 2), dtype="float32"), jnp.zeros((3, 2))):  # fewer samples than the batch
        rt = Compiling()
        median, fastest, first = warm_up(rt, samples, [8])
        assert first[8] >= 0.3 > 0.05 > median[8] >= fastest[8]
        assert rt.calls >= 11  # the first call and the warm-up's ten


def test_litert_for_a_users_onnx_without_onnx2tf_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from edgebench.runner.errors import Unsupported
    from edgebench.runner.inference import export

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("onnx2tf", "tf_keras")
                        else real(name, *a))
    with pytest.raises(Unsupported) as err:
        export.check_onnx2tf()
    assert err.value.field == "backend"
    assert "onnx2tf, tf_keras are missing" in str(err.value) and "inference-export" in str(err.value)
