"""Helpers for tests that SIGKILL real processes at precise moments.

A child process gets a Python audit hook (``sys.addaudithook``) that sends SIGKILL to itself the n-th time the
process opens a file whose path contains a given fragment. Nothing in the code under test is replaced: the process
dies exactly as with ``kill -9`` from outside, only at a reproducible point (for example, while a checkpoint's
temporary file is being created).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence

from tests.conftest import REPO, subprocess_env

KILL_ON_OPEN = """
import os, signal, sys
_FRAGMENT, _NTH, _SEEN = {fragment!r}, {nth!r}, [0]
def _hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        if _FRAGMENT in os.fsdecode(args[0]):
            _SEEN[0] += 1
            if _SEEN[0] == _NTH:
                os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(_hook)
"""


def kill_on_open(fragment: str, nth: int = 1) -> str:
    """Python source that makes this process SIGKILL itself on the ``nth`` open of a path containing ``fragment``."""
    return KILL_ON_OPEN.format(fragment=fragment, nth=nth)


def run_python(
    code: str, *, timeout: float = 300, args: Sequence[str] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code args...`` from the repository root with this checkout importable."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or subprocess_env(),
        cwd=REPO,
        check=False,
    )


def cli_code(argv: Sequence[str], prelude: str = "") -> str:
    """Source that runs ``sslinspect ARGV`` (after ``prelude``) and exits with its code."""
    return f"{prelude}\nimport sys\nfrom sslinspect.cli import main\nsys.exit(main({list(argv)!r}))\n"


def was_killed(proc: subprocess.CompletedProcess[str] | subprocess.Popen[str]) -> bool:
    """True when the process ended by SIGKILL."""
    return proc.returncode == -signal.SIGKILL
