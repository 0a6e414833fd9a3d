"""The `esper` command line end to end: the event log it writes, its summary and progress
bar, bad input, checkpoints, signals and determinism (docs/events.md)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import PPO_FIELDS, read_log
from signalled_runs import signalled_after_first_update

from app.cli import main
from app.contracts.events import RECORD_KEYS, EventType, Severity, TelemetryEvent
from instrumentation.sinks import ConsoleSink

# Fast runs for everything but the full-size run through the console script.
SYNTHETIC = ("--dataset", "synthetic", "--envs", "2", "--max-epochs", "3", "--no-progress")
RUN_DIR = re.compile(r"telemetry_\d{4}-\d{2}-\d{2}_\d{6}(_\d+)?")


pytestmark = pytest.mark.usefixtures("in_process_run_state")


def esper(args: Sequence[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGS` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def esper_here(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`app.cli.main(ARGS)` in this process; returns the exit code and stderr."""
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capsys.readouterr().err


def only_log(telemetry_dir: Path) -> Path:
    logs = list(telemetry_dir.glob("telemetry_*/events.jsonl"))
    assert len(logs) == 1, f"expected one events.jsonl under {telemetry_dir}, found {logs}"
    assert RUN_DIR.fullmatch(logs[0].parent.name)
    return logs[0]


def _no_bare_constants(name: str) -> Any:
    raise AssertionError(f"non-strict JSON constant {name} in the log")


def strict_records(path: Path) -> list[dict[str, Any]]:
    """Every line of the log as a record, checked against the JSONL line contract."""
    text = path.read_text(encoding="ascii")
    assert text == "" or text.endswith("\n"), "the last line is incomplete"
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        record = json.loads(line, parse_constant=_no_bare_constants)
        assert json.dumps(record) == line, f"line {number} is not in the canonical format"
        keys = list(record)
        assert tuple(keys[: len(RECORD_KEYS)]) == RECORD_KEYS, f"line {number}: {keys}"
        assert keys[len(RECORD_KEYS) :] in ([], ["trace_id", "span_id"]), f"line {number}"
        if "trace_id" in record:
            assert re.fullmatch(r"[0-9a-f]{32}", record["trace_id"])
            assert re.fullmatch(r"[0-9a-f]{16}", record["span_id"])
        assert record["timestamp"].endswith("+00:00")
        assert record["severity"] in {s.value for s in Severity}
        records.append(record)
    # The project's own reader accepts every line.
    errors: list[Any] = []
    assert len(list(read_log(path, on_error=errors.append))) == len(records)
    assert errors == []
    return records


def of_type(records: list[dict[str, Any]], event_type: EventType) -> list[dict[str, Any]]:
    return [r for r in records if r["event_type"] == event_type.value]


def run_id_of(log: Path) -> str:
    run_id: str = json.loads((log.parent / "run.json").read_text())["run_id"]
    return run_id


# --- a full-size run through the console script ----------------------------------------------


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("esper")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "app"]


