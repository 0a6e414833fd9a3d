"""The summary's own wording: counts in the singular and the plural, a run whose hosts
never stabilized (to its end, or before it stopped), and the closing lines that say where
to look (the report command, Jaeger's search and the Grafana dashboards of the compose
stack, linked only when the run's telemetry reached them, over the run's own time)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from receivers import HttpReceiver
from run_files import run_json
from signalled_runs import Cue, signalled_after_first_update, signalled_at

from app.cli import main
from app.cli.summary import events_part, latch_line, lost_ranks_line
from app.cli.where_to_look import (
    DASHBOARDS,
    GRAFANA_URL,
    JAEGER_URL,
    MARGIN_S,
    RUN_VARIABLE,
    RunWindow,
    where_to_look,
)
from app.control.tracker import SignalTracker, TrackerConfig
from app.plurals import counted
from app.training.config import RunConfig
from instrumentation.otel import configure_opentelemetry
from instrumentation.otel.summary import OtlpTargets, otlp_targets

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "0123456789abcdef"
WINDOW = RunWindow(start_s=1_700_000_000.0, end_s=1_700_000_100.0)
BOTH = OtlpTargets("esper-training", traces=True, metrics=True)

pytestmark = pytest.mark.usefixtures("in_process_run_state")


# --- counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("noun", "plural", "expected"),
    [
        ("batch", "batches", ("0 batches", "1 batch", "2 batches")),
        ("event", None, ("0 events", "1 event", "2 events")),
        ("host step", None, ("0 host steps", "1 host step", "2 host steps")),
        ("memory sample", None, ("0 memory samples", "1 memory sample", "2 memory samples")),
        ("decision", None, ("0 decisions", "1 decision", "2 decisions")),
        ("epoch", None, ("0 epochs", "1 epoch", "2 epochs")),
    ],
)
def test_a_count_agrees_with_its_noun(
    noun: str, plural: str | None, expected: tuple[str, str, str]
) -> None:
    assert tuple(counted(number, noun, plural) for number in (0, 1, 2)) == expected


def test_the_events_part_says_none_rather_than_an_empty_list() -> None:
    assert events_part(0, Counter()) == "none"
    assert events_part(1, Counter({"EPOCH_COMPLETED": 1})) == "1 (EPOCH_COMPLETED=1)"
    two = Counter({"PPO_UPDATE_COMPLETED": 1, "EPOCH_COMPLETED": 1})
    assert events_part(2, two) == "2 (EPOCH_COMPLETED=1, PPO_UPDATE_COMPLETED=1)"


def test_ranks_that_sent_no_summary_are_named_in_the_right_number() -> None:
    assert lost_ranks_line([1]) == "  rank 1 sent no summary: its counts are left out"
    assert lost_ranks_line([1, 2]) == "  ranks 1, 2 sent no summary: their counts are left out"


# --- a run that ended before any host stabilized --------------------------------------------


@pytest.mark.parametrize("stable_epochs", [1, 3])
def test_the_latch_fires_one_epoch_after_its_stable_epochs_at_the_earliest(
    stable_epochs: int,
) -> None:
    """What the summary says of the latch: epoch 1 has no previous loss to compare with,
    so K stable epochs in a row end at epoch K + 1 at the earliest."""
    tracker = SignalTracker(TrackerConfig(stabilization_epochs=stable_epochs))
    latched = [
        tracker.update(epoch, 1.0, 50.0, 1.0, 50.0).host_stabilized
        for epoch in range(1, stable_epochs + 3)
    ]
    assert latched.index(True) + 1 == stable_epochs + 1


def summary_of(args: Sequence[str], telemetry_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """The summary of `esper train ARGS`, run in this process on synthetic data."""
    base = ["train", "--dataset", "synthetic", "--envs", "2", "--episodes", "2"]
    code = main([*base, *args, "--no-progress", "--telemetry-dir", str(telemetry_dir)])
    assert code == 0
    err = capsys.readouterr().err
    return err[err.index("esper: training completed") :]


@pytest.mark.slow
def test_a_run_too_short_for_the_latch_says_so_instead_of_ppo_zeros(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = summary_of(["--max-epochs", "3"], tmp_path, capsys)
    assert (
        "  latch:     no host stabilized within 3 epochs (the tracker needs 3 stable epochs "
        "in a row after epoch 1, so epoch 4 at the earliest): no seed was germinated\n"
    ) in summary
    assert (
        "  ppo:       no decision to learn from: WAIT was the only action open before a "
        "host stabilized\n"
    ) in summary
    assert "entropy" not in summary
    assert "  episodes:  2 in 1 batch\n" in summary
    assert "(last batch, 4 decisions)" in summary


def test_a_stopped_run_says_how_far_its_episodes_got_without_a_host_stabilizing() -> None:
    config = RunConfig(max_epochs=22)
    assert latch_line(config, stopped_after=2) == (
        "  latch:     no host stabilized before the run stopped, after 2 epochs (of 22 per "
        "episode; the tracker needs 3 stable epochs in a row after epoch 1, so epoch 4 at "
        "the earliest): no seed was germinated"
    )
    assert "after 1 epoch (of 22" in latch_line(config, stopped_after=1)
    assert latch_line(config, stopped_after=None).startswith(
        "  latch:     no host stabilized within 22 epochs (the tracker needs"
    )


@pytest.mark.slow
def test_a_run_interrupted_before_any_host_stabilized_says_so(tmp_path: Path) -> None:
    args = ["--dataset", "synthetic", "--envs", "2", "--max-epochs", "3"]
    args += ["--episodes", "100000", "--no-progress", "--telemetry-dir", str(tmp_path / "t")]
    code, err = signalled_after_first_update(args, tmp_path, signal.SIGINT)
    assert code == 130, err
    summary = err[err.index("esper: training interrupted (Ctrl-C)") :]
    # A whole batch ran before the signal: its episodes reached their last epoch.
    assert (
        "  latch:     no host stabilized before the run stopped, after 3 epochs (of 3 per "
        "episode; the tracker needs 3 stable epochs in a row after epoch 1, so epoch 4 at "
        "the earliest): no seed was germinated\n"
    ) in summary
    assert "SEED_GERMINATED" not in summary and "  seeds:" not in summary
    assert "  ppo:       no decision to learn from" in summary


@pytest.mark.slow
def test_a_run_interrupted_in_its_first_episodes_says_how_far_they_got(tmp_path: Path) -> None:
    telemetry_dir = tmp_path / "t"
    args = ["--dataset", "synthetic", "--envs", "2", "--max-epochs", "10", "--episodes", "2"]
    args += ["--no-progress", "--verbose", "--telemetry-dir", str(telemetry_dir)]
    code, err = signalled_at(args, tmp_path, [Cue('"env 0 epoch 1"')])
    assert code == 130, err

    epochs = run_json(telemetry_dir)["events_by_type"]["EPOCH_COMPLETED"] // 2
    assert 1 <= epochs < 10, err  # stopped at an epoch boundary within the first episodes
    summary = err[err.index("esper: training interrupted (Ctrl-C)") :]
    assert (
        f"  latch:     no host stabilized before the run stopped, after "
        f"{counted(epochs, 'epoch')} (of 10 per episode; "
    ) in summary
    assert "  ppo:" not in summary  # no update ran


@pytest.mark.slow
def test_the_latch_settings_are_the_runs_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--max-epochs", "3", "--set", "tracker.stabilization_epochs=5"]
    summary = summary_of(args, tmp_path, capsys)
    assert "the tracker needs 5 stable epochs in a row after epoch 1, so epoch 6" in summary


@pytest.mark.slow
def test_a_run_whose_hosts_stabilized_shows_the_last_updates_statistics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Synthetic hosts stabilize at epoch 4, the earliest the default tracker allows.
    summary = summary_of(["--max-epochs", "6"], tmp_path, capsys)
    assert "latch:" not in summary
    (ppo,) = [line for line in summary.splitlines() if line.startswith("  ppo:")]
    assert ppo.startswith("  ppo:       entropy ") and ppo.endswith("(last update)")
    assert not ppo.startswith("  ppo:       entropy 0.000,")


@pytest.mark.slow
def test_a_run_at_telemetry_level_off_claims_nothing_about_the_latch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without events the summary cannot tell whether a host stabilized."""
    summary = summary_of(["--max-epochs", "3", "--telemetry-level", "off"], tmp_path, capsys)
    assert "latch:" not in summary and "no decision" not in summary
    assert "  events:    none\n" in summary


