"""One inference job under LoadGen: artifact, samples, equivalence, warm-up, the timed
runs (one per repeat), the result.

Order and why:
1. the artifact (exported once per box, or the cached one the job names by sha256),
   digest-checked before the runtime sees it;
2. the query samples, loaded and laid out for the runtime before LoadGen starts (MLPerf's
   QSL loads them before timing too);
3. equivalence on the reference batch, and real top-1 where the dataset's files are there;
4. warm-up at every batch size the scenario sends (compiles, allocator growth, caches),
   which also yields LoadGen's pre-generation hints (harness.py);
5. per repeat: the sampler's window begins, RAPL is read, LoadGen's StartTest runs the
   scenario, then RAPL and the window's end. LoadGen's own summary is the measurement.
"""

import importlib
import os
import platform
import time

from .. import datasets, protocol, user_models
from ..catalogue import DATASETS
from ..errors import Unsupported
from . import equivalence, harness, rapl, runtimes
from .artifacts import Cache
from .export import ensure, to_layout

RUNTIME_BACKENDS = ("onnxruntime", "openvino", "litert", "tensorrt")
# the frameworks' own adapters: each builds the catalogue's model itself (no exported artifact)
KERAS_ADAPTERS = {"keras-jax": (".keras_jax", "KerasJax"), "keras-torch": (".keras_torch", "KerasTorch"),
                  "keras-tensorflow": (".keras_tf", "KerasTensorFlow")}
FRAMEWORK_ADAPTERS = ("torch", *KERAS_ADAPTERS)
WARMUP_MIN_ITERS = 10
WARMUP_MIN_S = 0.25  # with >= 10 calls: enough for the hints; compile happens on the first call
WARMUP_MAX_S = 10.0


def runtime_for(backend):
    if backend in RUNTIME_BACKENDS:
        return backend
    if backend in FRAMEWORK_ADAPTERS:
        return backend
    raise Unsupported("backend %r has no LoadGen inference path (runtimes: %s; frameworks: %s)"
                      % (backend, ", ".join(RUNTIME_BACKENDS), ", ".join(sorted(FRAMEWORK_ADAPTERS))))


def make_runtime(name, settings, precision, artifact, gpus, model, dataset):
    """The adapter: runtimes.py's, or a Keras 3 backend's (keras_jax.py, keras_torch.py, keras_tf.py)."""
    if name in KERAS_ADAPTERS:
        module, cls = KERAS_ADAPTERS[name]
        adapter = getattr(importlib.import_module(module, __package__), cls)
        return adapter(settings, precision, artifact, gpus, model, dataset)
    return runtimes.make(name, settings, precision, artifact, gpus, model, dataset)


def settings_of(spec):
    inference = dict(spec.get("inference") or {})
    inference.setdefault("scenario", "single-stream")
    inference.setdefault("rules", "mlperf")
    inference.setdefault("samples_per_query", 8)
    inference.setdefault("reference_samples", 16)
    return inference


def batch_sizes(scenario, inference, batch_size):
    if scenario == "single-stream":
        return [1]
    if scenario == "multi-stream":
        return [int(inference["samples_per_query"])]
    if scenario == "server":
        return sorted(set([1, batch_size]))
    return [batch_size]


def sample_count(inference, dataset, spec=None):
    if inference.get("performance_sample_count"):
        return int(inference["performance_sample_count"])
    if dataset in DATASETS:
        h, w, _ = DATASETS[dataset]["shape"]
        big = h * w > 100 * 100
    else:  # a user's model on synthetic data of its input signature
        big = _size(user_models.reference_of(spec)["input"]["shape"]) > 100 * 100 * 3
    if inference.get("rules") == "quick":
        return 64 if big else 256
    return 256 if big else 1024  # mlperf.conf: ResNet-50's performance_sample_count is 1024