# Long enough after the stabilization latch (epoch 10-12) for the policy to grow seeds
# whatever its random draws.
MAX_EPOCHS = 18


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--recurrent"]], ids=["feedforward", "recurrent"])
def test_train_writes_a_complete_strict_event_log_and_a_summary(
    tmp_path: Path, extra: list[str]
) -> None:
    telemetry_dir = tmp_path / "telemetry"
    command = [
        *_console_script(),
        "train",
        "--envs",
        "2",
        "--episodes",
        "4",
        "--max-epochs",
        str(MAX_EPOCHS),
        "--seed",
        "1",
        "--no-progress",
        "--telemetry-dir",
        str(telemetry_dir),
        *extra,
    ]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr

    log = only_log(telemetry_dir)
    records = strict_records(log)
    types = {r["event_type"] for r in records}
    required = {
        EventType.PPO_UPDATE_COMPLETED,
        EventType.EPOCH_COMPLETED,
        EventType.SEED_GERMINATED,
        EventType.SEED_STAGE_CHANGED,
        EventType.TAMIYO_INITIATED,
    }
    assert {t.value for t in required} <= types, f"missing {required - types}"
    updates = of_type(records, EventType.PPO_UPDATE_COMPLETED)
    assert [u["data"]["batch"] for u in updates] == [1, 2]
    assert [u["data"]["episodes_completed"] for u in updates] == [2, 4]
    for update in updates:
        assert all(name in update["data"] for name in PPO_FIELDS)
    assert len(of_type(records, EventType.EPOCH_COMPLETED)) == 4 * MAX_EPOCHS
    for initiated in of_type(records, EventType.TAMIYO_INITIATED):
        data = initiated["data"]
        assert {"env_id", "epoch", "stable_count", "stabilization_epochs", "val_loss"} <= set(data)

    # The final summary names the run, the log, accuracy, reward and events by type.
    summary = done.stderr[done.stderr.index("esper: training completed") :]
    assert run_id_of(log) in summary
    assert str(log) in summary
    last = updates[-1]["data"]
    assert f"{last['avg_accuracy']:.2f}%" in summary
    assert f"{last['avg_reward']:.3f}" in summary
    assert "episodes:  4 in 2 batches" in summary
    assert f"PPO_UPDATE_COMPLETED={len(updates)}" in summary
    assert f"EPOCH_COMPLETED={4 * MAX_EPOCHS}" in summary

    # What the policy did: every command of the last batch, and how every seed ended.
    last_batch = records[records.index(updates[0]) + 1 :]
    commands = Counter(r["data"]["action"] for r in of_type(last_batch, EventType.COMMAND_ISSUED))
    decisions = 2 * (MAX_EPOCHS - 1)
    assert f"(last batch, {decisions} decisions)" in summary
    for action, count in commands.items():
        assert f"{action} {count} (" in summary, action
    waits = decisions - sum(commands.values())
    assert (f"WAIT {waits} (" in summary) == (waits > 0)
    for outcome, event_type in (
        ("fossilized", EventType.SEED_FOSSILIZED),
        ("culled", EventType.SEED_CULLED),
    ):
        ended = Counter(r["data"]["blueprint_id"] for r in of_type(records, event_type))
        tally = ", ".join(f"{blueprint}={n}" for blueprint, n in sorted(ended.items()))
        assert (f"{outcome} {tally}" in summary) if ended else (outcome not in summary)
    assert "--controller static measures it" in summary


# --- summary and progress -------------------------------------------------------------------


def test_progress_bar_appears_unless_disabled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", *SYNTHETIC, "--episodes", "4", "--telemetry-dir", str(tmp_path / "t")]
    code, quiet = esper_here(args, capsys)
    assert code == 0
    assert "it/s" not in quiet and "episode/s" not in quiet and "s/episode" not in quiet

    code, shown = esper_here([a for a in args if a != "--no-progress"], capsys)
    assert code == 0
    assert "4/4" in shown
    assert "episode/s" in shown or "s/episode" in shown
    # The summary comes after the bar and still names the run's log.
    assert "esper: training completed" in shown
    assert "event log:" in shown and "run id:" in shown


# --- bad input ------------------------------------------------------------------------------


def _garbage(path: Path) -> Path:
    path.write_bytes(bytes(range(256)) * 4)
    return path


def _heuristic_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    checkpoint = tmp_path / "heuristic.pt"
    args = [
        "train",
        *SYNTHETIC,
        "--controller",
        "heuristic",
        "--episodes",
        "2",
        "--save",
        str(checkpoint),
        "--telemetry-dir",
        str(tmp_path / "first"),
    ]
    assert esper_here(args, capsys)[0] == 0
    return checkpoint


