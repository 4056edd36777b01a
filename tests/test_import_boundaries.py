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


def _imports(path: object) -> set[str]:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(str(path)).read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_only_the_plots_package_imports_pyqtgraph() -> None:
    """Pages use the plots' small API; pyqtgraph stays inside app/widgets/plots/."""
    plots = REPO / "app" / "widgets" / "plots"
    bad = [
        str(f.relative_to(REPO))
        for f in (REPO / "app").rglob("*.py")
        if plots not in f.parents and any(m.split(".")[0] == "pyqtgraph" for m in _imports(f))
    ]
    assert bad == []


def test_new_gui_code_imports_only_the_facades() -> None:
    """The Fit page and its widgets import only sslinspect.api, the review facade, config, events and errors."""
    allowed = {"sslinspect", "sslinspect.api", "sslinspect.gallery", "sslinspect.config", "sslinspect.events"}
    allowed.add("sslinspect.errors")
    files = ["app/pages/fit_page.py", "app/widgets/fit_threshold.py", "app/widgets/fit_confusion.py"]
    files += ["app/widgets/fit_uncertain.py", "app/widgets/export_result.py", "app/glossary.py"]
    for name in files:
        core = {m for m in _imports(REPO / name) if m.split(".")[0] == "sslinspect"}
        assert core <= allowed, (name, core - allowed)
