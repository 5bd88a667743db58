"""Lint and type checks as tests, as `colcon test` runs ament's linters."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it from requirements.txt")
    return path


def test_ruff_clean() -> None:
    targets = [p for p in ("meetup_ros", "test", "launch", "scripts") if (REPO_ROOT / p).exists()]
    result = subprocess.run(
        [_tool("ruff"), "check", *targets], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_clean() -> None:
    result = subprocess.run(
        [_tool("mypy")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=280
    )
    assert result.returncode == 0, result.stdout + result.stderr