BAD_INPUT = [
    pytest.param(["--envs", "0"], "--envs", id="envs-0"),
    pytest.param(["--episodes", "-1"], "--episodes", id="episodes-negative"),
    pytest.param(["--max-epochs", "1"], "--max-epochs", id="max-epochs-1"),
    pytest.param(["--envs", "two"], "--envs", id="envs-not-a-number"),
    pytest.param(["--dataset", "nope"], "nope", id="unknown-dataset"),
    pytest.param(["--controller", "nope"], "nope", id="unknown-controller"),
    pytest.param(["--dataset", "cifar10"], "--data-dir", id="cifar10-without-data-dir"),
    pytest.param(["--dataset", "cifar10", "--data-dir", "{empty}"], "{empty}", id="cifar10-empty"),
    pytest.param(["--resume", "{missing}"], "{missing}", id="resume-missing"),
    pytest.param(["--resume", "{garbage}"], "corrupt", id="resume-garbage"),
    pytest.param(["--resume", "{empty}"], "is a directory", id="resume-directory"),
    pytest.param(["--resume", "/dev/zero"], "is not a regular file", id="resume-dev-zero"),
    pytest.param(
        ["--dataset", "synthetic", "--resume", "{heuristic}", "--controller", "ppo"],
        "controller",
        id="resume-other-controller",
    ),
    pytest.param(["--device", "cuda"], "cuda", id="device-cuda"),
    pytest.param(["--device", "gpu"], "gpu", id="device-unknown"),
    pytest.param(["--device", "mps"], "mps", id="device-not-built-in"),
    pytest.param(["--seed", "-1"], "--seed", id="seed-negative"),
    pytest.param(["--seed", str(2**64)], "--seed", id="seed-too-large"),
    pytest.param(["--plateau-threshold", "nan"], "--plateau-threshold", id="threshold-nan"),
    pytest.param(
        ["--plateau-threshold", "3", "--improvement-threshold", "1"],
        "plateau",
        id="plateau-above-improvement",
    ),
    pytest.param(["--save", "{empty}"], "directory", id="save-to-a-directory"),
    pytest.param(["--controller", "heuristic", "--recurrent"], "--recurrent", id="heuristic-lstm"),
]


@pytest.mark.parametrize(("flags", "named"), BAD_INPUT)
def test_bad_input_exits_2_with_one_line_and_no_telemetry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    if "cuda" in flags and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "empty").mkdir()
    places = {
        "{empty}": str(tmp_path / "empty"),
        "{missing}": str(tmp_path / "missing.pt"),
        "{garbage}": str(_garbage(tmp_path / "garbage.pt")) if "{garbage}" in flags else "",
        "{heuristic}": (
            str(_heuristic_checkpoint(tmp_path, capsys)) if "{heuristic}" in flags else ""
        ),
    }
    flags = [places.get(flag, flag) for flag in flags]
    named = places.get(named, named)
    telemetry_dir = tmp_path / "telemetry"

    code, err = esper_here(["train", *flags, "--telemetry-dir", str(telemetry_dir)], capsys)

    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, f"expected one line, got {lines}"
    assert "error" in lines[0] and named in lines[0]
    assert "Traceback" not in err
    assert not telemetry_dir.exists(), "telemetry written for a run that never started"


