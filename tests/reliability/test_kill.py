"""Real ``kill -9`` of real processes (scan, pretraining, labelling, export): nothing acknowledged is lost, nothing
half-written is ever used. The kill points are made exact with an audit hook (see ``procs.py``)."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from sslinspect import api
from sslinspect.events import Log, Metric, Started
from sslinspect.model.checkpoint import load_checkpoint
from sslinspect.project import Project
from sslinspect.runs import latest_checkpoint, read_events, read_status
from tests.core.image_cases import bgr_image, encode, write
from tests.reliability.procs import cli_code, kill_on_open, run_python, start_python, was_killed
from tests.test_cli import TINY as CLI_TINY

TINY = [*CLI_TINY, "--set", "pretrain.log_every=2"]


def _integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def test_kill_during_scan_then_the_project_opens_and_a_rescan_completes(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    for i in range(400):
        write(images / f"{i:03d}.png", encode(".png", bgr_image(12, 12, seed=i)))
    root = tmp_path / "p.sslproj"
    child = run_python(kill_on_open("/imgs/", nth=200) + cli_code(["init", str(root), "--images", str(images)]))
    assert was_killed(child), child.stderr
    assert _integrity(root / "project.sqlite") == "ok"
    project = Project.open(root)
    assert 0 < project.store.counts()["ok"] < 400  # killed half-way: the batches committed so far are there
    project.close()
    rescan = run_python(cli_code(["scan", str(root)]))
    assert rescan.returncode == 0, rescan.stderr
    assert "400 readable images" in rescan.stdout
    assert Project.open(root).store.counts()["ok"] == 400


def test_kill_while_a_checkpoint_is_written_then_resume_loses_at_most_one_epoch(
    tiny_image_folder: Path, tmp_path: Path
) -> None:
    root = tmp_path / "p.sslproj"
    api.scan_images(api.create_project(root, images=[tiny_image_folder]))
    # Each save opens its temporary file twice (create, then fsync): the 6th open is the 3rd epoch's checkpoint,
    # fully written to its temporary file but not yet renamed over last.pt.
    argv = ["pretrain", str(root), *TINY, "--epochs", "4"]
    child = run_python(kill_on_open(".last.pt.", nth=6) + cli_code(argv))
    assert was_killed(child), child.stderr
    project = Project.open(root)
    ckpt_path = latest_checkpoint(project)
    run_dir = ckpt_path.parent.parent
    partial = list(ckpt_path.parent.glob(".last.pt.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # the interrupted write is left aside ...
    assert load_checkpoint(ckpt_path)["epochs_done"] == 2  # ... and the last complete checkpoint is the one loaded
    assert read_status(run_dir)["state"] == "interrupted"

    resumed = run_python(cli_code([*argv, "--resume"]))
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(ckpt_path)["epochs_done"] == 4
    assert read_status(run_dir)["state"] == "ok"
    events = read_events(run_dir)
    second_start = [i for i, e in enumerate(events) if isinstance(e, Started)][1]
    after = events[second_start:]
    assert any(isinstance(e, Log) and "resuming after epoch 2" in e.message for e in after)
    assert {e.epoch for e in after if isinstance(e, Metric)} == {3, 4}  # epochs 1–2 are not trained again
    assert len(list((root / "runs" / "pretrain").iterdir())) == 1


_LABELLER = """
import sys
from sslinspect.project import Project
store = Project.open(sys.argv[1]).store
for image_id in range(1, 20_001):
    store.set_label(image_id, "good" if image_id % 3 else "scratch")
    print(f"ack {image_id}", flush=True)
"""


def test_kill_during_labelling_keeps_every_acknowledged_label(tmp_path: Path) -> None:
    root = tmp_path / "p.sslproj"
    gui = Project.create(root)  # the GUI keeps the project open and reads while the labeller writes
    gui.store.upsert_images(
        {"source": 1, "relpath": f"{i}.png", "size": 1, "mtime_ns": 1, "status": "ok", "sha256": f"h{i}"}
        for i in range(20_000)  # more than fit in the pipe: the labeller cannot finish before the kill
    )
    proc = start_python(_LABELLER, str(root))
    assert proc.stdout is not None
    acked: list[int] = []
    for line in proc.stdout:
        acked.append(int(line.split()[1]))
        if len(acked) % 25 == 0:
            assert len(gui.store.labels()) >= len(acked)  # concurrent reader sees committed labels
        if len(acked) == 150:
            proc.send_signal(signal.SIGKILL)
            break
    # the acks the iteration had already read ahead into the text buffer, then those still in the pipe, count too
    # (communicate alone reads the pipe's file descriptor and would miss the buffered ones)
    rest = proc.stdout.read()
    proc.communicate(timeout=60)
    acked += [int(line.split()[1]) for line in rest.splitlines()]
    assert proc.returncode == -signal.SIGKILL and len(acked) < 20_000
    gui.close()
    labels = Project.open(root).store.labels()
    assert all(labels.get(i) == ("good" if i % 3 else "scratch") for i in acked)
    assert len(labels) in (len(acked), len(acked) + 1)  # at most the one being acknowledged when killed


def test_kill_just_before_the_export_is_renamed_keeps_the_previous_model(trained_project: Path, tmp_path: Path) -> None:
    """Killed after the parity check passed, while the sidecar is written: the older model at the path is intact."""
    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    target = tmp_path / "line" / "model.onnx"
    target.parent.mkdir()
    old = (root / "exports" / "model" / "model.onnx").read_bytes()
    target.write_bytes(old)
    child = run_python(kill_on_open(".model.json.") + cli_code(["export", str(root), "--out", str(target)]))
    assert was_killed(child), child.stderr
    assert target.read_bytes() == old
    assert [p.name for p in target.parent.iterdir() if p.suffix == ".onnx"] == ["model.onnx"]


@pytest.mark.slow
def test_kill_while_the_graph_is_written_leaves_no_model_and_export_works_again(
    trained_project: Path, tmp_path: Path
) -> None:
    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    target = tmp_path / "line" / "model.onnx"
    child = run_python(kill_on_open(".export-") + cli_code(["export", str(root), "--out", str(target)]))
    assert was_killed(child), child.stderr
    assert not target.exists() and not list(target.parent.glob("*.onnx"))
    again = run_python(cli_code(["export", str(root), "--out", str(target)]))
    assert again.returncode == 0, again.stderr
    sidecar = json.loads(target.with_suffix(".json").read_text())
    assert sidecar["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()


def test_copied_project_opens_elsewhere_with_labels_and_runs(trained_project: Path, tmp_path: Path, demo_data) -> None:  # type: ignore[no-untyped-def]
    original = Project.open(trained_project)
    labels_before = original.store.labels()
    original.close()
    copy = tmp_path / "other machine" / "läne 3.sslproj"
    shutil.copytree(trained_project, copy)
    project = Project.open(copy)
    assert project.store.labels() == labels_before and labels_before
    for stage in ("pretrain", "fewshot"):
        latest = project.latest(stage)
        assert latest is not None and latest.is_relative_to(copy) and latest.is_dir()
    assert latest_checkpoint(project).is_relative_to(copy)
    images = tmp_path / "other machine" / "images"
    shutil.copytree(demo_data.unlabeled_dir, images)
    project.relink_source(project.sources[0].id, images)  # the image folder has another path on this machine
    scan = api.scan_images(project)
    assert scan.new == 0 and scan.missing == 0 and project.store.labels() == labels_before
    result = api.fit_fewshot(project)  # the copied runs are found and used
    assert Path(result.run_dir).parts[0] == "runs" and (copy / result.run_dir).is_dir()
