"""The architecture's one rule, enforced by import-linter (pyproject.toml,
`[tool.importlinter]`): domain code in app/ uses only the OpenTelemetry API; the SDK, the
exporters and the instrumentation layer are reached only through the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    for package in ("app", "instrumentation"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_repository_keeps_the_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "violation",
    [
        "from opentelemetry.sdk.trace import TracerProvider",
        "from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter",
        "from instrumentation.hub import TelemetryHub",
    ],
)
def test_domain_code_importing_the_sdk_or_instrumentation_breaks_it(
    tree_copy: Path, violation: str
) -> None:
    module = tree_copy / "app" / "training" / "progress.py"
    module.write_text(module.read_text() + f"\n{violation}  # noqa\n")

    result = lint_imports(tree_copy)

    assert result.returncode != 0, result.stdout
    assert "app.training.progress ->" in result.stdout, result.stdout
