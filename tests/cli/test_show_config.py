"""`esper train --set` and `--show-config` on the command line (app/cli/config.py): the
dedicated flags and `--set` resolve to one configuration, which `--show-config` prints
without training or writing anything, and a bad override is one line and exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.cli import main
from app.training.config import RunConfig
from app.training.overrides import config_table

DEFAULT = RunConfig()


def esper_here(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`app.cli.main(ARGS)` in this process; returns the exit code, stdout and stderr."""
    try:
        code = main(args)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _shown(out: str) -> dict[str, str]:
    pairs = [line.split(" = ", 1) for line in out.splitlines()]
    assert all(len(pair) == 2 for pair in pairs), out
    return dict(pairs)


def test_show_config_prints_the_resolved_config_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry_dir = tmp_path / "telemetry"
    args = [
        "train",
        "--envs",
        "3",
        "--telemetry-level",
        "debug",
        "--show-config",
        "--set",
        "health.grad_exploding=1e4",
        "--set",
        "health.epoch_time_budget_s=60",
        "--set",
        "reward.germination_bonus=5",
        "--save",
        str(tmp_path / "run.pt"),
        "--telemetry-dir",
        str(telemetry_dir),
    ]
    code, out, err = esper_here(args, capsys)
    assert code == 0, err
    shown = _shown(out)
    assert shown["envs"] == "3" and shown["telemetry_level"] == "debug"
    assert shown["health.grad_exploding"] == "10000.0"
    assert shown["health.epoch_time_budget_s"] == "60.0"
    assert shown["reward.germination_bonus"] == "5.0"
    assert shown["data_dir"] == "none"
    assert [key for key in shown if "." in key] == [key for key, _ in config_table(DEFAULT)]
    assert not telemetry_dir.exists() and list(tmp_path.iterdir()) == []


def test_shown_config_can_be_pasted_back(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = esper_here(["train", "--show-config", "--set", "ppo.target_kl=none"], capsys)
    assert code == 0
    sets = [f"{key}={value}" for key, value in _shown(out).items() if "." in key]
    pasted = [arg for text in sets for arg in ("--set", text)]
    code, again, err = esper_here(["train", "--show-config", *pasted], capsys)
    assert code == 0, err
    assert again == out


@pytest.mark.parametrize(
    ("flags", "plateau", "improvement"),
    [
        (["--plateau-threshold", "1"], "1.0", "2.0"),
        (["--set", "progress.plateau=1"], "1.0", "2.0"),
        # --set is applied after the dedicated flag, whatever their order on the line.
        (["--set", "progress.plateau=1.5", "--plateau-threshold", "1"], "1.5", "2.0"),
        # A flag and a --set for the same section are checked together.
        (["--plateau-threshold", "3", "--set", "progress.improvement=5"], "3.0", "5.0"),
    ],
    ids=["flag", "set", "set-wins", "together"],
)
def test_flags_and_set_end_the_same_way(
    capsys: pytest.CaptureFixture[str], flags: list[str], plateau: str, improvement: str
) -> None:
    code, out, err = esper_here(["train", "--show-config", *flags], capsys)
    assert code == 0, err
    shown = _shown(out)
    assert (shown["progress.plateau"], shown["progress.improvement"]) == (plateau, improvement)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--set", "health.grad_exploding=abc"], "--set health.grad_exploding=abc: expected"),
        (["--set", "helth.x=1"], "unknown section 'helth'"),
        (["--set", "envs=2"], "use --envs"),
        (
            ["--set", "health.grad_vanishing=1e5"],
            "health.grad_vanishing must be less than grad_exploding (1000), got 100000",
        ),
        (
            ["--plateau-threshold", "3"],
            "--plateau-threshold 3.0: progress.plateau must be at least 0 and at most "
            "improvement (2), got 3",
        ),
        (
            ["--set", "memory.warning_fraction=2"],
            "--set memory.warning_fraction=2: memory.warning_fraction must be greater than 0 "
            "and at most 1, got 2",
        ),
        (["--show-config", "--set", "ppo.lr"], "--set ppo.lr: expected SECTION.FIELD=VALUE"),
    ],
    ids=[
        "bad-value",
        "bad-section",
        "top-level",
        "section-check",
        "flag-check",
        "range-check",
        "show-config",
    ],
)
def test_a_bad_override_exits_2_with_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    telemetry_dir = tmp_path / "telemetry"
    args = ["train", "--dataset", "synthetic", *flags, "--telemetry-dir", str(telemetry_dir)]
    code, out, err = esper_here(args, capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("esper: error: ") and named in line
    assert out == ""
    assert not telemetry_dir.exists() and list(tmp_path.iterdir()) == []


README = Path(__file__).resolve().parents[2] / "README.md"
README_ERROR = re.compile(r"^esper: error: --set (\S+): .*$", re.MULTILINE)


def test_the_readme_examples_of_a_bad_override_are_what_esper_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    examples = README_ERROR.finditer(README.read_text())
    shown = [(match[0], match[1]) for match in examples]
    assert len(shown) >= 2, "README shows no bad --set"
    for line, override in shown:
        code, out, err = esper_here(["train", "--show-config", "--set", override], capsys)
        assert (code, out, err) == (2, "", f"{line}\n")
