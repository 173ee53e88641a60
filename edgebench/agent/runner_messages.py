"""Lines from the runner, turned into typed records.

The vocabulary is the runner's (edgebench/runner/protocol.py); this module is
the one place on the agent's side that reads it. Every line is untrusted: a
runner image is code the agent did not write, and a framework may print into
the protocol. So :func:`parse_line` either returns a typed, bounded record or
raises :class:`BadLine`, never anything else; the job run counts bad lines and
goes on.

Bounds applied before anything reaches a Result:

* a line longer than :data:`MAX_LINE_CHARS` is refused unparsed;
* JSON has no NaN or Infinity here, floats must be finite (``1e999`` parses to
  infinity in Python), and integers stay within +-2**53, so that nothing the
  store writes overflows SQLite's 64-bit columns;
* free-text maps (knobs, library versions) keep at most :data:`MAX_MAP_ENTRIES`
  entries, their keys and values cut to :data:`MAX_KEY_CHARS` and
  :data:`MAX_VALUE_CHARS`; messages and details are cut as JobEvent cuts them;
* lists (runs, epochs) have ceilings well above any real job.

A newer runner may add fields (ignored) or kinds (:class:`BadLine` with
``kind`` set, counted like any other).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from edgebench.schemas import ErrorType
from edgebench.schemas.result import DevicesUsed, RunResult

MAX_LINE_CHARS = 8 * 2**20  # a result with 100 repeats of 1,000 epochs is ~15 MB; such runs are trimmed later
MAX_INT = 2**53
MAX_MAP_ENTRIES = 128
MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 2000
MAX_MESSAGE_CHARS = 4000  # JobEvent.reason
MAX_RUNS = 100  # JobSpec.repeats
MAX_EPOCHS_PER_RUN = 20_000  # JobSpec's 10,000 epochs plus the window's extension (runner/timing.py)

# The error types a runner may report (runner/errors.py); the agent's own
# (RunnerCrash, Interrupted, Lost, Expired) cannot be claimed by a runner.
RUNNER_ERROR_TYPES = frozenset({ErrorType.BACKEND_ERROR, ErrorType.DATA_MISSING, ErrorType.OOM,
                                ErrorType.UNSUPPORTED, ErrorType.INVALID})


class BadLine(ValueError):
    """A line that is not a valid runner message; ``kind`` when its type was readable."""

    def __init__(self, reason: str, kind: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def _bounded_map(value: Any) -> Any:
    if not isinstance(value, dict):
        return value  # the type check says what is wrong
    items = list(value.items())[:MAX_MAP_ENTRIES]
    return {str(k)[:MAX_KEY_CHARS]: str(v)[:MAX_VALUE_CHARS] for k, v in items}


def _cut(limit: int) -> BeforeValidator:
    return BeforeValidator(lambda v: v[:limit] if isinstance(v, str) else v)


def _bounded_devices(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for key, limit in (("framework", 64), ("detail", 2000)):
        if isinstance(out.get(key), str):
            out[key] = out[key][:limit]
    if isinstance(out.get("devices"), list):
        out["devices"] = [str(d)[:200] for d in out["devices"][:256]]
    return out


def _bounded_runs(value: Any) -> Any:
    if isinstance(value, list):
        for run in value:
            epochs = run.get("epochs") if isinstance(run, dict) else None
            if isinstance(epochs, list) and len(epochs) > MAX_EPOCHS_PER_RUN:
                raise ValueError(f"a run of more than {MAX_EPOCHS_PER_RUN} epochs")
    return value


BoundedMap = Annotated[dict[str, str], BeforeValidator(_bounded_map)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
Repeat = Annotated[int, Field(ge=1, le=MAX_RUNS)]
Phase = Literal["setup", "warmup", "measure"]  # runner/protocol.py PHASES


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    t: float | None = None  # when the runner sent it (epoch seconds)


class Hello(_Message):
    type: Literal["hello"]
    backend: Annotated[str, _cut(64)]
    libraries: BoundedMap = Field(default_factory=dict)
    pid: Count | None = None
    python: Annotated[str, _cut(64)] | None = None


class Data(_Message):
    type: Literal["data"]
    source: Literal["real", "synthetic"]
    samples: Count


class PhaseMessage(_Message):
    type: Literal["phase"]
    phase: Phase
    epoch: Count
    epochs: Count
    repeat: Repeat = 1


class Window(_Message):
    type: Literal["window"]
    edge: Literal["begin", "end"]
    repeat: Repeat = 1


class ProgressMessage(_Message):
    type: Literal["progress"]
    phase: Phase = "measure"
    repeat: Repeat = 1
    epoch: Count
    epochs: Count = 0
    batch: Count = 0
    img_per_s: Annotated[float, Field(ge=0)] | None = None
    loss: float | None = None


class Epoch(_Message):
    type: Literal["epoch"]
    repeat: Repeat = 1
    epoch: Count
    warmup: bool
    images: Count
    batches: Count
    seconds: Annotated[float, Field(ge=0)]
    img_per_s: Annotated[float, Field(ge=0)]
    loss: float | None = None
    accuracy: float | None = None


class ResultMessage(_Message):
    type: Literal["result"]
    runs: Annotated[list[RunResult], Field(min_length=1, max_length=MAX_RUNS), BeforeValidator(_bounded_runs)]
    knobs: BoundedMap = Field(default_factory=dict)
    data_source: Literal["real", "synthetic"] = "synthetic"
    global_batch_size: Count | None = None
    per_device_batch_size: Count | None = None
    devices_used: Annotated[DevicesUsed, BeforeValidator(_bounded_devices)] | None = None


class Error(_Message):
    type: Literal["error"]
    error_type: str = "BackendError"
    message: Annotated[str, _cut(MAX_MESSAGE_CHARS)] = ""

    @property
    def typed(self) -> ErrorType:
        """The error type, where the runner may claim it; else BackendError."""
        try:
            value = ErrorType(self.error_type)
        except ValueError:
            return ErrorType.BACKEND_ERROR
        return value if value in RUNNER_ERROR_TYPES else ErrorType.BACKEND_ERROR


RunnerMessage = Annotated[
    Hello | Data | PhaseMessage | Window | ProgressMessage | Epoch | ResultMessage | Error,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[RunnerMessage] = TypeAdapter(RunnerMessage)
KINDS = ("hello", "data", "phase", "window", "progress", "epoch", "result", "error")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 17:  # 2**53 has 16 digits: no need to build a huge integer first
        raise ValueError(f"integer out of range: {text[:40]}")
    value = int(text)
    if abs(value) > MAX_INT:
        raise ValueError(f"integer out of range: {text}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def parse_line(line: str) -> RunnerMessage:
    """One protocol line as a typed record; :class:`BadLine` for anything else."""
    if len(line) > MAX_LINE_CHARS:
        raise BadLine(f"line of more than {MAX_LINE_CHARS} characters")
    try:
        raw = json.loads(line, parse_float=_finite, parse_int=_bounded_int, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise BadLine(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(raw, dict):
        raise BadLine("not a JSON object")
    kind = raw.get("type")
    if kind not in KINDS:
        raise BadLine(f"unknown message type {str(kind)[:40]!r}", str(kind)[:40])
    try:
        return _ADAPTER.validate_python(raw, strict=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])  # loc[0] is the union tag
        raise BadLine(f"invalid {kind} message: {where}: {first['msg']}"[:MAX_MESSAGE_CHARS], kind) from None
    except RecursionError:  # nesting deeper than pydantic goes
        raise BadLine(f"invalid {kind} message: nested too deeply", kind) from None
