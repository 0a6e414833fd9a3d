"""The report page as a file: self-contained (plotly.js inlined once, nothing loaded from
elsewhere), every figure present, and text from the log shown, never run."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import plotly.offline
import pytest
from report_logs import RUN_RECORD, Clock, two_batches, write_run

from app.contracts.events import EventType, Severity, TelemetryEvent
from instrumentation.report import ReportError, write_report

FIGURES = ("figure-accuracy", "figure-health", "figure-seeds", "figure-events")
HOSTILE_SCRIPT = "</script><script>console.error('ran')</script>"
HOSTILE_IMAGE = "<img src=x onerror=\"console.error('ran')\">"
HOSTILE_LINK = '<a href="https://example.com/">link</a>'


class _Tags(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def hostile_events() -> list[TelemetryEvent]:
    """A run whose seed ids, blueprints, anomaly details and messages hold markup."""
    c = Clock()
    seed = f"env0_{HOSTILE_SCRIPT}"
    germinated = {"env_id": 0, "blueprint_id": HOSTILE_IMAGE}
    culled = {"env_id": 0, "blueprint_id": HOSTILE_IMAGE, "reason": HOSTILE_LINK}
    anomaly = {"detail": HOSTILE_SCRIPT + HOSTILE_IMAGE + HOSTILE_LINK}
    return [
        c.event(EventType.SEED_GERMINATED, germinated, epoch=1, seed_id=seed),
        c.event(
            EventType.SEED_STAGE_CHANGED, {"env_id": 0, "to": "TRAINING"}, epoch=1, seed_id=seed
        ),
        c.event(EventType.SEED_CULLED, culled, epoch=3, seed_id=seed, message=HOSTILE_IMAGE),
        c.event(EventType.VALUE_COLLAPSE_DETECTED, anomaly, severity=Severity.WARNING),
        c.event(EventType.PPO_UPDATE_COMPLETED, {"batch": 1, "avg_accuracy": 50.0}),
    ]


def hostile_run(tmp_path: Path) -> Path:
    record = {
        **RUN_RECORD,
        "run_id": HOSTILE_SCRIPT,
        HOSTILE_IMAGE: HOSTILE_LINK,
        "config": {"dataset": HOSTILE_SCRIPT, HOSTILE_LINK: 1},
    }
    return write_run(tmp_path, hostile_events(), record)


def test_a_report_holds_plotly_once_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    run = write_run(tmp_path, two_batches())

    result = write_report(run)

    assert result.path == run / "report.html"
    page = result.path.read_text(encoding="utf-8")
    assert result.size == len(page.encode("utf-8"))
    plotly_js = plotly.offline.get_plotlyjs()
    assert page.count(plotly_js[:2000]) == 1
    assert len(page) < len(plotly_js) + 400_000
    tags = _tags(page)
    scripts = [attributes for tag, attributes in tags if tag == "script"]
    assert len(scripts) == 1 + len(FIGURES)
    assert all("src" not in attributes for attributes in scripts)
    assert not [tag for tag, _ in tags if tag in ("link", "img", "iframe", "object", "embed")]
    loading = [a for _, attrs in tags for name, a in attrs.items() if name in ("src", "href")]
    assert loading == []
    assert "@import" not in page.split("</style>")[0]
    ids = {attributes.get("id") for _, attributes in tags}
    assert set(FIGURES) <= ids
    assert result.events == len(two_batches())


def test_text_from_the_log_is_escaped(tmp_path: Path) -> None:
    run = hostile_run(tmp_path)

    page = write_report(run).path.read_text(encoding="utf-8")

    for hostile in (HOSTILE_SCRIPT, HOSTILE_IMAGE, HOSTILE_LINK):
        assert hostile not in page
    tags = _tags(page)
    assert not [tag for tag, _ in tags if tag in ("img", "a")]
    assert len([tag for tag, _ in tags if tag == "script"]) == 1 + len(FIGURES)
    # Shown as text, in the tables and in the figures' hover labels alike. plotly's JSON
    # writes `<` as \u003c, and plotly renders tags in hover labels: no tag of the log
    # may reach a figure unescaped.
    assert page.count("&lt;/script&gt;&lt;script&gt;console.error") >= 4
    assert page.count("&lt;img src=x onerror=") >= 3
    for tag in ("\\u003cimg", "\\u003c/script", "\\u003ca href"):
        assert tag not in page


def test_a_log_without_updates_or_seeds_says_so(tmp_path: Path) -> None:
    c = Clock()
    events = [c.event(EventType.TAMIYO_INITIATED, {"env_id": 0}, epoch=4)]
    run = write_run(tmp_path, events, {"run_id": "quiet"})

    page = write_report(run).path.read_text(encoding="utf-8")

    assert "no batches in this log" in page
    assert "no PPO updates in this log" in page
    assert "no seed to draw in this log" in page
    assert "no configuration in run.json" in page
    ids = {attributes.get("id") for _, attributes in _tags(page)}
    assert ids & set(FIGURES) == {"figure-events"}


def test_a_heuristic_log_shows_each_episodes_final_accuracy(tmp_path: Path) -> None:
    events = [e for e in two_batches() if e.event_type is not EventType.PPO_UPDATE_COMPLETED]
    run = write_run(tmp_path, events)

    page = write_report(run).path.read_text(encoding="utf-8")

    assert "Accuracy per episode" in page
    assert "no PPO updates in this log" in page
    assert "figure-accuracy" in page
    assert "figure-health" not in page


def test_the_output_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    run = write_run(tmp_path, two_batches())
    (run / "report.html").write_text("the previous report")
    blocked = tmp_path / "file"
    blocked.write_text("")

    with pytest.raises(ReportError, match=r"cannot write report to .*: Not a directory"):
        write_report(run, blocked / "report.html")
    with pytest.raises(ReportError, match="it is a directory"):
        write_report(run, tmp_path)

    write_report(run)
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert sorted(path.name for path in run.iterdir()) == [
        "events.jsonl",
        "report.html",
        "run.json",
    ]


def test_every_key_of_run_json_is_shown_and_none_is_required(tmp_path: Path) -> None:
    record = {
        "run_id": "abc",
        "status": "completed",
        "final_accuracy": 47.916666666666664,
        "events_by_type": {"EPOCH_COMPLETED": 24, "PPO_UPDATE_COMPLETED": 2},
        "resumed_from": None,
        "config": {"max_epochs": 5, "ppo": {"clip_coef": 0.3, "action_prior": [1.0, -3.0]}},
    }
    shown = write_report(write_run(tmp_path / "full", two_batches(), record)).path
    bare = write_report(write_run(tmp_path / "bare", two_batches(), {"other": 1})).path

    page = shown.read_text(encoding="utf-8")
    for row in (
        "<th>run_id</th><td>abc</td>",
        "<th>status</th><td>completed</td>",
        "<th>final_accuracy</th><td>47.9167</td>",
        "<th>events_by_type</th><td>EPOCH_COMPLETED=24, PPO_UPDATE_COMPLETED=2</td>",
        "<th>resumed_from</th><td>null</td>",
    ):
        assert row in page
    assert "<span>ppo.clip_coef</span> = 0.3" in page
    assert "<span>ppo.action_prior</span> = [1, -3]" in page
    assert "Configuration (3 settings)" in page
    bare_page = bare.read_text(encoding="utf-8")
    assert "<th>other</th><td>1</td>" in bare_page
    assert "Esper run log" in bare_page  # no run id to name it by
