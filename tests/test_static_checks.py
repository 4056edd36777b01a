"""Lint, architecture contracts and types run with the tests, so CI enforces them with one command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, subprocess_env

BIN = Path(sys.executable).parent
PY_DIRS = [d for d in ("sslinspect", "app", "tests", "bench", "scripts") if (REPO / d).is_dir()]


def _tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=subprocess_env(), timeout=600, check=False)


def test_ruff_lint_is_clean() -> None:
    r = _run(_tool("ruff"), "check", *PY_DIRS)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_is_clean() -> None:
    r = _run(_tool("ruff"), "format", "--check", *PY_DIRS)
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_contracts_hold() -> None:
    r = _run(_tool("lint-imports"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_core_passes_mypy() -> None:
    r = _run(_tool("mypy"))
    assert r.returncode == 0, r.stdout + r.stderr
