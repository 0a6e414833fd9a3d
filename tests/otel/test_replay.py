"""`esper replay` end to end: the legacy log sent by the SDK's OTLP exporters (gRPC and
HTTP) to an in-process receiver, with its original timestamps, the trace shape of
docs/opentelemetry.md, metrics, corrupt lines, rotated sets and bad input."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from otel_runs import PROTOCOLS
from receivers import attributes_of
from replay_runs import Replayed, original_ns, records, replay

from app.cli import main
from app.contracts import telemetry_names as names
from app.contracts.events import EventType, TelemetryEvent
from instrumentation.jsonl_reader import LoggedEvent, log_files
from instrumentation.replay import batches
from instrumentation.replay_input import run_id_for

UPDATE_EVENTS = {
    "PPO_UPDATE_COMPLETED",
    "RATIO_EXPLOSION_DETECTED",
    "RATIO_COLLAPSE_DETECTED",
    "VALUE_COLLAPSE_DETECTED",
    "GRADIENT_PATHOLOGY_DETECTED",
    "NUMERICAL_INSTABILITY_DETECTED",
}


@pytest.fixture(scope="module", params=PROTOCOLS)
def legacy_replay(request: pytest.FixtureRequest, legacy_log: Path) -> Iterator[Replayed]:
    yield replay(request.param, [str(legacy_log)])


def test_every_event_arrives_with_its_original_timestamp(
    legacy_replay: Replayed, legacy_log: Path
) -> None:
    assert legacy_replay.code == 0, legacy_replay.stderr
    exported = legacy_replay.span_events()
    expected = records(legacy_log)
    assert len(expected) == 170
    assert set(exported) == {record["event_id"] for record in expected}
    for record in expected:
        _, event = exported[record["event_id"]]
        assert event.name == f"esper.{record['event_type'].lower()}"
        assert event.time_unix_nano == original_ns(record)
        attributes = attributes_of(event.attributes)
        assert attributes[names.EVENT_TYPE] == record["event_type"]
        for key, value in record["data"].items():
            assert attributes.get(f"esper.data.{key}") == value


def test_one_trace_per_batch_linked_to_the_run_span(
    legacy_replay: Replayed, legacy_log: Path
) -> None:
    updates = sum(record["event_type"] == "PPO_UPDATE_COMPLETED" for record in records(legacy_log))
    [run] = legacy_replay.spans(names.RUN_SPAN)
    run_attributes = attributes_of(run.attributes)
    assert run_attributes == {names.RUN_ID: legacy_log.stem, names.REPLAYED: True}
    assert run.start_time_unix_nano == original_ns(records(legacy_log)[0])
    roots = legacy_replay.spans(names.BATCH_SPAN)
    # Three updates close three batches; the events after the last one are a fourth.
    assert updates == 3
    assert len(roots) == updates + 1
    assert len({root.trace_id for root in roots} | {run.trace_id}) == len(roots) + 1
    for number, root in enumerate(sorted(roots, key=lambda span: span.start_time_unix_nano), 1):
        attributes = attributes_of(root.attributes)
        assert attributes[names.RUN_ID] == legacy_log.stem
        assert attributes[names.BATCH] == number
        assert root.parent_span_id == b""
        [link] = root.links
        assert (link.trace_id, link.span_id) == (run.trace_id, run.span_id)


def test_events_land_on_the_span_of_design_section_5(
    legacy_replay: Replayed, legacy_log: Path
) -> None:
    exported = legacy_replay.span_events()
    by_id = {span.span_id: span for span in legacy_replay.spans()}
    for record in records(legacy_log):
        span, _ = exported[record["event_id"]]
        if record["event_type"] in UPDATE_EVENTS:
            assert span.name == names.UPDATE_SPAN
            continue
        attributes = attributes_of(span.attributes)
        assert attributes[names.ENV_ID] == record["data"]["env_id"]
        if record["epoch"] is None:
            assert span.name == names.EPISODE_SPAN
        else:
            assert span.name == names.EPOCH_SPAN
            assert attributes[names.EPOCH] == record["epoch"]
            assert by_id[span.parent_span_id].name == names.EPISODE_SPAN


def test_spans_start_and_end_at_their_first_and_last_event(legacy_replay: Replayed) -> None:
    by_id = {span.span_id: span for span in legacy_replay.spans()}
    children: dict[bytes, list[Span]] = {}
    for span in by_id.values():
        children.setdefault(span.parent_span_id, []).append(span)
    for span in legacy_replay.spans():
        if span.name == names.RUN_SPAN:
            continue
        own = [event.time_unix_nano for event in span.events]
        inner = [child.start_time_unix_nano for child in children.get(span.span_id, [])]
        inner += [child.end_time_unix_nano for child in children.get(span.span_id, [])]
        assert span.start_time_unix_nano == min(own + inner)
        assert span.end_time_unix_nano == max(own + inner)


def test_metrics_count_the_events_of_the_log(legacy_replay: Replayed, legacy_log: Path) -> None:
    [*_, events_total] = legacy_replay.received.metrics()[names.EVENTS]
    counted: Counter[str] = Counter()
    for point in events_total.sum.data_points:
        attributes = attributes_of(point.attributes)
        assert attributes["run_id"] == legacy_log.stem
        counted[attributes["event_type"]] += point.as_int
    assert counted == Counter(record["event_type"] for record in records(legacy_log))


def test_a_corrupt_line_is_reported_and_the_rest_replayed(legacy_log: Path, tmp_path: Path) -> None:
    lines = legacy_log.read_text().splitlines()
    unknown = json.loads(lines[19])
    unknown["event_type"] = "NOT_AN_EVENT"
    skipped = {json.loads(lines[9])["event_id"], unknown["event_id"]}
    lines[9] = lines[9][:40]
    lines[19] = json.dumps(unknown)
    log = tmp_path / "events.jsonl"
    log.write_text("\n".join(lines) + "\n")

    replayed = replay("http/protobuf", [str(log), "--run-id", "corrupt"])

    assert replayed.code == 1
    assert f"{log}:10: invalid JSON" in replayed.stderr
    assert f"{log}:20: invalid event: unknown event_type 'NOT_AN_EVENT'" in replayed.stderr
    assert "168 replayed from 1 file(s), 2 line(s) skipped" in replayed.stderr
    expected = {record["event_id"] for record in records(legacy_log)} - skipped
    assert set(replayed.span_events()) == expected


def test_a_rotated_set_replays_oldest_first(legacy_log: Path, tmp_path: Path) -> None:
    lines = legacy_log.read_text().splitlines(keepends=True)
    run_dir = tmp_path / "telemetry_2025-12-06_004214"
    run_dir.mkdir()
    log = run_dir / "events.jsonl"
    for suffix, part in ((".2", lines[:60]), (".1", lines[60:120]), ("", lines[120:])):
        Path(f"{log}{suffix}").write_text("".join(part))
    (run_dir / "run.json").write_text(json.dumps({"run_id": "rotated-run"}))

    replayed = replay("http/protobuf", [str(log)])

    assert replayed.code == 0, replayed.stderr
    assert "170 replayed from 3 file(s)" in replayed.stderr
    # Batches split at the updates of lines 48, 100 and 135 only if read in order.
    roots = sorted(replayed.spans(names.BATCH_SPAN), key=lambda span: span.start_time_unix_nano)
    events_per_trace = Counter(span.trace_id for span in replayed.spans() for _ in span.events)
    assert [events_per_trace[root.trace_id] for root in roots] == [48, 52, 35, 35]
    assert {attributes_of(root.attributes)[names.RUN_ID] for root in roots} == {"rotated-run"}


def test_original_trace_ids_are_kept_as_span_attributes(legacy_log: Path, tmp_path: Path) -> None:
    record = records(legacy_log)[0]
    record.update(trace_id="ab" * 16, span_id="cd" * 8)
    log = tmp_path / "events.jsonl"
    log.write_text(json.dumps(record) + "\n")

    replayed = replay("grpc", [str(log)])

    [span] = replayed.spans(names.EPOCH_SPAN)
    attributes = attributes_of(span.attributes)
    assert attributes[names.ORIGINAL_TRACE_ID] == "ab" * 16
    assert attributes[names.ORIGINAL_SPAN_ID] == "cd" * 8
    assert span.trace_id.hex() != "ab" * 16


def test_a_missing_log_exits_2_with_one_line(tmp_path: Path) -> None:
    replayed = replay("http/protobuf", [str(tmp_path / "events.jsonl")])
    assert replayed.code == 2
    assert replayed.stderr.count("\n") == 1
    assert "cannot read event log" in replayed.stderr
    assert replayed.received.spans() == []


def test_no_configured_exporter_exits_2(
    legacy_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(legacy_log)]) == 2
    assert "no exporter configured" in capsys.readouterr().err


def test_log_files_lists_rotated_logs_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    for name in ("events.jsonl", "events.jsonl.1", "events.jsonl.3", "events.jsonl.bak"):
        (tmp_path / name).touch()
    assert log_files(log) == [tmp_path / "events.jsonl.3", tmp_path / "events.jsonl.1", log]


def test_run_id_comes_from_run_json_else_the_run_directory_else_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "telemetry_2025-12-06_004214"
    run_dir.mkdir()
    for path in (run_dir, run_dir / "events.jsonl", run_dir / "events-rank1.jsonl"):
        assert run_id_for(path) == "telemetry_2025-12-06_004214"
    assert run_id_for(run_dir / "old.jsonl") == "old"
    monkeypatch.chdir(run_dir)
    assert run_id_for(Path()) == run_id_for(Path("events.jsonl")) == run_dir.name
    (run_dir / "run.json").write_text(json.dumps({"run_id": "abc123"}))
    for path in (run_dir, run_dir / "events.jsonl", run_dir / "old.jsonl", Path()):
        assert run_id_for(path) == "abc123"


def test_a_directory_without_a_log_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"run_id": "abc123"}))

    replayed = replay("http/protobuf", [str(tmp_path)])

    assert replayed.code == 2
    assert replayed.stderr == (
        f"esper: error: no event log in {tmp_path} "
        "(expected events.jsonl or events-rank<N>.jsonl)\n"
    )
    assert replayed.received.spans() == []


def test_progress_events_about_a_batch_stay_in_it_after_its_update() -> None:
    def logged(kind: EventType, batch: int | None = None) -> LoggedEvent:
        return LoggedEvent(TelemetryEvent(kind, data={} if batch is None else {"batch": batch}))

    update = logged(EventType.PPO_UPDATE_COMPLETED, 1)
    plateau = logged(EventType.PLATEAU_DETECTED, 1)
    later = logged(EventType.PLATEAU_DETECTED, 2)
    tail = logged(EventType.SEED_GERMINATED)
    assert list(batches([update, plateau, later, tail])) == [[update, plateau], [later, tail]]
