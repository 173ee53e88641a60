"""The one mapping from error to message and exit code (edgebench/common/cli.py), and the
one-line message for a missing optional extra, through the real controller CLI."""

from __future__ import annotations

import sys

import pytest
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from edgebench.common.cli import describe
from edgebench.common.errors import EdgebenchError, UsageError
from edgebench.common.mqtt import ConnectError
from edgebench.controller.cli import app
from edgebench.controller.errors import ControllerError
from edgebench.controller.plan import PlanError


class _M(BaseModel):
    n: int


def test_errors_map_to_exit_codes() -> None:
    assert describe(UsageError("bad")) == (2, "bad")
    assert describe(PlanError("unknown workload")) == (2, "unknown workload")
    assert describe(ControllerError("3 jobs failed")) == (1, "3 jobs failed")
    assert describe(ConnectError("no broker")) == (1, "no broker")
    assert describe(EdgebenchError("x")) == (1, "x")
    try:
        _M.model_validate({"n": "many"})
    except ValidationError as exc:
        code, message = describe(exc)  # type: ignore[misc]
        assert code == 2 and message.startswith("invalid _M: n: Input should be a valid integer")
        assert "\n" not in message
    assert describe(RuntimeError("a bug")) is None  # a bug keeps its traceback
    assert describe(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None


@pytest.mark.parametrize(("module", "extra"), [("docker", "docker"), ("matplotlib", "report"),
                                               ("pyarrow", "parquet"), ("psycopg", "postgres"),
                                               ("amqtt.broker", "broker")])
def test_a_missing_extra_names_the_extra(module: str, extra: str) -> None:
    code, message = describe(ModuleNotFoundError(f"No module named {module!r}", name=module))  # type: ignore[misc]
    assert code == 1 and f"the '{extra}' extra" in message and f"edgebench[{extra}]" in message


def test_postgres_store_without_psycopg_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    out = CliRunner().invoke(app, ["--store", "postgresql+psycopg://u:p@127.0.0.1:1/db", "results"])
    assert out.exit_code == 1, out.output
    (line,) = out.stderr.strip().splitlines()
    assert "the 'postgres' extra" in line and "Traceback" not in out.output


def test_broker_without_amqtt_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amqtt", None)
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)
    out = CliRunner().invoke(app, ["broker", "--port", "1"])
    assert out.exit_code == 1, out.output
    assert "the 'broker' extra" in out.stderr
