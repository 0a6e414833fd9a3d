"""`esper train --report`: the run's HTML report written in its directory when the run
ends, however it ends, named in the summary; refused before any work without plotly. A
report that cannot be written, or that a signal stops, is one line and leaves no file;
the summary and run.json follow, and a completed run then exits 3."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from filesystems import mounted_tmpfs
from report_logs import long_run_log
from run_files import run_dir, run_json
from signalled_runs import Cue, signalled_after_first_update, signalled_at

from app.cli import main
from app.cli.train import _write_report
from app.interrupts import StopRequest

SYNTHETIC = ("--dataset", "synthetic", "--envs", "2", "--episodes", "2", "--max-epochs", "3")
ENDLESS = ("--dataset", "synthetic", "--envs", "2", "--max-epochs", "3", "--episodes", "100000")
WRITING = "esper: writing the report (Ctrl-C skips it)"


def train_here(telemetry_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`esper train --report` of two synthetic episodes in this process; the exit code and
    stderr."""
    args = ["train", *SYNTHETIC, "--no-progress", "--telemetry-dir", str(telemetry_dir)]
    code = main([*args, "--report"])
    return code, capsys.readouterr().err


def named_in_summary(report: Path, err: str) -> bool:
    pattern = rf"\n  report: +{re.escape(str(report))} \(\d+\.\d MB, \d+ events\)\n"
    return re.search(pattern, err) is not None


@pytest.mark.slow
@pytest.mark.usefixtures("in_process_run_state")
def test_the_report_is_written_at_the_end_and_named_in_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = train_here(tmp_path, capsys)

    (run,) = tmp_path.glob("telemetry_*")
    page = (run / "report.html").read_text(encoding="utf-8")
    assert code == 0
    assert page.startswith("<!DOCTYPE html>")
    assert (run / "run.json").read_text().count('"completed"') == 1
    run_id = re.search(r"run id: +(\w+)", err)
    assert run_id is not None and run_id[1] in page
    assert err.index(WRITING) < err.index("esper: training completed")
    assert named_in_summary(run / "report.html", err)


def test_without_plotly_report_is_refused_before_any_work(tmp_path: Path) -> None:
    program = (
        "import sys; sys.modules['plotly'] = None\nfrom app.__main__ import main\nsys.exit(main())"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, "train", *SYNTHETIC, "--report"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr == "esper: error: --report needs plotly: pip install 'esper-otel[report]'\n"
    assert list(tmp_path.iterdir()) == []


def test_a_report_that_cannot_be_written_is_one_line_and_leaves_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "telemetry_2026-01-01_000000"
    run.mkdir()
    (run / "events.jsonl").write_text("")
    (run / "report.html").mkdir()  # the report's place is taken

    written = _write_report(run, StopRequest())

    assert written is None
    err = capsys.readouterr().err
    taken = run / "report.html"
    assert err == (
        f"{WRITING}\nesper: report not written: cannot write report to {taken}: it is a directory\n"
    )


@pytest.mark.slow
@pytest.mark.usefixtures("in_process_run_state")
def test_a_report_the_disk_cannot_hold_costs_a_completed_run_exit_code_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Room for the run's log and run.json (a few kB), not for its report (about 5 MB).
    with mounted_tmpfs(tmp_path / "disk", size=1 << 20) as disk:
        telemetry_dir = disk.path / "t"
        code, err = train_here(telemetry_dir, capsys)

        run = run_dir(telemetry_dir)
        assert code == 3, err
        reports = [line for line in err.splitlines() if "report not written" in line]
        assert reports == [
            f"esper: report not written: cannot write report to {run / 'report.html'}: "
            "No space left on device"
        ]
        assert sorted(path.name for path in run.iterdir()) == ["events.jsonl", "run.json"]
        assert run_json(telemetry_dir)["status"] == "completed"
        assert f"\n  report:    esper report {run}\n" in err


@pytest.mark.slow
@pytest.mark.usefixtures("in_process_run_state")
def test_a_defect_in_the_report_is_one_line_and_the_summary_follows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report that breaks (a defect: no input makes one, so it is injected)."""

    def broken(path: Path) -> None:
        raise RuntimeError("the page broke")

    monkeypatch.setattr("app.cli.train.write_report", broken)
    code, err = train_here(tmp_path, capsys)

    assert code == 3
    assert "\nesper: report not written: RuntimeError: the page broke\n" in err
    assert err.index("report not written") < err.index("esper: training completed")
    assert run_json(tmp_path)["status"] == "completed"


@pytest.mark.slow
def test_a_run_stopped_by_ctrl_c_still_writes_its_report(tmp_path: Path) -> None:
    telemetry_dir = tmp_path / "t"
    args = [*ENDLESS, "--no-progress", "--telemetry-dir", str(telemetry_dir), "--report"]
    code, err = signalled_after_first_update(args, tmp_path, signal.SIGINT)

    assert code == 130, err
    report = run_dir(telemetry_dir) / "report.html"
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "esper: training interrupted (Ctrl-C)" in err
    assert named_in_summary(report, err)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "verb"),
    [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_while_the_report_is_written_stops_it_and_the_summary_follows(
    tmp_path: Path, signum: int, verb: str
) -> None:
    telemetry_dir = tmp_path / "t"

    def a_long_history() -> None:
        # The older rotated log of a long run, which the report reads too: it then takes
        # seconds, and the signal sent on its first line finds it under way.
        made = long_run_log(tmp_path / "made", 30_000)
        shutil.copy(made / "events.jsonl", run_dir(telemetry_dir) / "events.jsonl.1")

    args = [*ENDLESS, "--no-progress", "--telemetry-dir", str(telemetry_dir), "--report"]
    cues = [Cue("ppo update", signal.SIGINT, a_long_history), Cue(WRITING, signum)]
    exit_code, err = signalled_at(args, tmp_path, cues)

    assert exit_code == 130, err  # the code of the signal that stopped the run
    run = run_dir(telemetry_dir)
    assert f"\nesper: report not written: {verb}\n" in err
    assert sorted(path.name for path in run.iterdir()) == [
        "events.jsonl",
        "events.jsonl.1",
        "run.json",
    ]
    assert run_json(telemetry_dir)["status"] == "interrupted"
    summary = err[err.index("esper: training interrupted (Ctrl-C)") :]
    assert f"\n  report:    esper report {run}\n" in summary