def _size(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def load_samples(spec, dataset_root, n, layout):
    """(x in the runtime's layout, y, data source)."""
    wl = spec["workload"]
    if user_models.is_user_model(spec):  # already in the model's own layout
        return user_models.arrays(spec, dataset_root, n)
    if datasets.is_streamed(wl["dataset"], wl.get("synthetic", False)):
        from .. import imagenet

        stream = imagenet.ImageFolderStream(dataset_root, 1, samples=n)
        x, y = imagenet.infer_arrays(stream, n)
        return to_layout(x, layout), y, "real"
    x, y, source = datasets.load(wl["dataset"], dataset_root, wl.get("synthetic", False), n)
    if len(x) < n:  # a small dataset (or samples cap): LoadGen draws from what there is
        n = len(x)
    return to_layout(x[:n], layout), y[:n], source


def _artifact(runtime, spec, inference, dataset_root, emitter):
    wl = spec["workload"]
    precision = spec.get("precision", "fp32")
    need = runtimes.artifact_request(runtime, precision)
    if need is None and runtime in KERAS_ADAPTERS and user_models.is_user_model(spec):
        # a user's .keras file on a Keras adapter: the verified file itself (fp32; keras_runtime.py loads it)
        return user_models.artifact(spec, "keras"), False
    if need is None:
        return None, False
    fmt, file_precision = need
    cache = Cache()
    digest = inference.get("model_sha256")
    if user_models.is_user_model(spec):  # the user's file the agent fetched and verified (docs/MODELS.md)
        parent = cache.get(user_models.reference_of(spec)["digest"])
        if runtime == "litert" and parent.format == "onnx":
            # LiteRT runs the user's ONNX file converted by onnx2tf, every precision a variant (export.py)
            return _user_variant(runtime, spec, inference, dataset_root, emitter, cache, parent, file_precision,
                                 fmt="tflite")
        if parent.format != fmt:
            raise Unsupported("%s runs %s models; the user's model is %s" % (runtime, fmt, parent.format))
        if file_precision == "fp32":
            return parent, False
        return _user_variant(runtime, spec, inference, dataset_root, emitter, cache, parent, file_precision)
    if digest:
        art = cache.get(digest)
        if art.format != fmt:
            raise Unsupported("%s runs %s models; artifact %s is %s" % (runtime, fmt, digest, art.format))
        return art, False
    return ensure(wl["model"], wl["dataset"], fmt, file_precision, runtime=runtime, cache=cache,
                  dataset_root=dataset_root, send=emitter.send)


def _user_variant(runtime, spec, inference, dataset_root, emitter, cache, parent, precision, fmt="onnx"):
    """The fp16 / int8 variant of the user's file, by the runtimes' own quantisers (export.py), calibrated on
    the job's data (synthetic samples of the input signature, or the dataset's first samples), its equivalence
    judged against the user's fp32 file on ONNX Runtime. Cached by a recipe naming the parent's digest; where
    the model cache is read-only (the docker executor mounts only the job's file), in the job's directory."""
    from .export import CALIBRATION_SAMPLES, ensure_user_variant

    ref = user_models.reference_of(spec)
    calib, _, source = user_models.arrays(spec, dataset_root, CALIBRATION_SAMPLES)
    calib_desc = ("%d seeded synthetic samples of the input signature" % len(calib) if source == "synthetic"
                  else "the first %d samples of %s" % (len(calib), spec["workload"]["dataset"]))
    ref_x = user_models.reference_batch(ref, int(inference["reference_samples"]))
    ref_out, ref_desc = user_models.onnx_reference(parent.path, ref_x)
    target = cache if _writable(cache.root) else Cache(os.path.join(os.getcwd(), "variants"))
    return ensure_user_variant(parent, cache, precision, runtime, calib[:CALIBRATION_SAMPLES], calib_desc,
                               (ref_x, ref_out, ref_desc), target, send=emitter.send, fmt=fmt)


def _writable(root):
    probe = os.path.join(root, ".write-probe-%d" % os.getpid())
    try:
        if not os.path.isdir(root):
            os.makedirs(root)
        with open(probe, "w"):
            pass
        os.unlink(probe)
        return True
    except OSError:
        return False


def predict_reference(runtime, x, batch_size):
    """The runtime's outputs for the reference batch. A compiled runtime (static_batch: a new shape compiles
    again) sees it in the job's own batch shape, the last chunk padded with its first sample, so that the
    equivalence check compiles nothing the timed run does not use (torch.compile, jax.jit)."""
    import numpy

    if not getattr(runtime, "static_batch", False) or len(x) == batch_size:
        return runtime.predict(x)
    outs = []
    for k in range(0, len(x), batch_size):
        chunk = x[k:k + batch_size]
        n = len(chunk)
        if n < batch_size:
            chunk = numpy.concatenate([chunk, numpy.repeat(chunk[:1], batch_size - n, axis=0)])
        outs.append(numpy.asarray(runtime.predict(numpy.ascontiguousarray(chunk)))[:n])
    return numpy.concatenate(outs)


def warm_up(runtime, x, sizes):
    """Seconds per call at each batch size: ({bs: median}, {bs: fastest}, {bs: first call}).

    The first call at a size is timed apart and left out of the hints and of the time allowance: it
    is where a compiling runtime compiles (torch.compile's CUDA graphs recorded a second time for the
    staged inputs on an H200: 13.3 s for one bs1024 call, which as the only warm-up call made
    LoadGen's Offline query 190 x too small)."""
    import numpy

    median, fastest, first = {}, {}, {}
    for bs in sizes:
        # an index array, as the SUT's gather takes its samples: a jax.Array refuses a list of ints
        batch = x[:bs] if len(x) >= bs else x[numpy.arange(bs, dtype="int64") % len(x)]
        t0 = time.perf_counter()
        runtime.predict(batch)
        first[bs] = time.perf_counter() - t0
        times = []
        t_start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            runtime.predict(batch)
            times.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - t_start
            if (len(times) >= WARMUP_MIN_ITERS and elapsed >= WARMUP_MIN_S) or elapsed >= WARMUP_MAX_S:
                break
        times.sort()
        median[bs] = times[len(times) // 2]
        fastest[bs] = times[0]
    return median, fastest, first


def loadgen_hints(scenario, sizes, median, fastest):
    """LoadGen's pre-generation hints from the warm-up's fastest calls, not its median: a warm-up
    on a loaded 2-core box had a 48 ms median for a 0.3 ms CNN call (CI, torch); LoadGen then
    pre-generated 100 queries for 2.4 s, ran out after 40 ms and called the run INVALID. An
    expectation that is too fast only costs LoadGen memory for queries it never issues. Server's
    default target QPS is the exception: from the median, as too high a target fails its bound."""
    hints = {"latency_s": fastest.get(1) or fastest[min(fastest)]}
    if scenario == "multi-stream":
        hints["multi_latency_s"] = fastest[sizes[0]]
    big = max(fastest)
    hints["samples_per_s"] = big / fastest[big] if fastest[big] > 0 else None
    if scenario == "server" and median.get(1):
        hints["samples_per_s"] = 1.0 / median[1]
    return hints


def run(ctx):
    """One LoadGen job (runner/inference/backend.py); ctx is the runner's RunContext."""
    spec, emitter, dataset_root = ctx.spec, ctx.emitter, ctx.dataset_root
    wl = spec["workload"]
    runtime_name = runtime_for(spec["backend"])
    inference = settings_of(spec)
    scenario = inference["scenario"]
    if scenario not in harness.SCENARIOS:
        raise Unsupported("unknown scenario %r" % scenario)
    lg = harness.loadgen()  # before anything else: a box without LoadGen fails at once
    import numpy

    precision = spec.get("precision", "fp32")
    artifact, exported = _artifact(runtime_name, spec, inference, dataset_root, emitter)
    runtime = make_runtime(runtime_name, dict(inference, scenario=scenario), precision, artifact,
                           int(spec.get("gpus", 0) or 0), wl["model"], wl["dataset"])
    libraries = {"numpy": numpy.__version__, "mlperf_loadgen": _loadgen_version(lg)}
    libraries.update(runtime.versions())
    emitter.send(protocol.hello(spec["backend"], libraries, os.getpid(), platform.python_version()))
    emitter.send(protocol.phase(protocol.SETUP, 0, 1, 1))

    bs = int(wl["batch_size"])
    sizes = batch_sizes(scenario, inference, bs)
    runtime.load(sizes)
    layout = artifact.meta.get("layout", "NCHW") if artifact is not None else runtime.layout
    x, y, data_source = load_samples(spec, dataset_root, sample_count(inference, wl["dataset"], spec), layout)
    emitter.send(protocol.data(data_source, len(x)))

    # equivalence on the reference batch (and real top-1 when the files are real)
    if artifact is not None and artifact.format == "keras":
        # a user's .keras file: the same file, fp32 on the CPU, is the reference (keras_runtime.py)
        ref_x = user_models.reference_batch(user_models.reference_of(spec), int(inference["reference_samples"]))
        ref_out, ref_desc = runtime.reference(ref_x)
    elif artifact is not None and user_models.is_user_model(spec) and artifact.reference() is None:
        # a user's model: ONNX Runtime (CPU, optimisations off) is the reference framework
        ref_x = user_models.reference_batch(user_models.reference_of(spec), int(inference["reference_samples"]))
        ref_out, ref_desc = user_models.onnx_reference(artifact.path, ref_x)
    elif artifact is not None:
        reference = artifact.reference()
        if reference is None:
            raise Unsupported("artifact %s has no reference outputs to check equivalence against"
                              % artifact.sha256)
        ref_x, ref_out, ref_desc = reference
    else:
        from .export import reference_inputs

        ref_x = reference_inputs(wl["dataset"], int(inference["reference_samples"]), layout)
        ref_out, ref_desc = runtime.reference(ref_x)
    n_ref = min(len(ref_x), int(inference["reference_samples"]))
    outputs = predict_reference(runtime, numpy.ascontiguousarray(ref_x[:n_ref]), max(sizes))
    equiv = equivalence.compare(outputs, ref_out[:n_ref], precision, ref_desc)
    accuracy = None
    if data_source == "real":
        n_acc = min(len(x), int(inference.get("accuracy_samples") or len(x)))
        top1 = equivalence.top1_accuracy(runtime.predict, x[:n_acc], y[:n_acc], max(sizes))
        untrained = not inference.get("model_sha256") and not user_models.is_user_model(spec)
        accuracy = {"dataset": wl["dataset"], "samples": int(n_acc), "top1": top1,
                    "note": "the catalogue's weights are untrained (seed 0): near chance by design"
                    if untrained else ""}

    emitter.send(protocol.phase(protocol.WARMUP, 1, 1, 1))
    x = runtime.stage(x)
    warm, fastest, first_call = warm_up(runtime, x, sizes)
    hints = loadgen_hints(scenario, sizes, warm, fastest)

    energy = rapl.PackageEnergy()
    knobs = {"runtime": runtime_name, "scenario": scenario, "rules": inference["rules"],
             "precision": precision, "batch_size": str(bs),
             "model_format": runtime.model_info()["format"],  # keras / torch-module for the frameworks' own
             "warmup_median_ms": ", ".join("bs%d %.3f" % (k, v * 1e3) for k, v in sorted(warm.items())),
             "warmup_first_call_ms": ", ".join("bs%d %.3f" % (k, v * 1e3) for k, v in sorted(first_call.items())),
             "model_exported_now": str(bool(exported)),
             "cpu_energy": "RAPL package energy: %s" % ", ".join(energy.domains()) if energy.available
             else "RAPL not readable here (no /sys/class/powercap package zone, or not root)"}
    knobs.update(dict(("runtime_" + k, v) for k, v in runtime.knobs().items()))
    model_info = runtime.model_info()
    runs = []
    for repeat in range(1, int(spec.get("repeats", 1)) + 1):
        emitter.send(protocol.phase(protocol.MEASURE, 1, 1, repeat))
        outdir = os.path.abspath("loadgen-r%d" % repeat)

        def begin(repeat=repeat):
            emitter.send(protocol.window("begin", repeat))
            energy.begin()

        joules = []

        def end(repeat=repeat, joules=joules):
            joules.append(energy.end())
            emitter.send(protocol.window("end", repeat))

        summary = harness.run(runtime, x, wl["model"], scenario, inference, bs, outdir, hints, begin, end)
        runs.append(_run_record(repeat, summary, runtime, model_info, equiv, accuracy, joules[-1] if joules else None,
                                energy, knobs))
        emitter.send(protocol.epoch(repeat, runs[-1]["epochs"][0]))
    runtime.close()
    used = runtime.devices_used()
    emitter.send(protocol.result(runs, knobs, data_source, bs, bs, protocol.devices_used(
        used["framework"], used["kind"], used["devices"], used.get("detail", ""))))


def _loadgen_version(lg):
    try:
        from importlib.metadata import version

        return version("mlcommons-loadgen")
    except Exception:  # noqa: BLE001
        return getattr(lg, "__version__", "unknown")


def _run_record(repeat, summary, runtime, model_info, equiv, accuracy, joules, energy, knobs):
    samples = summary["sample_count"]
    duration = summary["duration_s"]
    rate = samples / duration if duration > 0 else 0.0
    lat = summary["latency_ns"]
    cpu_energy = None
    if joules is not None and duration > 0:
        cpu_energy = {"scope": "cpu_package", "energy_j": joules, "power_w": joules / duration,
                      "mj_per_inference": (joules * 1e3 / samples) if samples else None,
                      "inferences_per_j": (samples / joules) if joules > 0 else None,
                      "domains": energy.domains()}
    return {
        "repeat": repeat,
        "epochs": [{"epoch": 1, "warmup": False, "images": samples, "batches": summary["query_count"],
                    "seconds": duration, "img_per_s": rate, "loss": None, "accuracy": None}],
        "throughput": {"window_img_per_s": rate, "median_img_per_s": rate, "mean_img_per_s": rate,
                       "std_img_per_s": 0.0, "n_batches": summary["query_count"], "n_samples": summary["query_count"],
                       "images": samples, "window_s": duration},
        "latency": {"p50_ms": lat.get("p50", 0.0) / 1e6, "p90_ms": lat.get("p90", 0.0) / 1e6,
                    "p99_ms": lat.get("p99", 0.0) / 1e6, "mean_ms": lat.get("mean", 0.0) / 1e6,
                    "n_batches": summary["query_count"]},
        "loss": None,
        "accuracy": accuracy["top1"] if accuracy else None,
        "knobs": knobs,
        "inference": {
            "runtime": runtime.name,
            "runtime_version": next(iter(runtime.versions().values()), ""),
            "execution_provider": runtime.provider()[:200],
            "model": model_info,
            "loadgen": summary,
            "equivalence": equiv,
            "accuracy": accuracy,
            "cpu_energy": cpu_energy,
            "knobs": dict((k, str(v)[:500]) for k, v in runtime.knobs().items()),
        },
    }
