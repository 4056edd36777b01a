"""The core never imports Qt; line-side predict never imports torch; importing the package stays light; the
import-linter contracts in pyproject.toml hold, and break on a wrong import; no import cycles between core packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "lint-imports"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "importlinter.cli"]
    env = subprocess_env()
    env["PYTHONPATH"] = str(cwd)  # the copy, not this checkout
    return subprocess.run([*cmd, "--no-cache"], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and pyproject.toml (with its import contracts), copied so a test may break them."""
    root = tmp_path_factory.mktemp("house")
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    for pkg in ("sslinspect", "app"):
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _inject(path: Path, line: str) -> str:
    """Append ``line`` to ``path``; returns the original text to restore."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "\n" + line + "\n", encoding="utf-8")
    return text


def test_import_contracts_hold_on_the_copy(tree_copy: Path) -> None:
    r = _lint_imports(tree_copy)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # a lower layer reaching up: model plumbing must not know the training loop
        ("sslinspect/model/embed.py", "import sslinspect.train.loop", "layered in the order data flows"),
        # the training package must not import the inspection head (the old train ↔ fewshot cycle)
        ("sslinspect/train/health.py", "import sslinspect.fewshot.bank", "layered in the order data flows"),
        # line-side predict must stay torch-free
        ("sslinspect/infer/output.py", "import torch", "Line-side predict"),
        # the GUI goes through the api and the review facade only
        ("app/pages/project_page.py", "import sslinspect.store", "The app imports only"),
    ],
)
def test_import_contracts_fail_on_a_wrong_import(tree_copy: Path, module: str, line: str, contract: str) -> None:
    path = tree_copy / module
    original = _inject(path, line)
    try:
        r = _lint_imports(tree_copy)
    finally:
        path.write_text(original, encoding="utf-8")
    assert r.returncode != 0, r.stdout
    broken = [ln for ln in r.stdout.splitlines() if ln.rstrip().endswith("BROKEN")]
    assert any(contract in ln for ln in broken), r.stdout


def test_app_contract_names_every_other_core_unit() -> None:
    """A new core module must be added to the app's forbidden list (or be one of the allowed facades)."""
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    app = next(c for c in contracts["contracts"] if c["name"].startswith("The app imports only"))
    units = {
        f"sslinspect.{p.stem if p.is_file() else p.name}"
        for p in (REPO / "sslinspect").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    allowed = {"sslinspect.api", "sslinspect.review", "sslinspect.config", "sslinspect.events", "sslinspect.errors"}
    assert set(app["forbidden_modules"]) == units - allowed


def test_reading_heads_and_the_api_never_loads_sklearn() -> None:
    """The GUI's heatmaps and the api read a fitted head with numpy alone; scikit-learn is for fitting."""
    r = _run(
        "import sys, sslinspect.api, sslinspect.review, sslinspect.review.heatmaps, sslinspect.fewshot.model\n"
        "assert 'sklearn' not in sys.modules, sorted(m for m in sys.modules if m.startswith('sklearn'))[:5]"
    )
    assert r.returncode == 0, r.stderr


def _package_graph() -> dict[str, set[str]]:
    """Imports between the core's top-level units (subpackages and top-level modules), TYPE_CHECKING included."""
    import grimp

    graph = grimp.build_graph("sslinspect", include_external_packages=False, cache_dir=None)

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = unit(module), unit(imported)
            if a != b and b != "sslinspect":
                edges.setdefault(a, set()).add(b)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_between_core_packages() -> None:
    edges = _package_graph()
    assert "sslinspect.model" in edges  # the graph was really built
    assert _cycles(edges) == []


def test_architecture_diagram_matches_the_layers_contract() -> None:
    """docs/architecture.md draws the core's layers top to bottom; they must be the contract's, in its order."""
    import re
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layered = next(c for c in contracts["contracts"] if c["name"].startswith("The core is layered"))
    expected = [{m.strip().removeprefix("sslinspect.") for m in layer.split("|")} for layer in layered["layers"]]

    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = doc.split("```\napp/", 1)[1].split("```", 1)[0]
    rows = block.split("─\n", 1)[1].strip().splitlines()  # below the app line and its rule
    drawn: list[set[str]] = []
    for row in rows:
        modules = re.split(r"\s{2,}", row.strip())[0]
        drawn += [{m.strip() for m in layer.split("|")} for layer in modules.split("→")]
    assert drawn == expected


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
    allowed = {"sslinspect", "sslinspect.api", "sslinspect.review", "sslinspect.config", "sslinspect.events"}
    allowed.add("sslinspect.errors")
    files = ["app/pages/fit_page.py", "app/widgets/fit_threshold.py", "app/widgets/fit_confusion.py"]
    files += ["app/widgets/fit_uncertain.py", "app/widgets/export_result.py", "app/glossary.py"]
    for name in files:
        core = {m for m in _imports(REPO / name) if m.split(".")[0] == "sslinspect"}
        assert core <= allowed, (name, core - allowed)
