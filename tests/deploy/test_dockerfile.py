"""The trainer's Dockerfile: non-root, `esper train` through the entry point script, the same
pyproject as the tests."""

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


def test_there_is_no_second_dependency_list() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"requirements[^\s]*\.txt", text)
    assert not re.search(r"\bpip install\b[^\n]*\s-r\s", text)
    assert not list(ROOT.glob("requirements*.txt"))
    # The only package named outside pyproject is the CPU build of torch, which pyproject
    # requires too (`torch>=2.4,<3`); pinning it from the CPU index keeps CUDA out.
    for run in (args for keyword, args in instructions() if keyword == "RUN"):
        for command in re.split(r"&&|;", run):
            if "pip install" in command and " . " not in f"{command} ":
                assert re.search(r"torch==[\d.]+", command), command
                assert "download.pytorch.org/whl/cpu" in command, command


def test_the_base_image_is_a_pinned_python_311_slim() -> None:
    bases = [args.split()[0] for keyword, args in instructions() if keyword == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", b) for b in bases), bases


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
