"""`run.json`, the record of a run (docs/events.md): written when the run starts, written
over atomically when it ends, whatever ended it, and a failure to write it over is one
line that keeps the run's output and its exit code honest."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import signalled_runs
from filesystems import mounted_tmpfs
from run_files import logged_events, run_dir, run_json

from app.cli import main
from app.cli.run_record import Ending, write_ended_record
from app.training.vectorized import Progress
from instrumentation.event_log import RunRecord, rewrite_run_file, write_run_file

SYNTHETIC = ("--dataset", "synthetic", "--envs", "2", "--max-epochs", "3", "--no-progress")
FIELDS = [
    "run_id",
    "processes",
    "status",
    "status_reason",
    "started_at",
    "ended_at",
    "telemetry_level",
    "final_accuracy",
    "final_reward",
    "events_by_type",
    "resumed_from",
    "config",
]


def utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text
    return moment


@pytest.mark.usefixtures("in_process_run_state")
def test_a_finished_run_records_how_it_went(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = datetime.now(UTC)
    args = ["train", *SYNTHETIC, "--episodes", "4", "--telemetry-dir", str(tmp_path / "t")]
    assert main(args) == 0, capsys.readouterr().err
    after = datetime.now(UTC)

    record = run_json(tmp_path / "t")
    assert list(record) == FIELDS
    records = logged_events(tmp_path / "t")
    last = [r for r in records if r["event_type"] == "PPO_UPDATE_COMPLETED"][-1]["data"]
    assert record["run_id"] in capsys.readouterr().err
    assert record["processes"] == 1
    assert (record["status"], record["status_reason"]) == ("completed", None)
    assert before <= utc(record["started_at"]) <= utc(record["ended_at"]) <= after
    assert record["telemetry_level"] == record["config"]["telemetry_level"] == "normal"
    assert record["final_accuracy"] == last["avg_accuracy"]
    assert record["final_reward"] == last["avg_reward"]
    assert record["events_by_type"] == dict(Counter(r["event_type"] for r in records))
    assert record["resumed_from"] is None
    assert record["config"]["episodes"] == 4 and record["config"]["dataset"] == "synthetic"


@pytest.mark.usefixtures("in_process_run_state")
def test_a_run_that_fails_records_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error inside training (a defect: no input makes one, so it is injected)."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the loop broke")

    monkeypatch.setattr("app.cli.train.train_batches", broken)
    args = ["train", *SYNTHETIC, "--episodes", "2", "--telemetry-dir", str(tmp_path / "t")]
    with pytest.raises(RuntimeError, match="the loop broke"):
        main(args)
    assert "esper: training failed" in capsys.readouterr().err
    record = run_json(tmp_path / "t")
    assert (record["status"], record["status_reason"]) == ("failed", "RuntimeError: the loop broke")
    assert record["ended_at"] is not None and record["final_accuracy"] is None


def signalled_after_first_update(
    telemetry_dir: Path, signum: int, before_signal: Callable[[], None] | None = None
) -> tuple[int, str]:
    """An endless `esper train` given `signum` once it printed its first PPO update (and
    `before_signal` ran); its exit code and stderr."""
    args = [*SYNTHETIC, "--episodes", "100000", "--telemetry-dir", str(telemetry_dir)]
    return signalled_runs.signalled_after_first_update(
        args, telemetry_dir.parent, signum, before_signal
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "status", "reason"),
    [(signal.SIGINT, 130, "interrupted", "Ctrl-C"), (signal.SIGTERM, 143, "terminated", "SIGTERM")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_stopped_run_records_what_stopped_it(
    tmp_path: Path, signum: int, code: int, status: str, reason: str
) -> None:
    exit_code, err = signalled_after_first_update(tmp_path / "t", signum)
    assert exit_code == code, err
    record = run_json(tmp_path / "t")
    assert (record["status"], record["status_reason"]) == (status, reason)
    assert utc(record["started_at"]) <= utc(record["ended_at"])
    assert record["final_accuracy"] is not None
    assert record["events_by_type"] == dict(
        Counter(r["event_type"] for r in logged_events(tmp_path / "t"))
    )


@pytest.mark.slow
def test_a_run_json_the_full_disk_refuses_is_one_line_and_the_rest_is_kept(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", size=4 << 20) as disk:
        telemetry_dir = disk.path / "t"
        code, err = signalled_after_first_update(telemetry_dir, signal.SIGINT, disk.fill)
        run_file = run_dir(telemetry_dir) / "run.json"
        assert code == 130, err  # a signal's code, as for any other output lost
        reports = [line for line in err.splitlines() if line.startswith("esper: cannot rewrite")]
        assert reports == [
            f"esper: cannot rewrite {run_file} with how the run ended: No space left on "
            "device; it still holds the record of its start"
        ]
        assert "esper: training interrupted (Ctrl-C)" in err
        assert json.loads(run_file.read_text())["status"] == "running"
        assert sorted(p.name for p in run_file.parent.iterdir()) == ["events.jsonl", "run.json"]
        # The log keeps what reached the disk, each line whole, and counts what did not.
        logged_events(telemetry_dir)  # raises on a torn line
        assert "  log loss:  " in err


@pytest.mark.slow
def test_a_run_of_two_processes_records_the_events_of_both(tmp_path: Path) -> None:
    telemetry_dir = tmp_path / "t"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    torchrun += ["--nproc-per-node=2", "-m", "app", "train"]
    done = subprocess.run(
        [*torchrun, *SYNTHETIC, "--episodes", "2", "--telemetry-dir", str(telemetry_dir)],
        cwd=tmp_path,
        env={key: value for key, value in os.environ.items() if not key.startswith("OTEL_")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    record = run_json(telemetry_dir)
    assert (record["processes"], record["status"]) == (2, "completed")
    ranks = sorted(run_dir(telemetry_dir).glob("events*.jsonl"))
    assert [path.name for path in ranks] == ["events-rank1.jsonl", "events.jsonl"]
    lines = [line for path in ranks for line in path.read_text().splitlines()]
    logged = Counter(json.loads(line)["event_type"] for line in lines)
    assert record["events_by_type"] == dict(logged)
    assert logged["EPOCH_COMPLETED"] == 2 * 3  # one episode of three epochs on each rank


def test_docs_describe_every_key_in_its_order() -> None:
    events_md = Path(__file__).resolve().parents[2] / "docs" / "events.md"
    section = events_md.read_text().split("### run.json", 1)[1].split("\n### ", 1)[0]
    keys = [
        key
        for row in re.findall(r"^\| (`.+?`) \|", section, re.M)
        for key in re.findall(r"`(\w+)`", row)
    ]
    assert keys == FIELDS == [item.name for item in fields(RunRecord)]


# --- writing run.json over -------------------------------------------------------------------


def _record() -> RunRecord:
    return RunRecord(
        run_id="abc",
        processes=1,
        started_at="2025-01-01T00:00:00+00:00",
        telemetry_level="normal",
        resumed_from=None,
        config={"envs": 2},
    )


def test_rewriting_replaces_the_record_whole_in_strict_json(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_run_file(path, _record().document())
    mode = stat.S_IMODE(path.stat().st_mode)
    ended = replace(_record(), status="completed", final_reward=float("nan"))
    rewrite_run_file(path, ended.document())

    def refuse(name: str) -> None:
        raise AssertionError(f"non-strict JSON constant {name}")

    written = json.loads(path.read_text(), parse_constant=refuse)
    assert written == {**asdict(ended), "final_reward": "NaN"}
    assert stat.S_IMODE(path.stat().st_mode) == mode  # a reader of the first can read it
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_on_a_full_disk_the_record_of_the_start_stays_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with mounted_tmpfs(tmp_path / "disk", size=1 << 20) as disk:
        path = disk.path / "run.json"
        write_run_file(path, _record().document())
        start = path.read_bytes()
        disk.fill()
        with pytest.raises(OSError, match="No space left on device"):
            rewrite_run_file(path, {**_record().document(), "status": "completed"})
        assert path.read_bytes() == start
        assert [p.name for p in disk.path.iterdir() if p.name.startswith(".")] == []

        # A completed run then ends with exit code 3; a stopped one keeps its signal's.
        completed = write_ended_record(
            disk.path, _record(), Ending("completed", 0), Progress(), Counter()
        )
        interrupted = write_ended_record(
            disk.path, _record(), Ending("interrupted", 130, "Ctrl-C"), Progress(), Counter()
        )
        assert (completed, interrupted) == (3, 130)
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 2 and all(line.startswith("esper: cannot rewrite") for line in lines)
        assert path.read_bytes() == start
