"""Hostile or malformed runner output never crashes the agent, and what reaches
a Result is bounded (edgebench/agent/runner_messages.py, agent/jobrun.py)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebench.agent import runner_messages as rm
from edgebench.agent.config import LocalBackend
from edgebench.agent.executors import LocalExecutor
from edgebench.agent.fingerprint import machine_fingerprint
from edgebench.agent.jobrun import JobRun
from edgebench.schemas import ErrorType, JobState
from tests.helpers import sleep_job


def _parse_or_bad(line: str) -> rm.RunnerMessage | None:
    try:
        return rm.parse_line(line)
    except rm.BadLine:
        return None


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return True


@given(st.text(max_size=300))
def test_any_text_is_a_message_or_a_bad_line(text: str) -> None:
    _parse_or_bad(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@given(st.sampled_from(rm.KINDS), st.dictionaries(st.sampled_from(
    ["repeat", "epoch", "epochs", "phase", "edge", "source", "samples", "runs", "knobs", "libraries", "warmup",
     "images", "batches", "seconds", "img_per_s", "loss", "error_type", "message", "devices_used", "t"]),
    json_values, max_size=12))
def test_any_object_of_a_known_kind_is_typed_and_finite_or_refused(kind: str, fields: dict[str, Any]) -> None:
    msg = _parse_or_bad(json.dumps({**fields, "type": kind}))
    if msg is not None:
        assert msg.type == kind
        assert _all_finite(msg.model_dump())


@pytest.mark.parametrize("line", [
    '{"type": "epoch", "repeat": 1, "epoch": 2, "warmup": false, "images": 1, "batches": 1, "seconds": 1e999, '
    '"img_per_s": 1}',
    '{"type": "progress", "epoch": 1, "img_per_s": NaN}',
    '{"type": "progress", "epoch": 1, "img_per_s": Infinity}',
    '{"type": "data", "source": "real", "samples": 100000000000000000000000000}',
    '{"type": "data", "source": "real", "samples": -1}',
    '{"type": "phase", "phase": "validate", "epoch": 0, "epochs": 1}',
    '{"type": "window", "edge": "begin", "repeat": 0}',
    '{"type": "result", "runs": []}',
    '{"type": "launch-missiles"}',
    '[' * 100_000 + ']' * 100_000,
    '{"type": "hello", "backend": "x", "libraries": ' + '{"a":' * 5000 + '1' + '}' * 5000 + '}',
    "not json at all",
    '"a string"',
    "x" * (rm.MAX_LINE_CHARS + 1),
])
def test_hostile_lines_are_bad_lines(line: str) -> None:
    with pytest.raises(rm.BadLine):
        rm.parse_line(line)


def test_free_text_is_cut_to_its_bounds() -> None:
    hello = rm.parse_line(json.dumps({"type": "hello", "backend": "b" * 500,
                                      "libraries": {f"lib{i}" * 50: "v" * 5_000 for i in range(300)}}))
    assert isinstance(hello, rm.Hello)
    assert len(hello.backend) == 64 and len(hello.libraries) == rm.MAX_MAP_ENTRIES
    assert all(len(k) <= rm.MAX_KEY_CHARS and len(v) <= rm.MAX_VALUE_CHARS for k, v in hello.libraries.items())
    err = rm.parse_line(json.dumps({"type": "error", "error_type": "RunnerCrash", "message": "m" * 100_000}))
    assert isinstance(err, rm.Error)
    # a runner may not claim the agent's own error types
    assert err.typed is ErrorType.BACKEND_ERROR and len(err.message) == rm.MAX_MESSAGE_CHARS
    assert rm.parse_line('{"type": "error", "error_type": "OOM", "message": "x"}').typed is ErrorType.OOM  # type: ignore[union-attr]
    lost = rm.parse_line('{"type": "error", "error_type": "Lost", "message": "x"}')
    assert lost.typed is ErrorType.BACKEND_ERROR  # type: ignore[union-attr]


def _run_record(repeat: int) -> dict[str, Any]:
    epoch = {"epoch": 2, "warmup": False, "images": 64, "batches": 2, "seconds": 0.5, "img_per_s": 128.0,
             "loss": 1.0, "accuracy": 0.5}
    throughput = {"window_img_per_s": 128.0, "median_img_per_s": 128.0, "mean_img_per_s": 128.0,
                  "std_img_per_s": 0.0, "n_batches": 2, "n_samples": 2, "images": 64, "window_s": 0.5}
    return {"repeat": repeat, "epochs": [dict(epoch, epoch=1, warmup=True), epoch], "throughput": throughput,
            "latency": None, "loss": 1.0, "accuracy": 0.5, "knobs": {}}


# A stand-in runner that speaks the protocol with hostile extras: garbage lines,
# a wrong line of a known kind, unknown kinds, and oversized free text.
FAKE_RUNNER = r'''
import json, sys
out = sys.stdout
def send(obj):
    out.write(json.dumps(obj) + "\n")
send({"type": "hello", "backend": "sleep", "libraries": {("k%d" % i): "v" * 5000 for i in range(500)}, "pid": 1})
out.write("Epoch 1/2 ━━━━━━━━ 12ms/step (a framework printing into the protocol)\n")
out.write("{not json\n")
out.write(json.dumps({"type": "progress", "epoch": "many"}) + "\n")
out.write(json.dumps({"type": "future-kind", "x": 1}) + "\n")
out.write("[" * 50000 + "\n")
send({"type": "data", "source": "synthetic", "samples": 0})
send({"type": "window", "edge": "begin", "repeat": 1, "t": 1.0})
send({"type": "epoch", "repeat": 1, "epoch": 2, "warmup": False, "images": 64, "batches": 2, "seconds": 0.5,
      "img_per_s": 128.0, "loss": 1.0, "accuracy": 0.5})
send({"type": "window", "edge": "end", "repeat": 1, "t": 2.0})
send({"type": "result", "runs": RUNS, "knobs": {("knob%d" % i): "x" * 20000 for i in range(200)},
      "data_source": "synthetic", "global_batch_size": 32, "per_device_batch_size": 32,
      "devices_used": {"framework": "f" * 1000, "kind": "cpu", "devices": ["d" * 1000] * 1000,
                       "detail": "z" * 100000}})
'''


def _fake_runner_home(tmp_path: Path) -> Path:
    pkg = tmp_path / "fake-code" / "runner"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(FAKE_RUNNER.replace("RUNS", repr([_run_record(1)])))
    return pkg.parent


def test_a_hostile_runner_gives_a_bounded_result(tmp_path: Path) -> None:
    job = sleep_job("j-hostile", epochs=2, steps=2)
    run = JobRun(job=job, attempt=1, device_id="box",
                 executor=LocalExecutor(LocalBackend(python=sys.executable), _fake_runner_home(tmp_path)),
                 job_dir=tmp_path / "job", dataset_root=tmp_path,
                 fingerprint=lambda libs: machine_fingerprint(libs, []), on_progress=lambda p: None)
    outcome = run.run()
    assert outcome.state is JobState.SUCCEEDED, outcome.reason
    result = outcome.result
    assert result is not None
    assert len(result.knobs) == rm.MAX_MAP_ENTRIES
    assert all(len(v) <= rm.MAX_VALUE_CHARS for v in result.knobs.values())
    assert len(result.fingerprint.libraries) == rm.MAX_MAP_ENTRIES
    assert result.devices_used is not None and len(result.devices_used.detail) <= 2000
    assert len(result.devices_used.devices) <= 256 and len(result.devices_used.framework) <= 64
    assert len(result.model_dump_json()) < 2_000_000
