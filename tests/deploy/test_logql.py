"""Every LogQL query the stack ships: the Loki panels of the dashboards and the Jaeger data
source's trace-to-logs query, with Grafana's variables filled in as Grafana would.

Two checks. The syntax check parses each query with Grafana's own LogQL grammar,
@grafana/lezer-logql (the parser behind Grafana's Loki query editor; npm, Apache-2.0), run
by `node`. The package is pinned in tests/deploy/logql (`npm ci --prefix
tests/deploy/logql`, which `.ci/run` runs); without it the check fails rather than skips,
so that CI cannot pass without parsing the queries. The structural check: the stream
selector picks the run by the label Loki makes of esper.run_id, and every label filter
names an attribute of docs/opentelemetry.md as Loki stores it (loki/config.yaml),
compared with values the contract has.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from stack_files import data_sources, grafana_reads, loki_label, loki_panel_queries

from app.contracts import telemetry_names as names
from app.contracts.events import EventType, Severity

PARSER_PACKAGE = "@grafana/lezer-logql"
PARSER_MODULES = Path(__file__).resolve().parent / "logql" / "node_modules"
INSTALL = "npm ci --prefix tests/deploy/logql"

RUN_ID = "3f2a9c1e5b7d4a60"
# Grafana's variables as a dashboard and a span link fill them in.
VARIABLES = {
    "${__tags}": f'{loki_label(names.RUN_ID)}="{RUN_ID}"',
    "${__span.traceId}": "4bf92f3577b34da6a3ce929d0e0e4736",
    "${__span.spanId}": "00f067aa0ba902b7",
    "${run_id}": RUN_ID,
    "$run_id": RUN_ID,
}

# Prints, for each query read from stdin (a JSON list), the offsets of its syntax errors.
PARSE = """
const { parser } = require('@grafana/lezer-logql');
const queries = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const errors = queries.map((query) => {
  const found = [];
  const enter = (node) => { if (node.type.isError) found.push(node.from); };
  parser.parse(query).iterate({ enter });
  return found;
});
process.stdout.write(JSON.stringify(errors));
"""

# A matcher of a stream selector or a label filter: name, operator, quoted value.
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
# What Loki itself adds to an OTLP record (grafana/loki v3.7.6 pkg/loghttp/push/otlp.go and
# the level it detects), beside the record's attributes.
LOKI_FIELDS = {"trace_id", "span_id", "severity_text", "severity_number", "detected_level"}
RUN_LABEL = loki_label(names.RUN_ID)


def substitute(query: str) -> str:
    for name, value in VARIABLES.items():
        query = query.replace(name, value)
    assert "$" not in query, f"a variable left unsubstituted in {query!r}"
    return query


def trace_to_logs_query() -> str:
    return grafana_reads(data_sources()["jaeger"]["jsonData"]["tracesToLogsV2"]["query"])


def shipped_queries() -> list[tuple[str, str]]:
    """(where, query as Loki receives it) of every LogQL query of the stack."""
    queries = [(where, substitute(expr)) for where, expr in loki_panel_queries()]
    queries.append(("Jaeger trace to logs", substitute(trace_to_logs_query())))
    return queries


def syntax_errors(queries: list[str]) -> list[list[int]]:
    assert shutil.which("node"), "the LogQL syntax check needs Node.js (`node`)"
    assert (PARSER_MODULES / PARSER_PACKAGE).is_dir(), f"LogQL parser missing: {INSTALL}"
    result = subprocess.run(
        ["node", "-e", PARSE],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NODE_PATH": str(PARSER_MODULES)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    errors = json.loads(result.stdout)
    assert isinstance(errors, list) and len(errors) == len(queries)
    return errors


def stream_selector(query: str) -> dict[str, tuple[str, str]]:
    """Label -> (operator, value) of the query's first stream selector."""
    match = re.search(r"\{([^{}]*)\}", query)
    assert match, f"no stream selector in {query!r}"
    return {name: (op, value) for name, op, value in MATCHER.findall(match.group(1))}


def label_filters(query: str) -> list[tuple[str, str, str]]:
    """(name, operator, value) of every matcher after the stream selector."""
    return MATCHER.findall(query[query.index("}") + 1 :])


def test_the_stack_ships_loki_queries() -> None:
    assert loki_panel_queries(), "no dashboard panel queries Loki"


def test_every_query_is_valid_logql() -> None:
    queries = shipped_queries()
    errors = syntax_errors([query for _, query in queries])
    failures = [
        f"{where}: {query}\n    syntax error at {offsets}"
        for (where, query), offsets in zip(queries, errors, strict=True)
        if offsets
    ]
    assert not failures, "\n".join(failures)


def test_the_parser_rejects_invalid_logql() -> None:
    # Guards against a check that passes everything (a parser that failed to load).
    broken = [f'{{{RUN_LABEL}="{RUN_ID}"}} | {loki_label(names.EVENT_TYPE)}=~', "{a=}"]
    assert all(syntax_errors(broken))


@pytest.mark.parametrize(("where", "query"), shipped_queries(), ids=lambda v: str(v)[:40])
def test_every_query_selects_one_run_by_its_stream_label(where: str, query: str) -> None:
    selector = stream_selector(query)
    assert selector.get(RUN_LABEL) == ("=", RUN_ID), where
    assert all("." not in name for name in selector), f"{where}: Loki labels have no dots"


@pytest.mark.parametrize(("where", "query"), shipped_queries(), ids=lambda v: str(v)[:40])
def test_every_filter_names_a_field_loki_stores(where: str, query: str) -> None:
    contract = {loki_label(key) for key in (names.EVENT_TYPE, names.EVENT_SEVERITY)}
    for name, _, _ in label_filters(query):
        assert name in contract | LOKI_FIELDS, f"{where}: {name} is not stored by Loki"


def alternatives(query: str, label: str) -> set[str]:
    values = [value for name, op, value in label_filters(query) if name == label and op == "=~"]
    assert len(values) == 1, (label, query)
    return set(values[0].split("|"))


def test_the_events_panel_shows_anomalies_and_seed_outcomes() -> None:
    [(_, expr)] = [(w, e) for w, e in loki_panel_queries() if "Anomalies and seed outcomes" in w]
    query = substitute(expr)
    types = alternatives(query, loki_label(names.EVENT_TYPE))
    severities = alternatives(query, loki_label(names.EVENT_SEVERITY))
    assert types == {EventType.SEED_FOSSILIZED, EventType.SEED_CULLED}
    # The PPO anomalies and the health detectors report at warning and above.
    assert severities == {Severity.WARNING, Severity.ERROR, Severity.CRITICAL}


def test_a_span_selects_its_own_events() -> None:
    filters = {
        (name, value) for name, op, value in label_filters(substitute(trace_to_logs_query()))
    }
    assert ("trace_id", VARIABLES["${__span.traceId}"]) in filters
    assert ("span_id", VARIABLES["${__span.spanId}"]) in filters
