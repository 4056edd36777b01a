"""A line-side install (no torch, scikit-learn, onnx, Qt): read-only commands work, the rest say which extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sslinspect.extras import EXTRA_FOR_MODULE, missing_module_message
from tests.conftest import REPO, subprocess_env

TRAIN_AND_GUI = "torch,torchvision,sklearn,onnx,onnxscript,PySide6,pyqtgraph,superqt"

# Runs a command in a child where the given top-level modules cannot be imported, as on an install without them.
_BLOCKED = """
import importlib.abc, sys
block = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in block:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
if sys.argv[2] == "app":
    from app.launch import main
    sys.exit(main([]))
from sslinspect.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run(blocked: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKED, blocked, *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
        timeout=300,
    )


@pytest.fixture
def project(trained_project: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_project, tmp_path / "p.sslproj"))


def test_read_only_commands_work_without_the_train_extra(project: Path, tmp_path: Path) -> None:
    r = _run(TRAIN_AND_GUI, "threshold", str(project), "0.3", "--force")  # any value: only torch-freedom is tested
    assert r.returncode == 0 and "threshold 0.3000" in r.stdout, r.stderr
    r = _run(TRAIN_AND_GUI, "compare", str(project))
    assert r.returncode == 0 and "simclr" in r.stdout, r.stderr
    r = _run(TRAIN_AND_GUI, "report", str(project), "--out", str(tmp_path / "r.html"), "--examples", "1")
    assert r.returncode == 0 and (tmp_path / "r.html").stat().st_size > 1000, r.stderr


def test_commands_needing_an_extra_name_it(project: Path) -> None:
    r = _run(TRAIN_AND_GUI, "pretrain", str(project), "--epochs", "1")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        'error: this command needs PyTorch, which is not installed: pip install "sslinspect[train]"'
    )
    model = project / "exports" / "model" / "model.onnx"
    r = _run("onnxruntime", "predict", str(model), str(project))
    assert r.returncode == 1 and 'pip install "sslinspect[cpu]"' in r.stderr and "Traceback" not in r.stderr


def test_the_app_on_a_line_install_says_how_to_get_it() -> None:
    r = _run("PySide6,pyqtgraph,superqt", "app")
    assert r.returncode == 1 and 'pip install "sslinspect[gui]"' in r.stderr and "Traceback" not in r.stderr


def test_every_mapped_module_names_an_extra_of_the_package() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {extra for _, extra in EXTRA_FOR_MODULE.values()} <= set(extras)
    assert missing_module_message(ModuleNotFoundError("x", name="some_other_module")) is None


def test_all_and_dev_never_install_both_runtimes() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def closure(name: str) -> set[str]:
        out: set[str] = set()
        for req in extras[name]:
            if req.startswith("sslinspect["):
                for sub in req[len("sslinspect[") : -1].split(","):
                    out |= closure(sub)
            else:
                out.add(req.split("[")[0].split(">")[0].split("=")[0].strip())
        return out

    base = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(d.startswith("onnxruntime") for d in base)  # an extra could never take it away again
    for name in ("all", "dev", "gpu"):
        assert "onnxruntime-gpu" in closure(name) and "onnxruntime" not in closure(name), name
    assert closure("cpu") == {"onnxruntime"}
