"""Several trainings in one Python process (a sweep driver, a notebook calling
`app.cli.main` again and again): each run's spans reach the collector under its own
resource, although `app/` made its tracers once, at import time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from receivers import GrpcReceiver, attributes_of

from app.cli import main
from app.contracts import telemetry_names as names

RUN_ARGS = ("--dataset", "synthetic", "--envs", "2", "--max-epochs", "3", "--episodes", "4")


pytestmark = pytest.mark.usefixtures("in_process_run_state")


def spans_by_run_id(receiver: GrpcReceiver) -> dict[str, list[Any]]:
    """Every exported span under the `esper.run_id` of the resource it came with."""
    found: dict[str, list[Any]] = {}
    with receiver.lock:
        requests = list(receiver.trace_requests)
    for request in requests:
        for resource_spans in request.resource_spans:
            run_id = attributes_of(resource_spans.resource.attributes)[names.RUN_ID]
            spans = found.setdefault(run_id, [])
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    return found


def logged_run(telemetry_dir: Path) -> tuple[str, set[str]]:
    """The run id in a run's run.json and the trace ids its event log refers to."""
    [log] = telemetry_dir.glob("telemetry_*/events.jsonl")
    run_id = json.loads((log.parent / "run.json").read_text())["run_id"]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return run_id, {record["trace_id"] for record in records if "trace_id" in record}


@pytest.mark.slow
def test_two_trainings_in_one_process_each_export_their_own_spans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = GrpcReceiver().start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        runs = []
        for name in ("first", "second"):
            telemetry_dir = tmp_path / name
            args = ["train", *RUN_ARGS, "--no-progress", "--telemetry-dir", str(telemetry_dir)]
            assert main(args) == 0
            runs.append(logged_run(telemetry_dir))
        exported = spans_by_run_id(receiver)
    finally:
        receiver.stop()

    assert set(exported) == {run_id for run_id, _ in runs} and len(runs) == 2
    traces_by_run = []
    for run_id, logged_traces in runs:
        spans = exported[run_id]
        [run_span] = [span for span in spans if span.name == names.RUN_SPAN]
        assert attributes_of(run_span.attributes)[names.RUN_ID] == run_id
        assert names.BATCH_SPAN in {span.name for span in spans}
        traces = {span.trace_id.hex() for span in spans}
        # Every trace the run's log points to was exported with the run's own resource.
        assert logged_traces and logged_traces <= traces
        traces_by_run.append(traces)
    assert not traces_by_run[0] & traces_by_run[1]