def test_checkpoint_of_another_controller_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = _heuristic_checkpoint(tmp_path, capsys)
    args = ["train", *SYNTHETIC, "--controller", "ppo", "--resume", str(checkpoint)]
    code, err = esper_here([*args, "--telemetry-dir", str(tmp_path / "t")], capsys)
    assert code == 2
    assert err == (
        f"esper: error: checkpoint {checkpoint} was made with --controller heuristic; "
        "this command asks for --controller ppo\n"
    )
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--envs", "0"], "--envs"), (["--resume", "garbage.pt"], "corrupt")],
    ids=["argument", "checkpoint"],
)
def test_bad_input_in_a_real_process(tmp_path: Path, flags: list[str], named: str) -> None:
    _garbage(tmp_path / "garbage.pt")
    done = esper(["train", *flags], cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert named in line
    assert done.stdout == ""
    assert not (tmp_path / "telemetry").exists()


def test_help_exits_0(tmp_path: Path) -> None:
    top = esper(["--help"], cwd=tmp_path)
    assert top.returncode == 0 and "train" in top.stdout
    train = subprocess.run(
        [*_console_script(), "train", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert train.returncode == 0
    for flag in ("--envs", "--episodes", "--max-epochs", "--telemetry-dir", "--resume"):
        assert flag in train.stdout


def test_no_command_prints_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert out.startswith("usage: esper ")
    assert "train" in out and "replay" in out


# --- checkpoints ----------------------------------------------------------------------------


def test_resume_continues_batch_numbers_where_the_saved_run_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "ck.pt"
    common = ["train", *SYNTHETIC, "--save", str(checkpoint)]
    first = [*common, "--episodes", "4", "--telemetry-dir", str(tmp_path / "first")]
    assert esper_here(first, capsys)[0] == 0
    second = [*common, "--episodes", "8", "--resume", str(checkpoint)]
    code, err = esper_here([*second, "--telemetry-dir", str(tmp_path / "second")], capsys)
    assert code == 0, err

    before = of_type(strict_records(only_log(tmp_path / "first")), EventType.PPO_UPDATE_COMPLETED)
    after = of_type(strict_records(only_log(tmp_path / "second")), EventType.PPO_UPDATE_COMPLETED)
    assert [(u["data"]["batch"], u["data"]["train_steps"]) for u in before] == [(1, 1), (2, 2)]
    assert [(u["data"]["batch"], u["data"]["train_steps"]) for u in after] == [(3, 3), (4, 4)]
    assert [u["data"]["episodes_completed"] for u in after] == [6, 8]
    assert "8 in 4 batches" in err
    assert f"  checkpoint: {checkpoint}, saved after batch 4\n" in err

    # A finished run has nothing left to run: bad input, before anything is written.
    code, err = esper_here([*second, "--telemetry-dir", str(tmp_path / "third")], capsys)
    assert code == 2, err
    assert err == (
        f"esper: error: checkpoint {checkpoint} has completed 8 of 8 episodes; nothing left "
        "to run (raise --episodes to continue)\n"
    )
    assert not (tmp_path / "third").exists()


# --- signals --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "status"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
    ids=["SIGTERM", "SIGINT"],
)
def test_signal_stops_the_run_with_a_summary_and_a_complete_log(
    tmp_path: Path, signum: signal.Signals, code: int, status: str
) -> None:
    telemetry_dir = tmp_path / "t"
    args = [*SYNTHETIC, "--episodes", "100000", "--telemetry-dir", str(telemetry_dir)]
    exit_code, err = signalled_after_first_update(args, tmp_path, signum)
    assert exit_code == code, err

    assert f"esper: training {status}" in err
    log = only_log(telemetry_dir)
    assert str(log) in err and run_id_of(log) in err
    records = strict_records(log)
    # The first batch's epochs were all emitted before the update the console showed.
    assert len(of_type(records, EventType.EPOCH_COMPLETED)) >= 2 * 3
    # The log is written before the console: every update the user saw is in it.
    shown = sum(line.startswith("ppo update") for line in err.splitlines())
    assert len(of_type(records, EventType.PPO_UPDATE_COMPLETED)) >= shown >= 1


def test_an_event_shown_on_the_console_is_in_the_log_when_ctrl_c_lands_between_sinks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class InterruptedConsole(ConsoleSink):
        """Ctrl-C on the training thread, between the log's capture and OpenTelemetry's,
        of the first event after the update the console is to print."""

        updated = False

        def capture(self, event: TelemetryEvent) -> None:
            if self.updated:
                raise KeyboardInterrupt
            self.updated = event.event_type == EventType.PPO_UPDATE_COMPLETED

    monkeypatch.setattr("app.cli.train.ConsoleSink", InterruptedConsole)
    args = ["train", *SYNTHETIC, "--episodes", "4", "--telemetry-dir", str(tmp_path)]
    code, err = esper_here(args, capsys)
    assert code == 130
    assert "ppo update: batch=1" in err and "esper: training interrupted" in err
    records = strict_records(only_log(tmp_path))
    assert len(of_type(records, EventType.PPO_UPDATE_COMPLETED)) == 1


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_twice_writes_the_same_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def events(name: str) -> list[tuple[str, str]]:
        args = ["train", *SYNTHETIC, "--episodes", "4", "--max-epochs", "5", "--seed", "3"]
        code, err = esper_here([*args, "--telemetry-dir", str(tmp_path / name)], capsys)
        assert code == 0, err
        return [
            (
                r["event_type"],
                json.dumps({k: v for k, v in r["data"].items() if k != "duration_s"}),
            )
            for r in strict_records(only_log(tmp_path / name))
        ]

    first, second = events("a"), events("b")
    assert any(event_type == EventType.PPO_UPDATE_COMPLETED for event_type, _ in first)
    assert first == second


def test_a_signal_while_the_log_opens_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal landing after the run directory is created but before training starts (the
    moment cannot be hit from outside, so it is injected where the hub is built)."""
    import app.cli.train as train_module

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_hub", interrupted)
    telemetry = tmp_path / "telemetry"
    code = main(["train", "--dataset", "synthetic", "--telemetry-dir", str(telemetry)])
    assert code == 130
    assert capsys.readouterr().err.splitlines() == ["esper: interrupted before training started"]
    assert not telemetry.exists()
