"""docker-compose.yml validates against the Compose specification's JSON schema.

check-jsonschema ships the schema (`vendor.compose-spec`) inside the package, so this
runs offline and without a Docker engine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_matches_the_compose_spec() -> None:
    result = _check(ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    # Guards against a check that passes everything (e.g. a schema that failed to load).
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(
        "services:\n  a:\n    image: x:1\n    depends_on:\n      b:\n        condition: soon\n"
    )
    result = _check(bad)
    assert result.returncode != 0, result.stdout + result.stderr
