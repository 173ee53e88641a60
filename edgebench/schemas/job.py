"""Job specification: what a controller asks an agent to run."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import ConfigDict, Field, JsonValue, ValidationInfo, field_validator

from edgebench.schemas.artifact import ModelArtifactRef
from edgebench.schemas.base import Identifier, Int, StrictModel
from edgebench.schemas.inference import InferenceSettings


class Backend(str, Enum):
    """A framework stack. The runner for each lives in ``runner/``."""

    KERAS_JAX = "keras-jax"
    KERAS_TORCH = "keras-torch"
    KERAS_TENSORFLOW = "keras-tensorflow"
    TORCH = "torch"
    JAX = "jax"  # native JAX (Flax + optax), the reference beside keras-jax
    KERAS_MXNET = "keras-mxnet"
    KERAS_TENSORFLOW1 = "keras-tensorflow1"
    SLEEP = "sleep"  # diagnostic: emits realistic events without a framework
    # deployment runtimes (mode infer, under MLPerf LoadGen: docs/INFERENCE.md)
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    LITERT = "litert"
    TENSORRT = "tensorrt"


# Backends that only infer (a runtime, not a training framework).
RUNTIME_BACKENDS = frozenset({Backend.ONNXRUNTIME, Backend.OPENVINO, Backend.LITERT, Backend.TENSORRT})
# sorted: the exported schema must not depend on set order (string hashes vary per process)
_RUNTIME_NAMES: list[JsonValue] = [b.value for b in sorted(RUNTIME_BACKENDS, key=lambda b: b.value)]


class Mode(str, Enum):
    TRAIN = "train"
    INFER = "infer"


class Precision(str, Enum):
    FP32 = "fp32"
    BF16 = "bf16"  # mixed precision, bfloat16 compute
    FP16 = "fp16"  # mixed precision, float16 compute
    INT8 = "int8"  # inference only: a post-training quantised model (runtimes' own quantisers)


class DataFormat(str, Enum):
    CHANNELS_FIRST = "channels_first"
    CHANNELS_LAST = "channels_last"


class InputPlacement(str, Enum):
    """Where in-memory and synthetic training data is batched (streamed datasets keep a host pipeline)."""

    HOST = "host"  # host arrays, sliced and copied to the device every step (Keras fit on NumPy)
    DEVICE = "device"  # placed on the device once and batched there (or a prefetch that overlaps the copy)


class MemoryPolicy(str, Enum):
    """GPU memory allocation policy, mapped to each backend's own mechanism."""

    DEFAULT = "default"  # whatever the backend does by itself (recorded)
    GROW = "grow"  # allocate on demand
    FRACTION = "fraction"  # cap at memory_fraction of the device
    PREALLOCATE = "preallocate"  # grab memory_fraction up front


ModelName = Literal["mlp", "cnn", "resnet56", "resnet50"]
DatasetName = Literal["fashion_mnist", "cifar10", "synthetic_imagenet", "imagenet"]
OptimizerName = Literal["adam", "rmsprop", "sgd"]
# a registered model file (JobSpec.model_artifact, docs/MODELS.md) instead of a catalogue model, and
# synthetic data of that model's input signature instead of a catalogue dataset
USER_MODEL = "user"
ARTIFACT_INPUT = "artifact-input"


class Workload(StrictModel):
    """Model + dataset + training hyper-parameters, fully explicit on the wire.

    The controller fills defaults from the catalogue (``runner/catalogue.py``);
    the agent never guesses.
    """

    model: ModelName | Literal["user"]
    dataset: DatasetName | Literal["artifact-input"]
    batch_size: Int = Field(ge=1, le=65536)
    epochs: Int = Field(ge=1, le=10000)
    optimizer: OptimizerName
    learning_rate: float = Field(gt=0, le=10)
    steps_per_epoch: Int | None = Field(default=None, ge=1, le=10_000_000)
    samples: Int | None = Field(
        default=None, ge=1, le=100_000_000, description="Use only the first N training samples."
    )
    synthetic: bool = Field(
        default=False, description="Use random data of the real shapes instead of files."
    )