# --- where to look --------------------------------------------------------------------------


def query_of(url: str) -> dict[str, str]:
    return {key: value for key, (value,) in parse_qs(urlsplit(url).query).items()}


def link_of(lines: list[str], label: str) -> str:
    (line,) = [line for line in lines if line.startswith(f"  {label}")]
    return line.split()[-1]


def test_the_report_command_names_the_run_directory_quoted_for_a_shell() -> None:
    lines = where_to_look(Path("telemetry/my runs/x"), RUN_ID, BOTH, WINDOW, {})
    assert lines[0] == "  report:    esper report 'telemetry/my runs/x'"


def test_without_otlp_export_only_the_report_line_is_printed() -> None:
    nothing = OtlpTargets("esper-training", traces=False, metrics=False)
    lines = where_to_look(Path("t/run"), RUN_ID, nothing, WINDOW, {})
    assert lines == ["  report:    esper report t/run"]


def test_jaeger_search_finds_the_runs_traces_by_service_and_run_id() -> None:
    only_traces = OtlpTargets("my service", traces=True, metrics=False)
    lines = where_to_look(Path("t/run"), RUN_ID, only_traces, WINDOW, {})
    assert [line.split()[0] for line in lines] == ["report:", "jaeger:"]
    url = link_of(lines, "jaeger:")
    assert url.startswith(f"{JAEGER_URL}/search?")
    query = query_of(url)
    assert query["service"] == "my service"
    assert json.loads(query["tags"]) == {"esper.run_id": RUN_ID}
    assert query["lookback"] == "custom"
    start_us, end_us = int(query["start"]), int(query["end"])
    assert start_us == (WINDOW.start_s - MARGIN_S) * 1e6
    assert end_us == (WINDOW.end_s + MARGIN_S) * 1e6


