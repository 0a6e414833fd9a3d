"""`esper report`: on a real run's directory, on the original system's log, with -o, and
its bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from report_logs import two_batches, write_run

from app.cli import main


def esper(*args: str, cwd: Path, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """`esper ARGS` in a process of its own; prelude runs first (to take plotly away)."""
    program = f"{prelude}\nimport sys\nfrom app.__main__ import main\nsys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _report(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["report", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_report_of_a_real_run(real_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(real_run, tmp_path / real_run.name))

    done = esper("report", str(run), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"{run / 'report.html'} (")
    assert line.endswith(" events)")
    page = (run / "report.html").read_text(encoding="utf-8")
    for figure in ("accuracy", "health", "seeds", "events"):
        assert f'id="figure-{figure}"' in page
    run_id = json.loads((run / "run.json").read_text())["run_id"]
    assert f"<title>Esper run {run_id}</title>" in page
    assert "epoch of the environment" in page


def test_report_of_the_legacy_log_beside_it(
    tmp_path: Path, legacy_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = Path(shutil.copy(legacy_log, tmp_path))

    code, out, err = _report([str(log)], capsys)

    assert (code, err) == (0, "")
    output = tmp_path / "legacy-events-2025-12-06-report.html"
    assert out.strip() == f"{output} ({output.stat().st_size / 1e6:.1f} MB, 170 events)"
    page = output.read_text(encoding="utf-8")
    assert "seconds since the log's first event" in page
    assert "no run.json beside the log" in page


def test_output_flag_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path, two_batches())
    output = tmp_path / "elsewhere.html"

    code, out, _ = _report([str(run), "-o", str(output)], capsys)

    assert code == 0
    assert out.startswith(f"{output} (")
    assert output.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not (run / "report.html").exists()


def test_unreadable_lines_are_counted_on_one_stderr_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path, two_batches())
    with (run / "events.jsonl").open("ab") as log:
        log.write(b"{torn\nnot json either\n")

    code, out, err = _report([str(run)], capsys)

    assert code == 0
    assert err.count("\n") == 1
    assert err.startswith("esper: skipped 2 unreadable lines (first: ")
    assert f"events.jsonl:{len(two_batches()) + 1}: invalid JSON" in err
    assert "2 unreadable lines skipped" in (run / "report.html").read_text(encoding="utf-8")
    assert out.startswith(str(run / "report.html"))


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("missing", "cannot read event log {tmp}/missing: No such file or directory"),
        ("empty", "no event log in {tmp}/empty (expected events.jsonl or events-rank<N>.jsonl)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, target: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()

    code, out, err = _report([str(tmp_path / target)], capsys)

    assert (code, out) == (2, "")
    assert err == f"esper: error: {problem.format(tmp=tmp_path)}\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty"]


def test_an_unwritable_output_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path, two_batches())
    output = tmp_path / "no" / "such" / "report.html"

    code, out, err = _report([str(run), "-o", str(output)], capsys)

    assert (code, out) == (2, "")
    assert err == f"esper: error: cannot write report to {output}: No such file or directory\n"
    assert sorted(path.name for path in run.iterdir()) == ["events.jsonl", "run.json"]


def test_without_plotly_the_report_names_the_extra_and_other_commands_work(
    tmp_path: Path,
) -> None:
    run = write_run(tmp_path, two_batches())
    no_plotly = "import sys; sys.modules['plotly'] = None"

    done = esper("report", str(run), cwd=tmp_path, prelude=no_plotly)
    helped = esper("report", "--help", cwd=tmp_path, prelude=no_plotly)

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "esper: error: esper report needs plotly: pip install 'esper-otel[report]'\n"
    )
    assert not (run / "report.html").exists()
    assert helped.returncode == 0
    assert "opens offline" in helped.stdout
