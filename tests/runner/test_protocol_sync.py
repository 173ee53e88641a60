"""The runner's protocol vocabulary, the agent's parser and edgebench/schemas agree.

The runner (Python 3.6, no pydantic) declares message kinds, phases, error
types and device kinds as plain constants; the agent and the schemas declare
them again as types. These tests fail as soon as one side changes alone.
"""

from __future__ import annotations

import json
import typing

import pytest

from edgebench.agent import runner_messages as rm
from edgebench.runner import errors, protocol, registry
from edgebench.runner.timing import RunTimer
from edgebench.schemas import Backend, ErrorType, Progress
from edgebench.schemas.result import DevicesUsed, Result


def _literal(model: type, field: str) -> set[str]:
    return set(typing.get_args(model.model_fields[field].annotation))


def test_message_kinds_match_the_agent_parser() -> None:
    assert protocol.KINDS == rm.KINDS
    tags = {typing.get_args(cls.model_fields["type"].annotation)[0]
            for cls in typing.get_args(typing.get_args(rm.RunnerMessage)[0])}
    assert tags == set(protocol.KINDS)


def test_phases_are_progress_phases() -> None:
    assert set(protocol.PHASES) <= _literal(Progress, "phase")
    assert set(typing.get_args(rm.Phase)) == set(protocol.PHASES)


def test_runner_error_types_are_schema_error_types() -> None:
    schema = {e.value for e in ErrorType}
    assert set(errors.ERROR_TYPES) <= schema
    assert {e.value for e in rm.RUNNER_ERROR_TYPES} == set(errors.ERROR_TYPES)
    # every RunnerError subclass, in every backend's modules, reports a listed type
    for name in registry.BACKENDS:
        registry.backend_class(name)
    import edgebench.runner.inference.artifacts  # noqa: F401 - defines a RunnerError of its own

    def every(cls: type) -> set[type]:
        return {cls}.union(*(every(sub) for sub in cls.__subclasses__()))

    assert {c.error_type for c in every(errors.RunnerError)} == set(errors.ERROR_TYPES)


def test_device_kinds_and_data_sources() -> None:
    assert set(protocol.DEVICE_KINDS) == _literal(DevicesUsed, "kind")
    assert set(protocol.DATA_SOURCES) == _literal(Result, "data_source")


def test_every_schema_backend_has_a_runner_backend() -> None:
    assert set(registry.BACKENDS) == {b.value for b in Backend}
    for name in registry.BACKENDS:
        assert registry.backend_class(name).requirements is not None


class _Collect:
    def __init__(self) -> None:
        self.sent: list[dict[str, typing.Any]] = []

    def send(self, message: dict[str, typing.Any]) -> None:
        self.sent.append(dict(message, t=1.0))


def _one_repeat() -> list[dict[str, typing.Any]]:
    out = _Collect()
    timer = RunTimer(out, 1, 2, 1, 8)
    for epoch in timer.epoch_numbers():
        timer.epoch_begin(epoch)
        for _ in range(3):
            timer.batch_end(loss=0.5)
        timer.epoch_end(loss=0.5, accuracy=0.25)
    devices = protocol.devices_used("torch", "cpu", ["cpu"], "torch on the CPU")
    out.send(protocol.result([timer.run_record("train", 0.5, 0.25, {"k": "v"})], {"k": "v"}, "synthetic", 8, 8,
                             devices))
    return out.sent


@pytest.mark.parametrize("message", [
    protocol.hello("torch", {"torch": "2.13.0"}, 123, "3.6.15", shims=["numpy.bool"], keras_home="/tmp/k"),
    protocol.data("real", 60000),
    protocol.phase(protocol.SETUP, 0, 2, 1),
    protocol.window("begin", 1),
    protocol.progress(1, 1, 2, 10, 1234.5, 0.7, protocol.WARMUP),
    protocol.error(errors.Unsupported.error_type, "gpus: gpus=1 but JAX sees platform cpu only"),
], ids=lambda m: m["type"])
def test_each_constructor_parses_on_the_agent(message: dict[str, typing.Any]) -> None:
    parsed = rm.parse_line(json.dumps(dict(message, t=1.0)))
    assert parsed.type == message["type"]


def test_a_timed_repeat_and_its_result_parse_on_the_agent() -> None:
    parsed = [rm.parse_line(json.dumps(m)) for m in _one_repeat()]
    kinds = [p.type for p in parsed]
    assert kinds[0] == "phase" and kinds[-1] == "result" and kinds.count("epoch") == 2
    result = parsed[-1]
    assert isinstance(result, rm.ResultMessage)
    assert result.devices_used is not None and result.devices_used.kind == "cpu"
    assert result.runs[0].throughput.n_batches == 3


def test_constructors_refuse_words_outside_the_vocabulary() -> None:
    with pytest.raises(ValueError):
        protocol.phase("validate", 0, 1, 1)
    with pytest.raises(ValueError):
        protocol.window("middle", 1)
    with pytest.raises(ValueError):
        protocol.devices_used("jax", "tpu", [])
    with pytest.raises(ValueError):
        protocol.data("cached", 1)
