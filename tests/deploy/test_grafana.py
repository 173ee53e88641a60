"""The Grafana dashboards under deploy/grafana: every query names a metric or a column that exists.

- edgebench-agents.json (Prometheus): each PromQL expression's metric names and label names must be
  ones the agent's collector exposes (read from the collector itself, fed by a recorded H200 trace).
- edgebench-results.json (PostgreSQL): each SQL query, Grafana's macros and variables filled in, runs
  against a real PostgreSQL server holding a real results store (recorded results re-ingested).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from edgebench.agent.telemetry import ReplayTelemetry
from edgebench.agent.telemetry.prometheus import GPU_LABELS, RUNNER_LABELS, TelemetryCollector
from edgebench.controller.store import ResultStore
from tests.controller.render.stores import FIXTURES, copy_store, reingest
from tests.pg import PgServer, PgUnavailable

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana"
TRACE = REPO / "tests" / "fixtures" / "nvml_trace_h200.jsonl"
COMPARE_STORE = FIXTURES / "compare_store.sqlite"


def _dashboard(name: str) -> dict[str, Any]:
    doc = json.loads((DASHBOARDS / name).read_text())
    assert doc["uid"] and doc["title"] and doc["panels"]
    return doc


def _targets(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target


# --- Prometheus ----------------------------------------------------------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                "unless"}


def metric_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression reads."""
    labels = set()
    for body in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", body))
    stripped = re.sub(r"\{[^}]*\}", "", expr)
    for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", stripped):
        labels |= {x.strip() for x in clause.split(",") if x.strip()}
    stripped = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)  # range selectors
    stripped = re.sub(r'"[^"]*"', "", stripped)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", stripped):
        word = m.group(0)
        rest = stripped[m.end():].lstrip()
        if word in PROMQL_WORDS or rest.startswith("(") or re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names, labels


def test_promql_parser_on_examples() -> None:
    assert metric_names('sum by (gpu, reason) (x_total{device_id=~"$d"})') == ({"x_total"}, {"gpu", "reason",
                                                                                           "device_id"})
    assert metric_names("time() - a{b=\"1\"}") == ({"a"}, {"b"})
    assert metric_names("deriv(e[2m]) / 1000") == ({"e"}, set())


def test_agent_dashboard_reads_only_exposed_metrics_and_labels() -> None:
    collector = TelemetryCollector(ReplayTelemetry(TRACE), device_id="edge-01")
    exposed = {family.name for family in collector.collect()}
    known_labels = {*GPU_LABELS, *RUNNER_LABELS, "reason", "job_id"}
    doc = _dashboard("edgebench-agents.json")
    checked = 0
    for title, target in _targets(doc):
        names, labels = metric_names(target["expr"])
        assert names, title
        assert names <= exposed, (title, names - exposed)
        assert labels <= known_labels, (title, labels - known_labels)
        checked += 1
    assert checked >= 10
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["definition"])
            assert m and m.group(1) in exposed and m.group(2) in known_labels, var["name"]


# --- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResultStore]:
    server = PgServer()
    try:
        server.start()
    except PgUnavailable as exc:
        pytest.skip(str(exc))
    try:
        store = ResultStore(server.create_database())
        source = copy_store(tmp_path_factory.mktemp("grafana"), cpu=False, gpu=True)
        assert reingest(source.results(), store) > 10
        # and recorded runs with validity records, some suspect (tests/fixtures/compare_store.sqlite)
        import shutil

        copy = tmp_path_factory.mktemp("grafana-compare") / "c.sqlite"
        shutil.copy(COMPARE_STORE, copy)
        recorded = ResultStore(f"sqlite:///{copy}")
        assert reingest(recorded.results(), store) == 34
        recorded.close()
        yield store
        store.close()
    finally:
        server.stop()


def fill(query: str, values: dict[str, list[str]]) -> str:
    """Grafana's macros and multi-value variables, as Grafana would expand them."""
    query = re.sub(r"\$__timeFilter\(([^)]+)\)", r"\1 BETWEEN '2000-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z'",
                   query)
    query = re.sub(r"\$__timeGroupAlias\(([^,]+),\s*'1d'\)", r"""date_trunc('day', \1) AS "time\"""", query)
    assert "$__" not in query, query
    for name, vals in values.items():
        query = query.replace(f"${name}", ", ".join("'" + v.replace("'", "''") + "'" for v in vals))
    assert "$" not in query, query
    return query


@pytest.mark.postgres
def test_results_dashboard_queries_run_on_a_real_store(pg_results: ResultStore) -> None:
    doc = _dashboard("edgebench-results.json")
    values: dict[str, list[str]] = {}
    with pg_results.engine.connect() as conn:
        for var in doc["templating"]["list"]:
            if var["type"] != "query":
                continue
            rows = conn.execute(sa.text(var["query"])).all()
            values[var["name"]] = [str(r[0]) for r in rows]
            assert values[var["name"]], var["name"]
        seen = 0
        for title, target in _targets(doc):
            rows = conn.execute(sa.text(fill(target["rawSql"], values).replace(":", r"\:"))).all()
            assert rows, title  # the recorded stores have results for every panel
            seen += 1
    assert seen == 5
    assert "NVIDIA H200" in values["hardware"]
