"""One adapter per deployment runtime, each the system under test of a LoadGen run.

An adapter turns the job's knobs into the runtime's own settings, loads one verified
artifact, and answers ``predict(batch) -> numpy outputs`` synchronously (the outputs are
on the host when it returns: no query completes before the device has finished).
``predict_many`` is Offline's path; a runtime with its own asynchronous queue
(OpenVINO's AsyncInferQueue) overlaps batches there, as its benchmark_app does.

``knobs()`` is what was in force, read back from the runtime where it can say
(OpenVINO's compiled-model properties, ONNX Runtime's session providers).

Which artifact each runtime needs: ``artifact_request(runtime, precision)`` ->
(format, file precision); a runtime that cannot run a precision raises Unsupported
before anything loads.
"""

import os

from ..errors import Unsupported
from .runtime_base import Runtime
from .torch_runtime import TorchModule

ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                 "tensorrt": "TensorrtExecutionProvider", "openvino": "OpenVINOExecutionProvider"}
ORT_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}
OV_PRECISION = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}


def artifact_request(runtime, precision):
    """(format, precision of the file) that runtime needs for a job's precision; None for the
    frameworks (torch, Keras 3 on JAX, torch or TensorFlow), which build the catalogue's model themselves."""
    if runtime in ("torch", "keras-jax", "keras-torch", "keras-tensorflow"):
        if precision == "int8":
            raise Unsupported("%s inference runs fp32, bf16 or fp16; int8 is for the runtimes" % runtime)
        return None
    if runtime == "onnxruntime":
        if precision == "bf16":
            raise Unsupported("onnxruntime: no bf16 model variant (fp32, fp16, int8)")
        return "onnx", precision
    if runtime == "openvino":
        # one fp32 file: OpenVINO's INFERENCE_PRECISION_HINT picks f32/f16/bf16 compute itself
        return "onnx", "int8" if precision == "int8" else "fp32"
    if runtime == "litert":
        if precision == "bf16":
            raise Unsupported("litert: no bf16 model variant (fp32, fp16, int8)")
        return "tflite", precision
    if runtime == "tensorrt":
        # TensorRT builds fp16/int8 engines from the fp32 ONNX with its own builder flags
        return "onnx", "int8" if precision == "int8" else "fp32"
    raise Unsupported("no inference runtime %r" % runtime)


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def versions(self):
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__}

    def _providers(self, ort):
        ep = (self.settings.get("execution_provider") or ("cuda" if self.gpus else "cpu")).lower()
        if ep not in ORT_PROVIDERS:
            raise Unsupported("onnxruntime: unknown execution provider %r (%s)" % (ep, ", ".join(ORT_PROVIDERS)))
        wanted = ORT_PROVIDERS[ep]
        available = ort.get_available_providers()
        if wanted not in available:
            raise Unsupported("onnxruntime %s here offers %s, not %s" % (ort.__version__, ", ".join(available), wanted))
        if ep == "tensorrt":
            cache = os.path.join(os.path.dirname(self.artifact.path), "trt-engines")
            opts = {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                    "trt_fp16_enable": self.precision == "fp16", "trt_int8_enable": self.precision == "int8"}
            return [(wanted, opts), "CUDAExecutionProvider", "CPUExecutionProvider"]
        if ep == "cuda":
            return [(wanted, {"cudnn_conv_algo_search": "EXHAUSTIVE"}), "CPUExecutionProvider"]
        return [wanted]

    def load(self, batch_sizes):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        level = self.settings.get("graph_optimization") or "all"
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[level])
        if self.settings.get("threads"):
            opts.intra_op_num_threads = int(self.settings["threads"])
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(self.artifact.path, sess_options=opts,
                                            providers=self._providers(ort))
        self.input_name = self.session.get_inputs()[0].name
        self._level = level
        self._threads = self.settings.get("threads")

    def predict(self, x):
        return self.session.run(None, {self.input_name: x})[0]

    def provider(self):
        return ",".join(self.session.get_providers())

    def knobs(self):
        return {"execution_providers": self.provider(), "graph_optimization": self._level,
                "intra_op_threads": str(self._threads or "default (one per physical core)"),
                "execution_mode": "sequential", "model_precision": self.artifact.meta.get("precision", "")}

    def devices_used(self):
        eps = self.session.get_providers()
        gpu = eps[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        return {"framework": "onnxruntime", "kind": "gpu" if gpu else "cpu",
                "devices": ["cuda:0"] if gpu else ["cpu"], "detail": "session providers: " + ",".join(eps)}


class OpenVino(Runtime):
    name = "openvino"

    def versions(self):
        import openvino

        return {"openvino": openvino.__version__.split("-")[0]}

    def _config(self):
        scenario = self.settings.get("scenario")
        hint = self.settings.get("performance_hint") or ("throughput" if scenario == "offline" else "latency")
        config = {"PERFORMANCE_HINT": hint.upper(),
                  # explicit: OpenVINO's CPU plugin computes in bf16 by default where the CPU has it
                  # (measured: 7e-4 max abs error on the CNN's logits on this box), so fp32 must say f32
                  "INFERENCE_PRECISION_HINT": OV_PRECISION[self.precision]}
        if self.settings.get("threads"):
            config["INFERENCE_NUM_THREADS"] = int(self.settings["threads"])
        return config

    def load(self, batch_sizes):
        import openvino as ov

        self.core = ov.Core()
        self.device = self.settings.get("execution_provider") or ("GPU" if self.gpus else "CPU")
        if self.device.split(".")[0] not in [d.split(".")[0] for d in self.core.available_devices]:
            raise Unsupported("openvino: device %s not available here (%s)"
                              % (self.device, ", ".join(self.core.available_devices)))
        self.config = self._config()
        self.model = self.core.read_model(self.artifact.path)
        self.compiled = {}
        for bs in sorted(set(batch_sizes)):
            self._compiled(bs)
        self._dynamic = None

    def _compiled(self, bs):
        """A model compiled for a static batch (as benchmark_app runs it), once per size."""
        entry = self.compiled.get(bs)
        if entry is None:
            model = self.model.clone()
            shape = [d.get_length() if d.is_static else -1 for d in model.inputs[0].get_partial_shape()]
            shape[0] = bs
            model.reshape({model.inputs[0]: shape})
            compiled = self.core.compile_model(model, self.device, self.config)
            entry = (compiled, compiled.create_infer_request())
            self.compiled[bs] = entry
        return entry

    def predict(self, x):
        _, request = self._compiled(len(x))
        request.infer({0: x}, share_inputs=True)
        return request.get_output_tensor(0).data.copy()

    def predict_many(self, batches, done):
        import openvino as ov

        if not batches:
            return
        lengths = getattr(batches, "lengths", None) or [len(b) for b in batches]
        main = max(set(lengths), key=lengths.count)
        compiled, _ = self._compiled(main)
        n_req = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        pool = ov.AsyncInferQueue(compiled, n_req)
        pool.set_callback(lambda request, k: done(k))
        rest = []
        alive = []  # share_inputs=True: each batch must outlive its request
        for k, n in enumerate(lengths):
            if n == main:
                alive.append(batches[k])
                pool.start_async({0: alive[-1]}, userdata=k, share_inputs=True)
            else:
                rest.append(k)
        pool.wait_all()
        for k in rest:  # the tail batch of another size
            self.predict(batches[k])
            done(k)

    def knobs(self):
        compiled = next(iter(self.compiled.values()))[0] if self.compiled else None
        out = {"device": self.device, "requested": ", ".join("%s=%s" % kv for kv in sorted(self.config.items())),
               "model_precision": self.artifact.meta.get("precision", "")}
        if compiled is not None:
            for prop in ("PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS",
                         "NUM_STREAMS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS"):
                try:
                    out[prop.lower()] = str(compiled.get_property(prop))
                except Exception:  # noqa: BLE001 - a property this device does not report
                    continue
        out["static_batches"] = ",".join(str(b) for b in sorted(self.compiled))
        return out

    def provider(self):
        return self.device

    def devices_used(self):
        try:
            name = self.core.get_property(self.device, "FULL_DEVICE_NAME")
        except Exception:  # noqa: BLE001
            name = ""
        return {"framework": "openvino", "kind": "gpu" if self.device.startswith("GPU") else "cpu",
                "devices": [self.device], "detail": str(name)[:500]}


class LiteRt(Runtime):
    name = "litert"
    layout = "NHWC"

    def versions(self):
        try:
            from importlib.metadata import version

            return {"ai-edge-litert": version("ai-edge-litert")}
        except Exception:  # noqa: BLE001
            return {}

    def load(self, batch_sizes):
        from ai_edge_litert.interpreter import Interpreter

        self._cls = Interpreter
        self.threads = self.settings.get("threads")
        self.interpreters = {}
        for bs in sorted(set(batch_sizes)):
            self._interpreter(bs)

    def _interpreter(self, bs):
        entry = self.interpreters.get(bs)
        if entry is None:
            kwargs = {"model_path": self.artifact.path}
            if self.threads:
                kwargs["num_threads"] = int(self.threads)
            it = self._cls(**kwargs)
            inp = it.get_input_details()[0]
            shape = list(inp["shape"])
            shape[0] = bs
            it.resize_tensor_input(inp["index"], shape)
            it.allocate_tensors()
            entry = (it, inp["index"], it.get_output_details()[0]["index"])
            self.interpreters[bs] = entry
        return entry

    def predict(self, x):
        it, i_in, i_out = self._interpreter(len(x))
        it.set_tensor(i_in, x)
        it.invoke()
        return it.get_tensor(i_out)  # get_tensor copies

    def knobs(self):
        return {"threads": str(self.threads or "default"), "delegate": "XNNPACK (LiteRT's default CPU delegate)",
                "model_precision": self.artifact.meta.get("precision", "")}

    def provider(self):
        return "cpu (XNNPACK)"


class TensorRt(Runtime):
    """An engine built by TensorRT's own builder from the fp32 ONNX (fp16/int8 by builder flag),
    cached beside the artifact per (batch, precision, TensorRT version). GPU only; buffers are
    torch CUDA tensors. NOT run in CI (no GPU): see docs/INFERENCE.md."""

    name = "tensorrt"

    def versions(self):
        import tensorrt

        return {"tensorrt": tensorrt.__version__}

    def load(self, batch_sizes):
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise Unsupported("tensorrt needs a CUDA device (torch sees none)")
        self.trt = trt
        self.torch = torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.stream = torch.cuda.Stream()
        self.max_batch = max(batch_sizes)
        self.engine = self._engine(self.max_batch)
        self.context = self.engine.create_execution_context()
        self.in_name = self.engine.get_tensor_name(0)
        self.out_name = self.engine.get_tensor_name(1)

    def _engine(self, max_batch):
        trt = self.trt
        key = "trt%s-%s-b%d.plan" % (trt.__version__, self.precision, max_batch)
        path = os.path.join(os.path.dirname(self.artifact.path), key)
        runtime = trt.Runtime(self.logger)
        if os.path.exists(path):
            with open(path, "rb") as fh:
                return runtime.deserialize_cuda_engine(fh.read())
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        with open(self.artifact.path, "rb") as fh:
            if not parser.parse(fh.read()):
                raise Unsupported("tensorrt cannot parse the ONNX model: %s" % parser.get_error(0))
        config = builder.create_builder_config()
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif self.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # the QDQ ONNX carries its own scales
        inp = network.get_input(0)
        rest = tuple(inp.shape)[1:]
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, (1, *rest), (max_batch, *rest), (max_batch, *rest))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise Unsupported("tensorrt could not build an engine")
        with open(path, "wb") as fh:
            fh.write(plan)
        return runtime.deserialize_cuda_engine(plan)

    def predict(self, x):
        torch = self.torch
        xt = torch.from_numpy(x).cuda(non_blocking=True)
        self.context.set_input_shape(self.in_name, tuple(xt.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.out_name)), device="cuda")
        self.context.set_tensor_address(self.in_name, xt.data_ptr())
        self.context.set_tensor_address(self.out_name, out.data_ptr())
        self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
        return out.cpu().numpy()  # .cpu() waits for the stream

    def knobs(self):
        return {"engine": "built from ONNX, %s, max batch %d" % (self.precision, self.max_batch)}

    def provider(self):
        return "cuda"

    def devices_used(self):
        return {"framework": "tensorrt", "kind": "gpu", "devices": ["cuda:0"],
                "detail": self.torch.cuda.get_device_name(0)}


def make(runtime, settings, precision, artifact, gpus=0, model=None, dataset=None):
    if runtime == "onnxruntime":
        return OnnxRuntime(settings, precision, artifact, gpus)
    if runtime == "openvino":
        return OpenVino(settings, precision, artifact, gpus)
    if runtime == "litert":
        return LiteRt(settings, precision, artifact, gpus)
    if runtime == "tensorrt":
        return TensorRt(settings, precision, artifact, gpus)
    if runtime == "torch":
        return TorchModule(settings, precision, artifact, gpus, model, dataset)
    raise Unsupported("no inference runtime %r" % runtime)