class JobSpec(StrictModel):
    kind: Literal["job"] = "job"
    job_id: Identifier
    sweep_id: Identifier | None = None
    backend: Backend
    mode: Mode = Mode.TRAIN
    workload: Workload
    gpus: Int = Field(default=0, ge=0, le=64)
    precision: Precision = Precision.FP32
    data_format: DataFormat | None = None  # None: the backend's default
    compile: bool | None = None  # None: the backend's default
    input: InputPlacement | None = Field(
        default=None, description="Where in-memory and synthetic data is batched: 'host' (NumPy, copied each "
        "step) or 'device' (resident on the accelerator); None: the backend's default (Keras host, the native "
        "torch and JAX runners device). Streamed datasets always keep a host pipeline.")
    memory_policy: MemoryPolicy = MemoryPolicy.DEFAULT
    memory_fraction: float | None = Field(default=None, gt=0, le=1)
    warmup_epochs: Int = Field(default=1, ge=0, le=1000)
    repeats: Int = Field(default=1, ge=1, le=100)
    # The shortest window the job accepts (runner/timing.py): the runner measures
    # whole epochs beyond ``workload.epochs`` until both minimums hold. None: no
    # minimum (jobs from before the fields); the controller fills the catalogue's
    # defaults (runner/catalogue.py WINDOW_DEFAULTS).
    min_window_s: float | None = Field(default=None, ge=0, le=24 * 3600,
                                       description="Shortest measured window, seconds.")
    min_batches: Int | None = Field(default=None, ge=0, le=10_000_000, description="Fewest measured batches.")
    timeout_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    step_timeout_s: float = Field(
        default=600.0, gt=0, le=24 * 3600, description="Longest silence from the runner."
    )
    tags: list[Identifier] = Field(default_factory=list, max_length=32)
    inference: InferenceSettings | None = Field(
        default=None, description="Mode infer under MLPerf LoadGen; None: the runtime backends' defaults, "
        "and the training frameworks' per-batch predict latency (the thin infer mode).")
    model_artifact: ModelArtifactRef | None = Field(
        default=None, description="The user's model file that workload.model 'user' runs (docs/MODELS.md): "
        "digest, format, size, input signature and where to fetch it; the agent verifies the digest before "
        "anything loads the file.")
    power_mode: Int | None = Field(
        default=None, ge=0, le=99,
        description="Jetson only: the nvpmodel mode id to run the job in. The agent sets it before the "
        "job and restores the previous mode after, only where its config allows it (allow_power_mode); "
        "None leaves the mode alone. Ids are per module (docs/JETSON.md).",
    )

    @field_validator("model_artifact")
    @classmethod
    def _artifact_for_user_model(cls, value: ModelArtifactRef | None, info: ValidationInfo
                                 ) -> ModelArtifactRef | None:
        workload = info.data.get("workload")
        if workload is None:
            return value
        if (value is None) != (workload.model != USER_MODEL):
            raise ValueError("is required with workload.model 'user', and only then")
        if value is None and workload.dataset == ARTIFACT_INPUT:
            raise ValueError("is required with workload.dataset 'artifact-input'")
        return value

    # The rules below tie two fields together; each error names the field to fix.
    # The JSON Schema states them as if/then (model_config below), except the
    # epochs rule: JSON Schema cannot compare two numbers, so it is stated in words.
    @field_validator("mode")
    @classmethod
    def _runtimes_only_infer(cls, value: Mode, info: ValidationInfo) -> Mode:
        backend = info.data.get("backend")
        if backend in RUNTIME_BACKENDS and value is not Mode.INFER:
            raise ValueError(f"must be infer: backend {backend.value} only infers")
        return value

    @field_validator("precision")
    @classmethod
    def _int8_only_infers(cls, value: Precision, info: ValidationInfo) -> Precision:
        if value is Precision.INT8 and info.data.get("mode") is not Mode.INFER:
            raise ValueError("int8 is for inference (a post-training quantised model): mode must be infer")
        return value

    @field_validator("warmup_epochs")
    @classmethod
    def _one_epoch_measured(cls, value: int, info: ValidationInfo) -> int:
        workload, mode = info.data.get("workload"), info.data.get("mode", Mode.TRAIN)
        if workload is not None and mode is Mode.TRAIN and value >= workload.epochs:
            raise ValueError(f"must be less than workload.epochs ({workload.epochs}) so that one epoch is measured")
        return value

    @field_validator("memory_fraction")
    @classmethod
    def _fraction_given(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None and info.data.get("memory_policy") in (MemoryPolicy.FRACTION, MemoryPolicy.PREALLOCATE):
            raise ValueError(f"is required with memory_policy {info.data['memory_policy'].value!r}")
        return value

    @field_validator("inference")
    @classmethod
    def _settings_need_infer(cls, value: InferenceSettings | None, info: ValidationInfo) -> InferenceSettings | None:
        if value is not None and info.data.get("mode") is not Mode.INFER:
            raise ValueError("needs mode infer")
        return value

    model_config = ConfigDict(
        validate_default=True,
        json_schema_extra={
            "allOf": [
                {"if": {"properties": {"memory_policy": {"enum": ["fraction", "preallocate"]}},
                        "required": ["memory_policy"]},
                 "then": {"required": ["memory_fraction"], "properties": {"memory_fraction": {"type": "number"}}}},
                {"if": {"properties": {"backend": {"enum": _RUNTIME_NAMES}},
                        "required": ["backend"]},
                 "then": {"required": ["mode"], "properties": {"mode": {"const": "infer"}}}},
                {"if": {"properties": {"precision": {"const": "int8"}}, "required": ["precision"]},
                 "then": {"required": ["mode"], "properties": {"mode": {"const": "infer"}}}},
                {"if": {"properties": {"inference": {"type": "object"}}, "required": ["inference"]},
                 "then": {"required": ["mode"], "properties": {"mode": {"const": "infer"}}}},
                # a user's model: workload.model 'user' exactly when model_artifact is given (docs/MODELS.md)
                {"if": {"properties": {"workload": {"properties": {"model": {"const": "user"}}}}},
                 "then": {"required": ["model_artifact"], "properties": {"model_artifact": {"type": "object"}}}},
                {"if": {"properties": {"model_artifact": {"type": "object"}}, "required": ["model_artifact"]},
                 "then": {"properties": {"workload": {"properties": {"model": {"const": "user"}}}}}},
                {"if": {"properties": {"workload": {"properties": {"dataset": {"const": "artifact-input"}}}}},
                 "then": {"required": ["model_artifact"], "properties": {"model_artifact": {"type": "object"}}}},
            ],
            "x-edgebench-rules": ["in mode 'train', warmup_epochs < workload.epochs"],
        },
    )


class CancelRequest(StrictModel):
    kind: Literal["cancel"] = "cancel"
    job_id: Identifier
    reason: str = Field(default="canceled by controller", max_length=500)


class ReplayRequest(StrictModel):
    """Ask an agent to publish again what it kept of these jobs (reconciliation,
    as AWS IoT Jobs' DescribeJobExecution): their retained events, byte for byte,
    or, for a job it never received, a FAILED answer with error_type Lost."""

    kind: Literal["replay"] = "replay"
    job_ids: list[Identifier] = Field(min_length=1, max_length=100)
