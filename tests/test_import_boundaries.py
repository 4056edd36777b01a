"""The core never imports Qt; line-side predict never imports torch; importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO, subprocess_env

QT = "{'PySide6', 'shiboken6', 'pyqtgraph', 'superqt'}"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_core_and_cli_never_import_qt() -> None:
    r = _run(
        "import sys, sslinspect, sslinspect.cli, sslinspect.api, sslinspect.train.pretrain, sslinspect.export.onnx\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {QT}]\n"
        "assert not bad, bad"
    )
    assert r.returncode == 0, r.stderr


def test_package_import_does_not_load_torch() -> None:
    r = _run("import sys, sslinspect, sslinspect.api, sslinspect.cli\nassert 'torch' not in sys.modules")
    assert r.returncode == 0, r.stderr


def test_predict_path_imports_no_torch() -> None:
    r = _run(
        "import sys\n"
        "import sslinspect.infer.onnx_predictor, sslinspect.infer.run, sslinspect.imageio\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision', 'sklearn'}]\n"
        "assert not bad, bad"
    )
    assert r.returncode == 0, r.stderr