def test_grafana_opens_every_dashboard_with_the_run_selected() -> None:
    only_metrics = OtlpTargets("esper-training", traces=False, metrics=True)
    lines = where_to_look(Path("t/run"), RUN_ID, only_metrics, WINDOW, {})
    assert lines[1].startswith("  grafana:   ")
    urls = [line.split()[-1] for line in lines[1:]]
    assert [urlsplit(url).path for url in urls] == [f"/d/{uid}" for uid in DASHBOARDS]
    for url in urls:
        assert url.startswith(f"{GRAFANA_URL}/d/")
        query = query_of(url)
        assert query[f"var-{RUN_VARIABLE}"] == RUN_ID
        assert int(query["from"]) == (WINDOW.start_s - MARGIN_S) * 1000
        assert int(query["to"]) == (WINDOW.end_s + MARGIN_S) * 1000


def test_base_urls_come_from_the_environment_without_their_credentials() -> None:
    environ = {
        "ESPER_JAEGER_URL": "https://ops:hunter22@jaeger.example/ui/",
        "ESPER_GRAFANA_URL": "http://grafana.example:3000",
    }
    lines = where_to_look(Path("t/run"), RUN_ID, BOTH, WINDOW, environ)
    assert link_of(lines, "jaeger:").startswith("https://***@jaeger.example/ui/search?")
    assert link_of(lines, "grafana:").startswith("http://grafana.example:3000/d/")
    assert all("hunter22" not in line for line in lines)


