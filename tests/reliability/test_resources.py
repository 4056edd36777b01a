"""A full disk or a read-only project folder: a clear one-line error, and nothing on disk corrupted.

Where the test runs as root with ``unshare`` available, the project lives on a real, small tmpfs in a private mount
namespace (filled up, then remounted read-only); nothing outside the child process sees the mount. Elsewhere the
same failures are covered by injected ``OSError(ENOSPC)`` tests (here for export; in tests/core for project.json,
the label database and checkpoints).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sslinspect import api
from sslinspect.errors import ExportError
from tests.conftest import REPO, subprocess_env


def _can_mount() -> bool:
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs tmpfs "$d"'],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and unshare to mount a private tmpfs")

_SCENARIO = r"""
import contextlib, io, json, shutil, sqlite3, subprocess, sys
from pathlib import Path
from sslinspect import api
from sslinspect.cli import main
from sslinspect.project import Project
from sslinspect.model.checkpoint import load_checkpoint, save_checkpoint
from sslinspect.runs import latest_checkpoint

mnt, source = Path(sys.argv[1]), Path(sys.argv[2])
out = {}

def attempt(name, fn):
    try:
        fn()
        out[name] = "OK"
    except Exception as exc:
        out[name] = f"{type(exc).__name__}: {exc}"

def cli(name, *argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    out[name] = [code, [ln for ln in err.getvalue().splitlines() if ln.startswith("error:")]]

def snapshot(p):
    ckpt = latest_checkpoint(p)
    return {"json": (p.root / "project.json").read_text(), "labels": sorted(p.store.labels().items()),
            "ckpt": ckpt.read_bytes().hex()[:4096] + str(ckpt.stat().st_size), "onnx": sorted(
            str(f.relative_to(p.root)) for f in p.root.rglob("*.onnx"))}

root = mnt / "p.sslproj"
shutil.copytree(source, root)
project = Project.open(root)                       # open before the disk fills, as the GUI would
before = snapshot(project)
ckpt_path = latest_checkpoint(project)
ckpt = load_checkpoint(ckpt_path)

with open(mnt / "filler", "wb", buffering=0) as fh:  # fill the disk to the last byte
    with contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    with contextlib.suppress(OSError):
        while True:
            fh.write(b"\0")
            fh.flush()

attempt("full.add_classes", lambda: project.add_classes(["burr"]))
attempt("full.set_labels", lambda: project.store.set_labels([(i, "burr" * 10) for i in range(1, 161)]))
attempt("full.checkpoint", lambda: save_checkpoint(ckpt_path, ckpt))
attempt("full.export", lambda: api.export_onnx(project, root / "exports" / "new" / "model.onnx"))
cli("full.cli_train", "train", root, "--device", "cpu")
(mnt / "filler").unlink()
out["full.integrity"] = sqlite3.connect(root / "project.sqlite").execute("PRAGMA integrity_check").fetchone()[0]
out["full.unchanged"] = snapshot(project) == before
out["full.tmp_left"] = sorted(str(f.relative_to(root)) for f in root.rglob("*.tmp"))
attempt("full.recovers", lambda: project.store.set_label(1, "good"))
project.close()

ro_root = mnt.parent / "ro" / "p.sslproj"        # a read-only bind mount of the same project folder
ro_root.mkdir(parents=True)
subprocess.run(["mount", "--bind", str(root), str(ro_root)], check=True)
subprocess.run(["mount", "-o", "remount,ro,bind", str(ro_root)], check=True)
root = ro_root
project = Project.open(root)
before = snapshot(project)
attempt("ro.add_classes", lambda: project.add_classes(["burr"]))
attempt("ro.set_label", lambda: project.store.set_label(2, "burr"))
cli("ro.cli_scan", "scan", root)
cli("ro.cli_pretrain", "pretrain", root, "--backbone", "tiny_cnn", "--image-size", "32", "--device", "cpu")
cli("ro.cli_export", "export", root, "--out", root / "exports" / "ro.onnx")
out["ro.unchanged"] = snapshot(project) == before
print(json.dumps(out))
"""


@needs_mount
def test_full_disk_and_read_only_folder_on_a_real_file_system(trained_project: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cmd = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount -t tmpfs -o size=12m tmpfs "$1" && shift && exec "$@"',
        "sh",
        str(mnt),
        sys.executable,
        "-c",
        _SCENARIO,
        str(mnt),
        str(trained_project),
    ]
    child = subprocess.run(
        cmd, capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=600, check=False
    )
    assert child.returncode == 0, child.stderr[-3000:]
    r = json.loads(child.stdout.strip().splitlines()[-1])
    root, ro_root = mnt / "p.sslproj", tmp_path / "ro" / "p.sslproj"
    assert (
        r["full.add_classes"]
        == f"ProjectError: {root}/project.json: cannot save (disk full); the previous version is kept"
    )
    assert r["full.set_labels"] == (
        f"ProjectError: {root}/project.sqlite: cannot save (the disk is full; free some space and try again)"
    )
    assert (
        r["full.checkpoint"].startswith("CheckpointError: ")
        and "the previous checkpoint is kept" in r["full.checkpoint"]
    )
    assert (
        r["full.export"].startswith(("ExportError: ", "OSError: "))
        and "model.onnx" not in r["full.export"].split(":")[0]
    )
    code, lines = r["full.cli_train"]
    assert code == 1 and len(lines) == 1 and "disk full" in lines[0], lines
    assert r["full.integrity"] == "ok" and r["full.unchanged"] is True
    assert r["full.tmp_left"] == []
    assert r["full.recovers"] == "OK"
    assert r["ro.add_classes"].endswith("cannot save (read-only file system); the previous version is kept")
    assert r["ro.set_label"] == f"ProjectError: {ro_root}/project.sqlite: cannot save (the project folder is read-only)"
    for name in ("ro.cli_scan", "ro.cli_pretrain", "ro.cli_export"):
        code, lines = r[name]
        assert code == 1 and len(lines) == 1 and "read-only" in lines[0], (name, lines)
    assert r["ro.unchanged"] is True


def test_export_on_a_full_disk_leaves_no_model(
    trained_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a mountable file system: ``ENOSPC`` injected where the ONNX file is written."""
    import onnx

    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    real_save = onnx.save

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", full)
    target = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportError) as err:
        api.export_onnx(api.open_project(root), target)
    monkeypatch.setattr(onnx, "save", real_save)
    assert "No space left on device" in str(err.value) and "\n" not in str(err.value)
    assert not target.exists() and list(target.parent.iterdir()) == []  # no model, no temporary folder left
