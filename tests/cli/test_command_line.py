"""The `esper` command line explains itself without loading torch, the OpenTelemetry SDK
or plotly: `esper` alone lists the commands, `--version` names the installed version,
every help shows each option's default; a flag that would be ignored is refused, and a
flag given on resume counts as given even at its default."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from app.cli import main
from app.cli.errors import UsageError
from app.cli.parser import DISTRIBUTION, build_parser, shown_default
from app.cli.resume import Resumed, refuse_conflicts
from app.training.config import RunConfig
from app.training.run_basics import RunBasics

HEAVY = ("torch", "opentelemetry.sdk", "plotly")


def esper(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`python -X importtime -m app ARGS` in a child; its result and every module it
    imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "app", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", done.stderr, re.M))
    assert "app.cli.parser" in imported, done.stderr[-2000:]
    return done, imported


def heavy(imported: set[str]) -> list[str]:
    return sorted(m for m in imported if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_esper_alone_lists_the_commands_and_exits_0(tmp_path: Path) -> None:
    done, imported = esper([], tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: esper [-h] [--version] COMMAND ...\n")
    lines = done.stdout.splitlines()
    assert any(re.fullmatch(r"\s+train\s+train hosts and their seed controller", x) for x in lines)
    assert any(re.fullmatch(r"\s+replay\s+send a recorded run's event log .*", x) for x in lines)
    assert any(
        re.fullmatch(r"\s+report\s+write a recorded run's event log as .*", x) for x in lines
    )
    assert heavy(imported) == []


def test_version_names_the_installed_distribution(tmp_path: Path) -> None:
    done, imported = esper(["--version"], tmp_path)
    assert done.returncode == 0
    assert done.stdout == f"esper {metadata.version(DISTRIBUTION)}\n"
    assert heavy(imported) == []


@pytest.mark.parametrize(
    "args", [["--help"], ["train", "--help"], ["replay", "--help"], ["report", "--help"]]
)
def test_help_loads_neither_torch_nor_the_sdk_nor_plotly(tmp_path: Path, args: list[str]) -> None:
    done, imported = esper(args, tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("usage: esper")
    assert heavy(imported) == []


def test_a_command_that_runs_loads_torch(tmp_path: Path) -> None:
    """The check above can fail: the same probe sees torch when training starts."""
    done, imported = esper(["train", "--show-config"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch" in imported


def test_a_report_that_is_written_loads_plotly(tmp_path: Path) -> None:
    """The same probe sees plotly when a report is drawn."""
    (tmp_path / "events.jsonl").write_text("")
    done, imported = esper(["report", "events.jsonl"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "plotly" in imported


# --- every option's default in the help -----------------------------------------------------


def _subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen: argparse.ArgumentParser = commands.choices[name]
    return chosen


def _help_blocks(text: str) -> dict[str, str]:
    """Each option's entry in a help text, by its long flag, whitespace collapsed."""
    options = text.split("\noptions:\n", 1)[1]
    blocks = re.split(r"\n(?=  -)", options)
    entries = {}
    for block in blocks:
        flags = re.findall(r"--[a-z-]+", block.split("  ", 2)[1])
        entries[flags[-1]] = " ".join(block.split())
    return entries


@pytest.mark.parametrize("command", ["train", "replay"])
def test_every_option_shows_its_default_or_is_a_flag(command: str) -> None:
    parser = _subcommand(command)
    blocks = _help_blocks(parser.format_help())
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert sorted(blocks) == sorted(["--help", *(a.option_strings[-1] for a in options)])
    for action in options:
        block = blocks[action.option_strings[-1]]
        if action.nargs == 0:  # a flag: off unless given
            assert "(default" not in block, block
        elif action.default is None:  # off: the help says what that means
            assert re.search(r"\(default: \S", block), block
        else:
            assert f"(default: {shown_default(action.default)})" in block, block


def test_the_resume_help_names_every_setting_a_checkpoint_keeps() -> None:
    from app.training.config import RunConfig
    from app.training.resume import run_setup

    block = _help_blocks(_subcommand("train").format_help())["--resume"]
    for name in run_setup(RunConfig()):
        assert "--" + name.replace("_", "-") in block


# --- a flag that would be ignored -------------------------------------------------------------


@pytest.mark.usefixtures("in_process_run_state")
@pytest.mark.parametrize("dataset", ["digits", "synthetic"])
def test_a_data_dir_for_a_built_in_dataset_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset: str
) -> None:
    telemetry_dir = tmp_path / "t"
    args = ["train", "--dataset", dataset, "--data-dir", str(tmp_path), "--telemetry-dir"]
    code = main([*args, str(telemetry_dir)])
    assert code == 2
    assert capsys.readouterr().err == (
        f"esper: error: --data-dir applies to --dataset cifar10 only; --dataset {dataset} "
        "reads no files\n"
    )
    assert not telemetry_dir.exists()


# --- a flag given on resume ---------------------------------------------------------------------


def resume_with(flags: list[str], made_with: RunConfig) -> None:
    """`esper train --resume ck.pt FLAGS` checked against a checkpoint made with
    `made_with` (only its configuration is compared)."""
    args = build_parser().parse_args(["train", "--resume", "ck.pt", *flags])
    refuse_conflicts(args, Resumed(Path("ck.pt"), {}, made_with, None))


def test_a_flag_given_at_its_default_is_refused_when_the_checkpoint_differs() -> None:
    default = RunBasics.max_epochs
    with pytest.raises(UsageError) as refused:
        resume_with(["--max-epochs", str(default)], RunConfig(max_epochs=3))
    assert str(refused.value) == (
        f"checkpoint ck.pt was made with --max-epochs 3; this command asks for "
        f"--max-epochs {default}"
    )


def test_a_flag_given_at_its_default_is_accepted_when_the_checkpoint_agrees() -> None:
    flags = ["--max-epochs", str(RunBasics.max_epochs), "--controller", RunBasics.controller]
    resume_with(flags, RunConfig())  # raises nothing
    resume_with([], RunConfig(max_epochs=3))  # and a flag not given is not compared
