"""Jobs: a real worker process (events decoded from JSON lines, failures with one line and details, cancel that
leaves a resumable checkpoint) and thread jobs (events in order, results, typed failures, cancel)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from app.jobs import ProcessJob, ThreadJob
from sslinspect import api
from sslinspect.cancel import EventToken
from sslinspect.errors import Cancelled, DataError
from sslinspect.events import Artifact, Event, Finished, Log, Progress, Reporter, Started

pytestmark = pytest.mark.gui


def _collect(job: Any) -> list[Event]:
    events: list[Event] = []
    job.event_received.connect(events.append)
    return events


def test_process_job_streams_decoded_events(scanned_project: Path, tmp_path: Path, qtbot: Any) -> None:
    job = ProcessJob(["scan", str(scanned_project)], control_dir=tmp_path / "ctl", stage="scan", title="Scanning")
    events = _collect(job)
    with qtbot.waitSignal(job.finished, timeout=120_000) as done:
        job.start()
    assert done.args == ["ok"] and job.status == "ok" and job.error_message == ""
    assert isinstance(events[0], Log) and "-m sslinspect scan" in events[0].message  # the command, for the log
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[0].stage == "scan" and job.last_progress == progress[-1]
    assert "36 readable images" in job.stderr_tail()  # the CLI's summary goes to stderr in events mode


def test_process_job_failure_is_one_line_with_details(tmp_path: Path, qtbot: Any) -> None:
    (tmp_path / "empty").mkdir()
    job = ProcessJob(["pretrain", str(tmp_path / "empty")], control_dir=tmp_path / "ctl", stage="pretrain")
    with qtbot.waitSignal(job.finished, timeout=120_000) as done:
        job.start()
    assert done.args == ["failed"]
    assert job.error_message == f"{(tmp_path / 'empty').resolve()}: not an SSL Inspect project (no project.json)"
    assert "error:" in job.error_details


@pytest.mark.slow
def test_cancelled_pretraining_leaves_a_resumable_checkpoint(
    tiny_image_folder: Path, tiny_pretrain: Any, tmp_path: Path, qtbot: Any
) -> None:
    root = tmp_path / "p.sslproj"
    with api.create_project(root, images=[tiny_image_folder]) as p:
        api.scan_images(p)
    cfg = tmp_path / "cfg.json"
    from sslinspect.configio import to_dict

    cfg.write_text(json.dumps({"pretrain": {**to_dict(tiny_pretrain), "epochs": 200}}), encoding="utf-8")
    job = ProcessJob(
        ["pretrain", str(root), "--config", str(cfg), "--threads", "1"], control_dir=tmp_path / "ctl", stage="pretrain"
    )
    events = _collect(job)
    checkpoints: list[Artifact] = []
    job.event_received.connect(
        lambda e: checkpoints.append(e) if isinstance(e, Artifact) and e.kind == "checkpoint" else None
    )
    job.start()
    qtbot.waitUntil(lambda: len(checkpoints) >= 2, timeout=180_000)  # two epochs done: cancel midway
    job.pause(True)
    assert (tmp_path / "ctl" / "pause").exists()
    job.pause(False)
    with qtbot.waitSignal(job.finished, timeout=60_000) as done:
        job.cancel()
        assert (tmp_path / "ctl" / "cancel").exists()
    assert done.args == ["cancelled"]
    assert [e.status for e in events if isinstance(e, Finished)] == ["cancelled"]
    run = root / checkpoints[-1].path.split("/checkpoints/")[0]
    assert (run / "checkpoints" / "last.pt").is_file()
    assert json.loads((run / "status.json").read_text())["state"] == "cancelled"
    st = api.project_status(api.open_project(root))
    assert st.can_resume and st.checkpoint == run / "checkpoints" / "last.pt"

    # resume: the same run continues from its checkpoint and finishes
    cfg.write_text(json.dumps({"pretrain": {**to_dict(tiny_pretrain), "epochs": 3}}), encoding="utf-8")
    again = ProcessJob(
        ["pretrain", str(root), "--config", str(cfg), "--resume"], control_dir=tmp_path / "ctl", stage="pretrain"
    )
    resumed = _collect(again)
    with qtbot.waitSignal(again.finished, timeout=180_000) as done:
        again.start()
    assert done.args == ["ok"], again.error_details
    started = [e for e in resumed if isinstance(e, Started)]
    assert started and started[0].run_id == run.name
    assert json.loads((run / "status.json").read_text())["state"] == "ok"


def test_thread_job_relays_events_in_order_and_returns(qtbot: Any) -> None:
    def task(report: Reporter, cancel: EventToken) -> int:
        for i in range(1, 4):
            report(Progress(stage="t", step=i, total=3))
        return 42

    job = ThreadJob("t", task)
    events = _collect(job)
    with qtbot.waitSignals([job.started, job.returned, job.finished], order="strict", timeout=10_000):
        job.start()
    assert [cast(Progress, e).step for e in events] == [1, 2, 3] and job.result == 42 and job.status == "ok"


def test_thread_job_failures_and_cancel(qtbot: Any) -> None:
    def bad(report: Reporter, cancel: EventToken) -> None:
        raise DataError("images/: no readable images")

    job = ThreadJob("t", bad)
    with qtbot.waitSignal(job.finished, timeout=10_000) as done:
        job.start()
    assert done.args == ["failed"] and job.error_message == "images/: no readable images"

    def buggy(report: Reporter, cancel: EventToken) -> object:
        return [][1]

    job = ThreadJob("t", buggy)
    with qtbot.waitSignal(job.finished, timeout=10_000):
        job.start()
    assert job.error_message.startswith("internal error IndexError") and "Traceback" in job.error_details

    def stoppable(report: Reporter, cancel: EventToken) -> None:
        while not cancel.is_cancelled():
            report(Progress(stage="t", step=0, total=0))
        raise Cancelled("stopped")

    job = ThreadJob("t", stoppable)
    job.start()
    qtbot.waitUntil(lambda: job.last_progress is not None, timeout=10_000)
    with qtbot.waitSignal(job.finished, timeout=10_000) as done:
        job.cancel()
    assert done.args == ["cancelled"]


def test_device_probe_code_runs_through_the_api() -> None:
    """The GUI asks a child process which device ``auto`` picks; the child goes through ``sslinspect.api``."""
    import subprocess
    import sys

    from app.jobs import device
    from app.jobs.process_job import worker_environ

    assert "sslinspect.model" not in device._CODE and "api.device_info" in device._CODE
    r = subprocess.run(
        [sys.executable, "-c", device._CODE], capture_output=True, text=True, env=worker_environ(1), timeout=120
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert isinstance(info["name"], str) and info["name"] and isinstance(info["cuda"], bool)
