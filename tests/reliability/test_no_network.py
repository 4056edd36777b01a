"""Nothing is downloaded, ever: the pipeline runs with sockets disabled, and the source has no download calls."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests.conftest import REPO, subprocess_env
from tests.reliability.procs import run_python

#: Prepended to a child process: any TCP/UDP connection or name lookup is recorded in $NET_LOG and refused.
#: (Local AF_UNIX sockets stay allowed: multiprocessing and some libraries use them for local IPC.)
NO_NETWORK = """
import os, socket
_LOG = os.environ["NET_LOG"]
def _refuse(what, detail):
    with open(_LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{what} {detail!r}\\n")
    raise OSError(f"network access attempted ({what} {detail!r}); SSL Inspect must work offline")
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect", address)
    return _connect(self, address)
def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect_ex", address)
    return _connect_ex(self, address)
def sendto(self, *args):
    _refuse("sendto", args[-1])
socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
socket.getaddrinfo = lambda *a, **k: _refuse("getaddrinfo", a[:2])
socket.gethostbyname = lambda *a, **k: _refuse("gethostbyname", a[:1])
socket.create_connection = lambda *a, **k: _refuse("create_connection", a[:1])
"""

_PIPELINE = """
import json, sys
from pathlib import Path
from sslinspect import api
from sslinspect.config import FewShotConfig, PretrainConfig
from sslinspect.demo.dataset import generate_demo

out = Path(sys.argv[1])
ds = generate_demo(out / "data", product="metal", n_images=60, size=48, n_test_per_class=2, seed=1)
project = api.create_project(out / "p.sslproj", images=[ds.unlabeled_dir])
api.scan_images(project)
api.import_labels(project, ds.labels_csv)
tiny = PretrainConfig(
    method="simclr", backbone="tiny_cnn", image_size=32, epochs=1, batch_size=32, hidden_dim=64, proj_dim=32
)
api.pretrain(project, tiny)
api.fit_fewshot(project, FewShotConfig())
exported = api.export_onnx(project, out / "model.onnx")
result = api.predict(out / "model.onnx", [ds.test_dir], out=out / "pred.csv")
print(json.dumps({"parity": exported.parity.passed, "scored": result.total - len(result.failed)}))
"""


def _offline_env(log: Path) -> dict[str, str]:
    # A proxy that points nowhere would turn a forgotten download into a hang rather than a clear failure.
    return subprocess_env(NET_LOG=str(log), HTTP_PROXY="http://192.0.2.1:9", HTTPS_PROXY="http://192.0.2.1:9")


def test_the_blocker_itself_catches_a_download(tmp_path: Path) -> None:
    """Proves the guard used below works: a download attempt is recorded and fails."""
    log = tmp_path / "net.log"
    child = run_python(
        NO_NETWORK + "import urllib.request\nurllib.request.urlopen('https://download.pytorch.org/x', timeout=5)",
        env=_offline_env(log),
    )
    assert child.returncode != 0 and "network access attempted" in child.stderr
    assert log.read_text().startswith(("getaddrinfo", "create_connection", "connect"))


def test_whole_pipeline_runs_with_sockets_disabled(tmp_path: Path) -> None:
    """Generate data, scan, label, pretrain, train, export (with parity), predict: no connection is attempted."""
    log = tmp_path / "net.log"
    child = run_python(NO_NETWORK + _PIPELINE, args=[str(tmp_path / "run")], env=_offline_env(log), timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    assert json.loads(child.stdout.strip().splitlines()[-1]) == {"parity": True, "scored": 10}
    assert not log.exists(), log.read_text()


@pytest.mark.slow
def test_sslinspect_demo_runs_with_sockets_disabled(tmp_path: Path) -> None:
    """The README's first command (quick settings), offline."""
    log = tmp_path / "net.log"
    code = NO_NETWORK + "import sys\nfrom sslinspect.cli import main\nsys.exit(main(sys.argv[1:]))"
    child = run_python(
        code, args=["demo", "--quick", "--out", str(tmp_path / "demo")], env=_offline_env(log), timeout=1800
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "anomaly AUROC" in child.stdout and not log.exists()


# -- source guard ---------------------------------------------------------------------------------------------------
_FORBIDDEN_MODULES = {
    "urllib.request",
    "urllib3",
    "requests",
    "httpx",
    "http.client",
    "ftplib",
    "socket",
    "torch.hub",
    "huggingface_hub",
    "timm.models._hub",
}
_FORBIDDEN_CALLS = {
    "load_state_dict_from_url",
    "download_url_to_file",
    "download_url",
    "hf_hub_download",
    "urlopen",
    "urlretrieve",
}
_CODE_RUNNERS = {"eval", "exec", "compile", "__import__", "run_path", "run_module", "import_module"}
#: Reviewed exceptions: (file, call) → why it is safe.
_ALLOWED = {
    ("sslinspect/methods/__init__.py", "importlib.import_module"): "module names come from the METHODS registry",
}
_UNSAFE_LOADERS = {("pickle", "load"), ("pickle", "loads"), ("marshal", "load"), ("marshal", "loads")}


def _py_files() -> list[Path]:
    return sorted((REPO / "sslinspect").rglob("*.py"))


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _is_const(node: ast.AST, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _call_violations(node: ast.Call, rel: str) -> list[str]:
    func = _name(node.func)
    last = func.rsplit(".", 1)[-1]
    kwargs = {kw.arg: kw.value for kw in node.keywords if kw.arg}
    out = []
    if last in _FORBIDDEN_CALLS:
        out.append(f"calls {func}")
    runs_code = last in _CODE_RUNNERS and func in (last, f"builtins.{last}", f"importlib.{last}", f"runpy.{last}")
    if runs_code and (rel, func) not in _ALLOWED:
        out.append(f"calls {func} (code execution)")
    if tuple(func.rsplit(".", 1)) in _UNSAFE_LOADERS:
        out.append(f"calls {func} (unpickling)")
    torchvision_model = func.startswith(("tvm.", "torchvision.", "models."))
    if torchvision_model and "weights" in kwargs and not _is_const(kwargs["weights"], None):
        out.append(f"{func}(weights=...) may download pretrained weights")
    if "pretrained" in kwargs and not _is_const(kwargs["pretrained"], False):
        out.append(f"{func}(pretrained=...) may download weights")
    if "weights_only" in kwargs and not _is_const(kwargs["weights_only"], True):
        out.append(f"{func}(weights_only=...) must be True")
    if "allow_pickle" in kwargs and not _is_const(kwargs["allow_pickle"], False):
        out.append(f"{func}(allow_pickle=...) must be False")
    if func.endswith("torch.load") and "weights_only" not in kwargs:
        out.append("torch.load without weights_only=True")
    return out


def _violations(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(root).as_posix()
    out: list[str] = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            out += [f"{where}: imports {a.name}" for a in node.names if a.name in _FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            names = {f"{mod}.{a.name}" for a in node.names} | {mod}
            out += [f"{where}: imports {n}" for n in sorted(names & _FORBIDDEN_MODULES)]
            out += [f"{where}: imports {a.name}" for a in node.names if a.name in _FORBIDDEN_CALLS]
        elif isinstance(node, ast.Attribute) and _name(node) in {"torch.hub", "torchvision.datasets.utils"}:
            out.append(f"{where}: uses {_name(node)}")
        elif isinstance(node, ast.Call):
            out += [f"{where}: {v}" for v in _call_violations(node, rel)]
    return out


def test_no_download_or_code_execution_calls_in_the_core() -> None:
    files = _py_files()
    assert len(files) > 30
    problems = [v for f in files for v in _violations(f)]
    assert problems == []


def test_the_source_guard_catches_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import torch, pickle\nimport requests\nfrom torch.hub import load_state_dict_from_url\n"
        "import torchvision.models as tvm\n"
        "m = tvm.resnet18(weights='DEFAULT')\n"
        "sd = torch.hub.load_state_dict_from_url('https://x')\n"
        "c = torch.load('c.pt')\nd = torch.load('d.pt', weights_only=False)\n"
        "e = pickle.loads(b'')\nexec('1')\n"
    )
    found = _violations(bad, root=tmp_path)
    for needle in (
        "imports requests",
        "imports torch.hub",
        "weights=...",
        "uses torch.hub",
        "torch.load without weights_only",
        "weights_only=...) must be True",
        "pickle.loads (unpickling)",
        "exec (code execution)",
    ):
        assert any(needle in v for v in found), (needle, found)
