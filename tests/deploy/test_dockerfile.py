"""The trainer's Dockerfile: non-root, `esper train` through the entry point script, the same
pyproject as the tests, its dependencies in layers that a source change leaves cached."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    result = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def test_the_final_user_is_not_root() -> None:
    users = [args for keyword, args in instructions() if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    final = users[-1].split(":")[0]
    assert final not in ("root", "0"), final


def test_the_entry_point_is_the_trainer_script() -> None:
    # test_trainer_entrypoint.py checks that the script runs `esper train` (or torchrun).
    steps = instructions()
    entrypoints = [args for keyword, args in steps if keyword == "ENTRYPOINT"]
    assert entrypoints
    copies = {}
    for keyword, args in steps:
        if keyword == "COPY":
            *flags_and_sources, destination = args.split()
            sources = [a for a in flags_and_sources if not a.startswith("--")]
            flags = [a for a in flags_and_sources if a.startswith("--")]
            copies[destination] = (sources, flags)
    [script] = json.loads(entrypoints[-1])
    assert script in copies, f"{script} is not copied into the image"
    sources, flags = copies[script]
    assert sources == ["deploy/trainer-entrypoint.sh"]
    modes = [int(f.partition("=")[2], 8) for f in flags if f.startswith("--chmod=")]
    # Executable by the image user; owned by root (no --chown), so not changeable by it.
    assert modes and modes[-1] & 0o001, flags
    assert not any(f.startswith("--chown") for f in flags), flags


def test_it_installs_the_project_from_its_pyproject() -> None:
    steps = instructions()
    copied = " ".join(args for keyword, args in steps if keyword in ("COPY", "ADD"))
    assert "pyproject.toml" in copied
    runs = [args for keyword, args in steps if keyword == "RUN"]
    assert any(re.search(r"\bpip install\b[^&|;]*\s\.(\s|$)", run) for run in runs), runs


# The three pip installs the image makes, each in a RUN of its own:
# the CPU build of torch, the only package named outside pyproject (which requires it too,
# `torch>=2.4,<3`); pinning it from the CPU index keeps CUDA out ...
TORCH_CPU = re.compile(
    r"pip install [^&|]*--index-url https://download\.pytorch\.org/whl/cpu [^&|]*torch==[\d.]+"
)
# ... pyproject's [project].dependencies, read from pyproject.toml alone ...
DEPENDENCIES = re.compile(
    r"tomllib.*\['project'\]\['dependencies'\].*\|\s*xargs [^&|]*pip install "
)
# ... and the project itself, its dependencies already there.
PROJECT = re.compile(r"pip install [^&|;]*--no-deps [^&|;]*\.(\s|$)")


def pip_runs() -> list[tuple[int, str]]:
    """(step index, arguments) of every RUN that calls pip install."""
    return [
        (index, args)
        for index, (keyword, args) in enumerate(instructions())
        if keyword == "RUN" and "pip install" in args
    ]


def step_of(pattern: re.Pattern[str]) -> int:
    found = [index for index, run in pip_runs() if pattern.search(run)]
    assert len(found) == 1, f"{len(found)} RUNs match {pattern.pattern}"
    return found[0]


def test_there_is_no_second_dependency_list() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"requirements[^\s]*\.txt", text)
    assert not re.search(r"\bpip install\b[^\n]*\s-r\s", text)
    assert not list(ROOT.glob("requirements*.txt"))
    for _, run in pip_runs():
        assert run.count("pip install") == 1, run
        kinds = [p for p in (TORCH_CPU, DEPENDENCIES, PROJECT) if p.search(run)]
        assert len(kinds) == 1, f"not one of the three installs: {run}"


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    # A change to app/ or instrumentation/ then rebuilds only the layers from the source
    # COPY on; the dependency layers stay cached.
    steps = instructions()
    torch, dependencies, project = step_of(TORCH_CPU), step_of(DEPENDENCIES), step_of(PROJECT)
    assert torch < dependencies < project
    copied_before = [args for keyword, args in steps[:dependencies] if keyword in ("COPY", "ADD")]
    assert copied_before == ["pyproject.toml ./"], copied_before
    sources = {
        source
        for keyword, args in steps[dependencies:project]
        if keyword == "COPY"
        for source in args.split()[:-1]
    }
    assert {"app", "instrumentation", "README.md"} <= sources, sources


def test_the_base_image_is_a_pinned_python_311_slim_bookworm() -> None:
    bases = [args.split()[0] for keyword, args in instructions() if keyword == "FROM"]
    assert bases
    for base in bases:
        match = re.fullmatch(r"python:3\.11\.(\d+)-slim-bookworm", base)
        assert match, base
        assert int(match.group(1)) >= 16, f"{base}: older than 3.11.16"


def test_pip_keeps_no_cache() -> None:
    for run in (args for keyword, args in instructions() if keyword == "RUN"):
        if "pip install" in run:
            assert "--no-cache-dir" in run, run


def test_the_telemetry_dir_belongs_to_the_image_user() -> None:
    text = " ".join(args for keyword, args in instructions() if keyword == "RUN")
    assert re.search(r"useradd[^&]*--uid\s+10001[^&]*\besper\b", text)
    assert re.search(r"chown\s+(-R\s+)?esper:esper\s+/var/lib/esper", text)


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "tests", "telemetry", ".git"} <= ignored
