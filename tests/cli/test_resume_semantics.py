"""`esper train --resume FILE`: the checkpoint's own configuration for every flag not
given, `--episodes` as the new total, every flag that contradicts the checkpoint in one
line, and a run.json that names what the run continues (the checkpoint by its absolute
path, whichever directory it was named from)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from run_files import logged_events, run_json
from signalled_runs import signalled_after_first_update

from app.cli import main
from app.training.checkpoint import load_checkpoint, save_checkpoint
from app.training.checkpoint_config import config_document, saved_config

SYNTHETIC = ("--dataset", "synthetic", "--envs", "2", "--max-epochs", "3", "--no-progress")
# Settings of the first run that are not defaults, for the resumed run to inherit.
FIRST = ("--seed", "7", "--telemetry-level", "minimal", "--set", "ppo.lr=0.002")

pytestmark = pytest.mark.usefixtures("in_process_run_state")


def esper_here(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`app.cli.main(ARGS)` in this process: the exit code, stdout and stderr."""
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def of_type(records: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [record for record in records if record["event_type"] == event_type]


@pytest.fixture
def checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A checkpoint after 2 episodes (one batch of two environments) of a 2-episode run."""
    path = tmp_path / "ck.pt"
    args = ["train", *SYNTHETIC, *FIRST, "--episodes", "2", "--save", str(path)]
    code, _, err = esper_here([*args, "--telemetry-dir", str(tmp_path / "first")], capsys)
    assert code == 0, err
    return path


def first_run_id(tmp_path: Path) -> str:
    run_id: str = run_json(tmp_path / "first")["run_id"]
    return run_id


def shown_config(out: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in out.splitlines())


# --- the checkpoint's configuration ---------------------------------------------------------


def test_a_checkpoint_records_the_run_and_the_configuration_that_wrote_it(
    tmp_path: Path, checkpoint: Path
) -> None:
    state = load_checkpoint(checkpoint)
    assert state["run_id"] == first_run_id(tmp_path)
    assert config_document(saved_config(state)) == run_json(tmp_path / "first")["config"]


def test_resume_alone_takes_the_checkpoints_configuration(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = esper_here(["train", "--resume", str(checkpoint), "--show-config"], capsys)
    assert code == 0, err
    shown = shown_config(out)
    expected = {"dataset": "synthetic", "envs": "2", "max_epochs": "3", "episodes": "2"}
    expected |= {"seed": "7", "telemetry_level": "minimal", "ppo.lr": "0.002"}
    assert {key: shown[key] for key in expected} == expected


def test_flags_given_on_resume_override_what_may_change(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "--resume", str(checkpoint), "--show-config", "--seed", "3"]
    args += ["--telemetry-level", "debug", "--set", "ppo.lr=0.005", "--envs", "2"]
    code, out, err = esper_here(args, capsys)
    assert code == 0, err
    shown = shown_config(out)
    changed = {"seed": "3", "telemetry_level": "debug", "ppo.lr": "0.005", "envs": "2"}
    assert {key: shown[key] for key in changed} == changed
    assert shown["max_epochs"] == "3"


def test_resume_alone_of_a_finished_run_has_nothing_left_to_run(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry_dir = tmp_path / "t"
    args = ["train", "--resume", str(checkpoint), "--telemetry-dir", str(telemetry_dir)]
    code, _, err = esper_here(args, capsys)
    assert code == 2
    assert err == (
        f"esper: error: checkpoint {checkpoint} has completed 2 of 2 episodes; nothing left "
        "to run (raise --episodes to continue)\n"
    )
    assert not telemetry_dir.exists()


def test_every_flag_that_contradicts_the_checkpoint_is_named_in_one_line(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry_dir = tmp_path / "t"
    args = ["train", "--resume", str(checkpoint), "--envs", "4", "--max-epochs", "5"]
    args += ["--controller", "heuristic", "--recurrent", "--dataset", "synthetic"]
    code, _, err = esper_here([*args, "--telemetry-dir", str(telemetry_dir)], capsys)
    assert code == 2
    assert err == (
        f"esper: error: checkpoint {checkpoint} was made with --controller ppo, "
        "no --recurrent, --envs 2, --max-epochs 3; this command asks for "
        "--controller heuristic, --recurrent, --envs 4, --max-epochs 5\n"
    )
    assert not telemetry_dir.exists()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda state: state.update(config=[1, 2]), "config is a list, not a dict"),
        (lambda state: state["config"].update(envs="2"), "config.envs is '2'"),
        (lambda state: state["config"].update(tuner={}), "config.tuner is not a section"),
        (lambda state: state["config"]["ppo"].update(lr="fast"), "ppo.lr=fast"),
        (lambda state: state.update(run_id=7), "run_id is a int, not a string"),
    ],
    ids=["config-not-a-dict", "envs-a-string", "unknown-section", "bad-value", "run-id"],
)
def test_a_recorded_configuration_that_does_not_fit_is_one_line(
    tmp_path: Path,
    checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
    change: Any,
    named: str,
) -> None:
    state = load_checkpoint(checkpoint)
    change(state)
    save_checkpoint(checkpoint, state)  # a valid digest over a configuration that does not fit
    telemetry_dir = tmp_path / "t"
    args = ["train", "--resume", str(checkpoint), "--episodes", "4"]
    code, _, err = esper_here([*args, "--telemetry-dir", str(telemetry_dir)], capsys)
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith(f"esper: error: checkpoint {checkpoint}: ") and named in line, line
    assert not telemetry_dir.exists()


# --- resumed runs ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_larger_total_runs_exactly_the_episodes_left(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry_dir = tmp_path / "second"
    args = ["train", "--resume", str(checkpoint), "--episodes", "4", "--no-progress"]
    args += ["--telemetry-level", "normal"]  # which logs every epoch
    code, _, err = esper_here([*args, "--telemetry-dir", str(telemetry_dir)], capsys)
    assert code == 0, err

    records = logged_events(telemetry_dir)
    updates = of_type(records, "PPO_UPDATE_COMPLETED")
    assert [(u["data"]["batch"], u["data"]["episodes_completed"]) for u in updates] == [(2, 4)]
    assert len(of_type(records, "EPOCH_COMPLETED")) == 2 * 3  # two episodes of three epochs
    record = run_json(telemetry_dir)
    assert record["resumed_from"] == {
        "checkpoint": str(checkpoint),
        "run_id": first_run_id(tmp_path),
        "episodes_done": 2,
    }
    assert record["status"] == "completed" and record["final_accuracy"] is not None
    config = record["config"]
    assert (config["episodes"], config["envs"], config["max_epochs"]) == (4, 2, 3)
    assert (config["seed"], config["telemetry_level"], config["ppo"]["lr"]) == (7, "normal", 0.002)


@pytest.mark.slow
def test_a_checkpoint_that_records_neither_run_nor_configuration_still_resumes(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = load_checkpoint(checkpoint)
    del state["run_id"], state["config"]
    save_checkpoint(checkpoint, state)
    telemetry_dir = tmp_path / "second"
    args = ["train", "--resume", str(checkpoint), "--episodes", "4", "--no-progress"]
    code, _, err = esper_here([*args, "--telemetry-dir", str(telemetry_dir)], capsys)
    assert code == 0, err

    record = run_json(telemetry_dir)
    assert record["resumed_from"] == {
        "checkpoint": str(checkpoint),
        "run_id": None,
        "episodes_done": 2,
    }
    # The setup comes from the checkpoint, the rest from the defaults.
    config = record["config"]
    assert (config["dataset"], config["envs"], config["max_epochs"]) == ("synthetic", 2, 3)
    assert (config["seed"], config["telemetry_level"]) == (0, "normal")


def interrupted_after_first_update(args: list[str], cwd: Path) -> str:
    """`python -m app train ARGS` stopped with Ctrl-C once it printed a PPO update; its
    stderr (it must exit 130)."""
    code, err = signalled_after_first_update(args, cwd)
    assert code == 130, err
    return err


@pytest.mark.slow
def test_resume_alone_continues_an_interrupted_run_as_it_was_configured(
    tmp_path: Path,
) -> None:
    checkpoint = tmp_path / "ck.pt"
    first = [*SYNTHETIC, *FIRST, "--episodes", "100000", "--save", str(checkpoint)]
    interrupted_after_first_update([*first, "--telemetry-dir", "first"], tmp_path)
    done = load_checkpoint(checkpoint)
    assert done["batches_completed"] >= 1

    # The minimal level prints the updates, so the resumed run can be stopped the same way.
    # The checkpoint is named relative to the run's directory (tmp_path).
    second = ["--resume", "ck.pt", "--no-progress", "--telemetry-dir", "second"]
    interrupted_after_first_update(second, tmp_path)

    record = run_json(tmp_path / "second")
    assert record["status"] == "interrupted" and record["status_reason"] == "Ctrl-C"
    assert record["resumed_from"] == {
        "checkpoint": str(checkpoint.resolve()),
        "run_id": first_run_id(tmp_path),
        "episodes_done": done["episodes_completed"],
    }
    assert record["config"] == run_json(tmp_path / "first")["config"]
    updates = of_type(logged_events(tmp_path / "second"), "PPO_UPDATE_COMPLETED")
    assert updates[0]["data"]["batch"] == done["batches_completed"] + 1
    assert record["events_by_type"] == dict(
        Counter(r["event_type"] for r in logged_events(tmp_path / "second"))
    )
