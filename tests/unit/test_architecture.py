"""The architecture as checks: layers (import-linter), strict typing and lint stay true.

Each runs the real tool on the real tree, so `scripts/test.sh` (what CI runs) fails the
moment an import points upward, a type goes loose or the code drifts from ruff's rules.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_layers_and_forbidden_imports() -> None:
    """pyproject's import-linter contracts: no import from a lower layer to a higher one."""
    result = _run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy_strict_is_clean() -> None:
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout[-4000:]


@pytest.mark.parametrize("argv", [("check", "."), ("format", "--check", ".")])
def test_ruff(argv: tuple[str, ...]) -> None:
    result = _run(str(BIN / "ruff"), *argv)
    assert result.returncode == 0, result.stdout[-4000:]