def test_the_dashboards_named_are_the_provisioned_ones_with_a_run_variable() -> None:
    found = {}
    for path in (ROOT / "grafana" / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        found[dashboard["uid"]] = [v["name"] for v in dashboard["templating"]["list"]]
    assert sorted(found) == sorted(DASHBOARDS)
    assert all(RUN_VARIABLE in variables for variables in found.values())


def test_the_default_addresses_are_the_compose_stacks_published_ports() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    published = {
        service: [port.split(":")[1] for port in spec.get("ports", [])]
        for service, spec in compose["services"].items()
    }
    assert str(urlsplit(JAEGER_URL).port) in published["jaeger"]
    assert str(urlsplit(GRAFANA_URL).port) in published["grafana"]


@pytest.fixture
def otel_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTEL_* variable of the machine; the test sets its own."""
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


def exported_to(receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch, **more: str) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    for name, value in more.items():
        monkeypatch.setenv(name, value)


def targets_after_one_span() -> OtlpTargets:
    """Where a session of the environment's settings sent one span and its metrics."""
    session = configure_opentelemetry(RUN_ID, install_globally=False)
    assert session.tracer_provider is not None
    session.tracer_provider.get_tracer("test").start_span("esper.run").end()
    session.shutdown(timeout_s=5)
    return otlp_targets(session)


def test_without_otlp_nothing_reached_an_endpoint(otel_environment: pytest.MonkeyPatch) -> None:
    assert targets_after_one_span() == OtlpTargets("esper-training", False, False)
    otel_environment.setenv("OTEL_TRACES_EXPORTER", "console")
    otel_environment.setenv("OTEL_METRICS_EXPORTER", "none")
    assert targets_after_one_span() == OtlpTargets("esper-training", False, False)


def test_what_reached_the_collector_is_where_the_telemetry_went(
    otel_environment: pytest.MonkeyPatch, receiver: HttpReceiver
) -> None:
    exported_to(receiver, otel_environment)
    assert targets_after_one_span() == OtlpTargets("esper-training", True, True)
    exported_to(receiver, otel_environment, OTEL_METRICS_EXPORTER="none", OTEL_SERVICE_NAME="lab-7")
    assert targets_after_one_span() == OtlpTargets("lab-7", True, False)


def test_a_collector_that_refused_everything_received_nothing(
    otel_environment: pytest.MonkeyPatch, receiver: HttpReceiver
) -> None:
    receiver.fail_with = 401  # a collector that does not take the run's credentials
    exported_to(receiver, otel_environment)
    assert targets_after_one_span() == OtlpTargets("esper-training", False, False)
    assert receiver.attempts["traces"] >= 1 and receiver.attempts["metrics"] >= 1


def train_exported(
    telemetry_dir: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """`esper train` of two synthetic episodes in this process, with the environment's
    OTLP settings; the exit code and the summary."""
    base = ["train", "--dataset", "synthetic", "--envs", "2", "--episodes", "2"]
    base += ["--max-epochs", "3", "--no-progress", "--telemetry-dir", str(telemetry_dir)]
    code = main([*base, *args])
    err = capsys.readouterr().err
    return code, err[err.index("esper: training ") :]


@pytest.mark.slow
@pytest.mark.usefixtures("in_process_run_state")
def test_the_links_cover_the_run_from_its_start_however_late_it_ends(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    otel_environment: pytest.MonkeyPatch,
    receiver: HttpReceiver,
) -> None:
    exported_to(receiver, otel_environment)
    before_s = time.time()
    # The report, written after training and the export, ends the run a second or more
    # after its training did.
    code, summary = train_exported(tmp_path, capsys, "--report")
    after_s = time.time()
    assert code == 0, summary

    lines = summary.splitlines()
    jaeger, grafana = query_of(link_of(lines, "jaeger:")), query_of(link_of(lines, "grafana:"))
    start_s = int(jaeger["start"]) / 1e6 + MARGIN_S
    end_s = int(jaeger["end"]) / 1e6 - MARGIN_S
    assert (int(grafana["from"]), int(grafana["to"])) == (
        int((start_s - MARGIN_S) * 1000),
        int((end_s + MARGIN_S) * 1000),
    )
    spans = receiver.spans()
    first_s = min(span.start_time_unix_nano for span in spans) / 1e9
    last_s = max(span.end_time_unix_nano for span in spans) / 1e9
    assert before_s <= start_s <= first_s, (before_s, start_s, first_s)
    assert last_s <= end_s <= after_s, (last_s, end_s, after_s)


@pytest.mark.slow
@pytest.mark.usefixtures("in_process_run_state")
def test_no_link_leads_where_no_span_or_metric_arrived(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    otel_environment: pytest.MonkeyPatch,
    receiver: HttpReceiver,
) -> None:
    receiver.fail_with = 401
    exported_to(receiver, otel_environment)
    code, summary = train_exported(tmp_path, capsys)

    assert code == 0, summary
    assert "traces " in summary and " lost (export failed: " in summary
    assert summary.splitlines()[-1].startswith("  report:    esper report ")
    assert "jaeger:" not in summary and "grafana:" not in summary
