"""Job specification: what a controller asks an agent to run."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field, model_validator

from edgebench.schemas.base import Identifier, StrictModel
from edgebench.schemas.inference import InferenceSettings


class Backend(str, Enum):
    """A framework stack. The runner for each lives in ``runner/``."""

    KERAS_JAX = "keras-jax"
    KERAS_TORCH = "keras-torch"
    KERAS_TENSORFLOW = "keras-tensorflow"
    TORCH = "torch"
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


class MemoryPolicy(str, Enum):
    """GPU memory allocation policy, mapped to each backend's own mechanism."""

    DEFAULT = "default"  # whatever the backend does by itself (recorded)
    GROW = "grow"  # allocate on demand
    FRACTION = "fraction"  # cap at memory_fraction of the device
    PREALLOCATE = "preallocate"  # grab memory_fraction up front


ModelName = Literal["mlp", "cnn", "resnet56", "resnet50"]
DatasetName = Literal["fashion_mnist", "cifar10", "synthetic_imagenet", "imagenet"]
OptimizerName = Literal["adam", "rmsprop", "sgd"]


class Workload(StrictModel):
    """Model + dataset + training hyper-parameters, fully explicit on the wire.

    The controller fills defaults from the catalogue (``runner/catalogue.py``);
    the agent never guesses.
    """

    model: ModelName
    dataset: DatasetName
    batch_size: int = Field(ge=1, le=65536)
    epochs: int = Field(ge=1, le=10000)
    optimizer: OptimizerName
    learning_rate: float = Field(gt=0, le=10)
    steps_per_epoch: int | None = Field(default=None, ge=1, le=10_000_000)
    samples: int | None = Field(
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
    gpus: int = Field(default=0, ge=0, le=64)
    precision: Precision = Precision.FP32
    data_format: DataFormat | None = None  # None: the backend's default
    compile: bool | None = None  # None: the backend's default
    memory_policy: MemoryPolicy = MemoryPolicy.DEFAULT
    memory_fraction: float | None = Field(default=None, gt=0, le=1)
    warmup_epochs: int = Field(default=1, ge=0, le=1000)
    repeats: int = Field(default=1, ge=1, le=100)
    timeout_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    step_timeout_s: float = Field(
        default=600.0, gt=0, le=24 * 3600, description="Longest silence from the runner."
    )
    tags: list[Identifier] = Field(default_factory=list, max_length=32)
    inference: InferenceSettings | None = Field(
        default=None, description="Mode infer under MLPerf LoadGen; None: the runtime backends' defaults, "
        "and the training frameworks' per-batch predict latency (the thin infer mode).")

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        if self.backend in RUNTIME_BACKENDS and self.mode is not Mode.INFER:
            raise ValueError(f"backend {self.backend.value} only infers: mode must be infer")
        if self.inference is not None and self.mode is not Mode.INFER:
            raise ValueError("inference settings need mode infer")
        if self.precision is Precision.INT8 and self.mode is not Mode.INFER:
            raise ValueError("precision int8 is for inference (a post-training quantised model)")
        if self.warmup_epochs >= self.workload.epochs and self.mode is Mode.TRAIN:
            raise ValueError(
                "workload.epochs must exceed warmup_epochs so that one epoch is measured"
            )
        if self.memory_policy in (MemoryPolicy.FRACTION, MemoryPolicy.PREALLOCATE):
            if self.memory_fraction is None:
                raise ValueError("memory_fraction is required with this memory_policy")
        return self


class CancelRequest(StrictModel):
    kind: Literal["cancel"] = "cancel"
    job_id: Identifier
    reason: str = Field(default="canceled by controller", max_length=500)
