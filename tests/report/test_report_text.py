"""What the report says in words: where its thresholds come from, counts with their nouns
("1 unreadable line", "2 events"), and anomalies that belong to no known batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from report_logs import RUN_RECORD, Clock, folded, two_batches, update, write_run

from app.cli import main
from app.contracts.events import EventType, Severity
from app.rl.anomaly import AnomalyThresholds
from instrumentation.report import ReportResult, write_report
from instrumentation.report.health import health_figure
from instrumentation.report.inputs import RecordedRun, thresholds
from instrumentation.report.tables import anomaly_rows, threshold_note

DEFAULTS = AnomalyThresholds()
DEFAULT_NOTE = (
    f"ratio explosion above {DEFAULTS.ratio_explosion:g}, ratio collapse below "
    f"{DEFAULTS.ratio_collapse:g}, value collapse below {DEFAULTS.value_collapse:g} "
    "(the defaults)."
)


@pytest.mark.parametrize(
    ("anomaly", "note"),
    [
        (
            {"ratio_explosion": 3.0, "ratio_collapse": 0.2, "value_collapse": -1.0},
            "ratio explosion above 3, ratio collapse below 0.2, value collapse below -1 "
            "(from run.json).",
        ),
        ({"ratio_explosion": "high", "ratio_collapse": None, "value_collapse": True}, DEFAULT_NOTE),
        ({}, DEFAULT_NOTE),
        ("not an object", DEFAULT_NOTE),
        (
            {"ratio_explosion": 3.0, "value_collapse": "NaN"},
            f"ratio explosion above 3 (from run.json), ratio collapse below "
            f"{DEFAULTS.ratio_collapse:g} (the default), value collapse below "
            f"{DEFAULTS.value_collapse:g} (the default).",
        ),
    ],
)
def test_the_thresholds_say_which_came_from_run_json(anomaly: Any, note: str) -> None:
    drawn = thresholds(RecordedRun({"config": {"anomaly": anomaly}}))

    assert threshold_note(drawn) == f"Thresholds drawn: {note}"


@pytest.mark.parametrize(
    ("count", "line", "left_out"),
    [(1, "1 unreadable line", "1 event left out"), (2, "2 unreadable lines", "2 events left out")],
)
def test_counts_meet_their_nouns(
    tmp_path: Path, count: int, line: str, left_out: str, capsys: pytest.CaptureFixture[str]
) -> None:
    c = Clock()
    unplaced = [c.event(EventType.PPO_UPDATE_COMPLETED, {"avg_accuracy": 1.0})] * count
    run = write_run(tmp_path, unplaced, {**RUN_RECORD, "config": {"max_epochs": 5}})
    with (run / "events.jsonl").open("ab") as log:
        log.write(b"{torn\n" * count)

    code = main(["report", str(run)])

    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.startswith(f"esper: skipped {line} (first: ")
    noun = "event" if count == 1 else "events"
    assert captured.out.endswith(f" MB, {count} {noun})\n")
    page = (run / "report.html").read_text(encoding="utf-8")
    assert f"({line} skipped)" in page
    assert f"<th>{line}</th>" in page
    assert f"{left_out} of the chart" in page
    assert "Configuration (1 setting)" in page


def test_a_result_describes_itself_in_one_line() -> None:
    one = ReportResult(Path("run/report.html"), 4_912_345, 1, 0, None)
    many = ReportResult(Path("run/report.html"), 12_000_000, 1019, 0, None)

    assert one.describe() == "run/report.html (4.9 MB, 1 event)"
    assert many.describe() == "run/report.html (12.0 MB, 1019 events)"


def _after_the_last_update() -> list[Any]:
    """two_batches, then a memory warning that no update follows."""
    c = Clock()
    c.ticks = len(two_batches()) + 1
    warning = c.event(EventType.MEMORY_WARNING, {"detail": "late"}, severity=Severity.WARNING)
    return [*two_batches(), warning]


def test_an_anomaly_in_no_batch_is_listed_but_not_drawn(tmp_path: Path) -> None:
    run = write_run(tmp_path, _after_the_last_update())
    history = folded(run)

    rows = {row[0].split(" ")[0]: row[1:] for row in anomaly_rows(history)}
    figure = health_figure(history.batches, list(history.anomalies.values()), DEFAULTS)

    assert rows["MEMORY_WARNING"] == ("1", "0", "—", "late")
    assert rows["RATIO_EXPLOSION_DETECTED"] == ("1", "1", "1", "ratio_max=6.100 &gt; 5.0")
    drawn = {(trace.name, x) for trace in figure.data if trace.mode == "markers" for x in trace.x}
    assert drawn == {("warning", 1), ("warning", 2)}  # batch 2: the gradient anomaly
    page = write_report(run).path.read_text(encoding="utf-8")
    assert "<td>1</td><td>0</td><td>—</td><td>late</td>" in page
    assert "<th>anomalies</th><td>4</td>" in page


def test_only_anomalies_in_no_batch_draw_no_anomaly_strip(tmp_path: Path) -> None:
    c = Clock()
    events = [
        update(c, 1),
        c.event(EventType.MEMORY_WARNING, {"detail": "late"}, severity=Severity.WARNING),
    ]
    history = folded(write_run(tmp_path, events))

    figure = health_figure(history.batches, list(history.anomalies.values()), DEFAULTS)

    assert [trace.name for trace in figure.data if trace.name == "anomaly"] == []
    assert not [trace for trace in figure.data if trace.mode == "markers"]
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert "anomalies (hover for the detail)" not in titles
