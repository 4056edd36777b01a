"""Issue 14, the file system: links out of the image folders, a wrong ``--images``, a project moved during
``pretrain``, ``train`` during a running ``pretrain``."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sslinspect import api
from sslinspect.cli import main
from sslinspect.data.scan import scan_project
from tests.conftest import REPO, run_cli, subprocess_env
from tests.core.image_cases import bgr_image, encode, write


def test_the_scan_never_follows_a_link_out_of_the_given_folders(tmp_path: Path) -> None:
    """A link to /proc inside an images folder indexed 20,763 images from the whole machine."""
    images, elsewhere = tmp_path / "imgs", tmp_path / "elsewhere"
    write(images / "a.png", encode(".png", bgr_image()))
    write(images / "sub" / "b.png", encode(".png", bgr_image(seed=1)))
    write(elsewhere / "secret.png", encode(".png", bgr_image(seed=2)))
    (images / "proc").symlink_to("/proc", target_is_directory=True)
    (images / "out").symlink_to(elsewhere, target_is_directory=True)
    (images / "stolen.png").symlink_to(elsewhere / "secret.png")
    (images / "inside").symlink_to(images / "sub", target_is_directory=True)  # inside: same folder, scanned once
    (images / "alias.png").symlink_to(images / "a.png")  # a link within the folder is fine
    project = api.create_project(tmp_path / "p", images=[images])
    result = scan_project(project, workers=1)
    errors = dict(result.errors)
    for name in ("proc", "out", "stolen.png"):
        assert errors[str(images / name)] == "symbolic link out of the image folders (skipped)"
    assert errors[str(images / "sub")].startswith("same folder as")
    assert result.ok == 3 and result.duplicates == 1  # a.png, alias.png (its duplicate) and sub/b.png


def test_a_link_into_another_given_folder_is_left_to_that_folder(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    write(first / "a.png", encode(".png", bgr_image()))
    write(second / "b.png", encode(".png", bgr_image(seed=1)))
    (first / "to-two").symlink_to(second, target_is_directory=True)
    project = api.create_project(tmp_path / "p", images=[first, second])
    result = scan_project(project, workers=1)
    assert result.ok == 2 and result.duplicates == 0 and result.errors == []


def test_init_with_a_wrong_images_folder_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The retry used to say 'a project already exists here'."""
    project = tmp_path / "line3.sslproj"
    assert main(["init", str(project), "--images", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'typo'}: no such folder (nothing was created)"]
    assert not project.exists()
    images = tmp_path / "imgs"
    write(images / "a.png", encode(".png", bgr_image()))
    assert main(["init", str(project), "--images", str(images)]) == 0


def test_train_refuses_the_checkpoint_of_a_pretraining_run_still_running(
    trained_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to train silently on the epoch-1 checkpoint of a run still going on in another process."""
    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    run_dir = next((root / "runs" / "pretrain").iterdir())
    status_path = run_dir / "status.json"
    status = json.loads(status_path.read_text())
    status.update(state="running", pid=os.getpid(), host=platform.node())  # this (live) process runs it
    status_path.write_text(json.dumps(status))
    fewshot_before = sorted((root / "runs" / "fewshot").iterdir())
    assert main(["train", str(root), "--device", "cpu"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {run_dir}: the pretraining run is still running (its checkpoint holds epoch")
    assert line.endswith("pass --allow-running to use its latest checkpoint anyway")
    assert sorted((root / "runs" / "fewshot").iterdir()) == fewshot_before  # no run folder was made


@pytest.mark.slow  # a real pretraining process: 10-40 s on a shared 2-core machine
def test_moving_a_project_during_pretraining_stops_the_job(tiny_image_folder: Path, tmp_path: Path) -> None:
    """Epochs 2–40 used to go to a re-created old path without project.json while the job reported success."""
    project, moved = tmp_path / "p.sslproj", tmp_path / "moved.sslproj"
    assert run_cli("init", str(project), "--images", str(tiny_image_folder)).returncode == 0
    cmd = [
        sys.executable, "-m", "sslinspect", "pretrain", str(project), "--epochs", "10000", "--backbone", "tiny_cnn",
        "--image-size", "32", "--batch-size", "8", "--device", "cpu", "--threads", "1",
        "--set", "pretrain.hidden_dim=32", "--set", "pretrain.proj_dim=16", "--set", "pretrain.log_every=1",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=REPO
    )
    try:
        deadline = time.monotonic() + 240
        while not list(project.glob("runs/pretrain/*/checkpoints/last.pt")):  # the epoch-1 checkpoint
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.1)
        project.rename(moved)  # the engineer tidies up the drive while it trains
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    (run,) = list((moved / "runs" / "pretrain").iterdir())
    assert lines[0] == (
        f"error: {project / 'runs' / 'pretrain' / run.name}: the project was moved or deleted while pretrain ran; "
        f"stopped (the run is now at {run}; continue there)"
    )
    assert not project.exists(), sorted(str(p) for p in project.rglob("*"))  # nothing re-created at the old path
    assert (run / "checkpoints" / "last.pt").is_file()
