"""Nothing executes code found in a project or image folder, even when the worker is started from inside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sslinspect import api
from tests.conftest import subprocess_env
from tests.core.image_cases import bgr_image, encode, write

PLANT = "from pathlib import Path\nPath({marker!r}).write_text(__name__)\nraise SystemExit('planted code ran')\n"


def _hostile_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A project folder that also holds ``numpy.py``, ``cv2.py``, ``torch.py`` and an ``sslinspect`` package."""
    root = tmp_path / "line3.sslproj"
    write(root / "images" / "a.png", encode(".png", bgr_image()))
    api.create_project(root, images=[root / "images"]).close()
    marker = tmp_path / "PLANTED_CODE_RAN"
    for name in ("numpy.py", "cv2.py", "torch.py", "sitecustomize.py", "sslinspect/__init__.py"):
        write(root / name, PLANT.format(marker=str(marker)).encode())
    return root, marker


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=subprocess_env(), cwd=cwd, timeout=300, check=False
    )


def test_the_planted_modules_would_run_if_imported_from_there(tmp_path: Path) -> None:
    """Control: the folder is really hostile for any program that imports from it."""
    root, marker = _hostile_folder(tmp_path)
    assert _run(["-c", "import sys; sys.path.insert(0, ''); import numpy"], root).returncode != 0
    assert marker.read_text() == "numpy"


def test_worker_started_inside_a_project_folder_ignores_its_modules(tmp_path: Path) -> None:
    """``sslinspect/__main__.py`` drops the start folder from ``sys.path`` before importing numpy, cv2 or torch."""
    root, marker = _hostile_folder(tmp_path)
    (root / "sslinspect" / "__init__.py").unlink()  # this one only ``-P`` can stop: see the next test
    (root / "sslinspect").rmdir()
    result = _run(["-m", "sslinspect", "scan", str(root)], root)
    assert result.returncode == 0, result.stderr
    assert "1 readable images" in result.stdout and not marker.exists()


def test_safe_path_launch_ignores_even_a_planted_package(tmp_path: Path) -> None:
    """``python -P -m sslinspect`` (how a worker should be launched) never imports from its working folder."""
    root, marker = _hostile_folder(tmp_path)
    result = _run(["-P", "-m", "sslinspect", "scan", str(root)], root)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
