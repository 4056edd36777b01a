"""Pretrain step with scripted worker events: live plots, progress, embedding map, collapse warning, pause/cancel,
resume, and replay of a past run's plots when a project is opened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sslinspect import api
from sslinspect.events import Artifact, Event, Finished, Log, Metric, Progress, Started
from tests.app.conftest import write_map, write_pretrain_run

pytestmark = pytest.mark.gui


def _run_events(root: Path, n: int, *, collapse_at: int | None = None) -> list[Event]:
    """What a pretraining worker reports: cache progress, metrics per interval, checkpoint, embedding map."""
    with api.open_project(root) as p:
        run = p.new_run_dir("pretrain", "simclr")
        ids = np.array([r.id for r in p.store.images()], np.int64)
    write_map(run / "embedding_map" / "epoch_0001.npz", ids)
    events: list[Event] = [
        Started(stage="pretrain", run_id=run.name, total_steps=n),
        Progress(stage="cache", step=36, total=36, message="decoding images at 64px"),
    ]
    for s in range(1, n + 1):
        spread = 0.01 if collapse_at is not None and s >= collapse_at else 0.8
        events += [
            Metric(stage="pretrain", name="loss", value=4.0 - 0.01 * s, step=s, epoch=1),
            Metric(stage="pretrain", name="lr", value=0.05, step=s, epoch=1),
            Metric(stage="pretrain", name="images_per_s", value=120.0, step=s, epoch=1),
            Metric(stage="pretrain", name="emb_std", value=spread, step=s, epoch=1),
            Metric(stage="pretrain", name="knn_acc", value=0.5, epoch=s),  # per epoch, step 0 (as the worker sends)
            Progress(stage="pretrain", step=s, total=n, message=f"epoch 1/1 loss {4.0 - 0.01 * s:.4f} ETA 00:0{n - s}"),
        ]
    rel = f"runs/pretrain/{run.name}"
    events += [
        Artifact(kind="checkpoint", path=f"{rel}/checkpoints/last.pt"),
        Artifact(kind="embedding_map", path=f"{rel}/embedding_map/epoch_0001.npz"),
        Log(level="INFO", message="pretrained 1 epoch"),
        Finished(stage="pretrain", status="ok"),
    ]
    return events


def _open_pretrain(window: Any, controller: Any, root: Path) -> Any:
    assert controller.open_project(root)
    assert window.go_to(2)
    return window.pages[2]


def test_live_run_fills_plots_progress_and_map(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    page = _open_pretrain(window, controller, scanned_project)
    qtbot.waitUntil(lambda: "No GPU found" in page.device_label.text(), timeout=5000)
    fake_workers.script(
        "pretrain", _run_events(scanned_project, 30), before_finish=lambda: write_pretrain_run(scanned_project)
    )
    assert page.start_button.isEnabled() and not page.cancel_button.isEnabled()
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        job = page.start()
        assert job is not None and page.cancel_button.isEnabled() and not page.start_button.isEnabled()
        assert not window.next_button.isEnabled()
    cmd = fake_workers.jobs[0].command
    assert cmd[:4] == ["pretrain", str(scanned_project.resolve()), "--threads", "1"] and cmd[-2] == "--config"
    sent = json.loads(Path(cmd[-1]).read_text(encoding="utf-8"))["pretrain"]
    assert sent["method"] == "synthdefect" and sent["image_size"] == 0  # the CPU preset: defect-aware, native size
    assert sent["max_minutes"] == 15.0 and sent["threads"] == 1
    loss_x, loss_y = page.plots.plot_for("loss").series_data(page.plots.series_for("loss"))
    assert len(loss_x) == 30 and loss_y[-1] == pytest.approx(3.7)
    knn = page.plots.plot_for("knn_acc")  # a plot appears for new metrics
    knn_x, _ = knn.series_data(page.plots.series_for("knn_acc"))
    assert list(knn_x) == list(range(1, 31)) and knn.axis_labels()[0] == "epoch"  # not a vertical line at x = 0
    assert page.map.view.count == 36 and "epoch 1" in page.map.info.text()
    assert page.status_label.text() == "Finished. Go on to Label."
    assert not page.warning.isVisible()
    assert window.next_button.isEnabled() and page.start_button.isEnabled()


def test_collapse_warning_appears_when_the_embedding_spread_drops(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    page = _open_pretrain(window, controller, scanned_project)
    fake_workers.script("pretrain", _run_events(scanned_project, 12, collapse_at=8))
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        page.start()
    assert page.warning.isVisible() and "collapse" in page.warning.text() and "step 8" in page.warning.text()


def test_pause_resume_and_cancel(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    page = _open_pretrain(window, controller, scanned_project)
    fake_workers.script("pretrain", _run_events(scanned_project, 400), interval_ms=5)
    job = page.start()
    qtbot.waitUntil(lambda: page.progress.value() > 2, timeout=5000)
    page.pause_button.click()
    assert job.is_paused() and page.pause_button.text() == "&Resume"
    page.pause_button.click()
    assert not job.is_paused()
    with qtbot.waitSignal(controller.job_finished, timeout=5000) as done:
        page.cancel_button.click()
    assert done.args[1] == "cancelled"
    assert "checkpoint was kept" in page.status_label.text()
    assert not page.pause_button.isChecked() and page.start_button.isEnabled()


def test_resume_is_offered_for_a_stopped_run(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    write_pretrain_run(scanned_project, state="cancelled")
    page = _open_pretrain(window, controller, scanned_project)
    assert page.resume_button.isEnabled()
    fake_workers.script("pretrain", [Finished(stage="pretrain", status="ok")])
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        page.resume_button.click()
    assert "--resume" in fake_workers.jobs[0].command
    assert (
        len(page.plots.plot_for("loss").series_data(page.plots.series_for("loss"))[0]) == 20
    )  # the replayed curve is kept on resume


def test_plots_speak_in_words_and_units(window: Any, controller: Any, scanned_project: Path) -> None:
    """Issue 12: raw names (eta_s, epoch_loss) reached the screen; every plot names its series and axes in words."""
    page = _open_pretrain(window, controller, scanned_project)
    for name, value in (("epoch_loss", 3.0), ("eta_s", 120.0), ("gpu_mem_gb", 1.5)):
        page.plots.add(Metric(stage="pretrain", name=name, value=value, step=5, epoch=1))
    page.plots.flush()
    texts = " ".join(p.header_text() + " ".join(p.axis_labels()) for p in page.plots.plots.values())
    assert "eta_s" not in texts and "epoch_loss" not in texts and "_" not in texts
    eta = page.plots.plot_for("eta_s")
    assert eta.axis_labels() == ("training step", "minutes")
    assert eta.series_data(page.plots.series_for("eta_s"))[1][-1] == pytest.approx(2.0)  # 120 s shown as 2 min


def test_opening_a_project_replays_the_latest_run(window: Any, controller: Any, scanned_project: Path) -> None:
    run = write_pretrain_run(scanned_project, steps=25)
    page = _open_pretrain(window, controller, scanned_project)
    assert len(page.plots.plot_for("loss").series_data(page.plots.series_for("loss"))[0]) == 25
    assert len(page.plots.plot_for("lr").series_data(page.plots.series_for("lr"))[0]) == 25
    assert page.map.view.count == 36
    assert page.run_label.text() == f"Run {run.name}: ok"


def test_map_selection_is_labelled(window: Any, controller: Any, scanned_project: Path) -> None:
    write_pretrain_run(scanned_project)
    page = _open_pretrain(window, controller, scanned_project)
    page.tabs.setCurrentWidget(page.map)
    xy = page.map.view._xy
    box = np.array([[xy[:, 0].min() - 1, -10], [np.median(xy[:, 0]), -10], [np.median(xy[:, 0]), 10], [-99, 10]])
    page.map.view.select_polygon(box)
    chosen = page.map.selected_ids()
    assert 10 <= len(chosen) <= 26
    page.map.class_box.setCurrentText("disc")
    page.map.apply_button.click()
    labels = controller.project.store.labels()
    assert all(labels[i] == "disc" for i in chosen)
    page.map.clear_button.click()
    assert not set(chosen) & set(controller.project.store.labels())


def test_map_colours_by_anomaly_score_once_a_model_is_trained(
    window: Any, controller: Any, scanned_project: Path
) -> None:
    from tests.app.conftest import write_fewshot_run

    write_pretrain_run(scanned_project)
    write_fewshot_run(scanned_project)
    page = _open_pretrain(window, controller, scanned_project)
    page.map.color_by.setCurrentText("Anomaly score")
    assert "anomaly score" in page.map.legend.text()
    assert len(page.map.view._groups) > 1  # points spread over score bins


def test_a_resumed_run_keeps_its_own_settings(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    """Issue 12: Resume after Cancel + reopen continued an 8-epoch "Quick check" as a 20-epoch run."""
    from sslinspect.config import PretrainConfig
    from sslinspect.configio import to_dict

    run = write_pretrain_run(scanned_project, state="cancelled")
    quick = PretrainConfig(method="simclr", epochs=8, image_size=64, batch_size=64)
    (run / "config.json").write_text(json.dumps({"pretrain": to_dict(quick)}), encoding="utf-8")
    page = _open_pretrain(window, controller, scanned_project)
    assert page.form.value().epochs != 8  # the page opened on its preset
    fake_workers.script("pretrain", [Finished(stage="pretrain", status="ok")])
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        page.resume_button.click()
    cmd = fake_workers.jobs[0].command
    sent = json.loads(Path(cmd[-1]).read_text(encoding="utf-8"))["pretrain"]
    assert "--resume" in cmd and sent["epochs"] == 8 and sent["image_size"] == 64
    assert page.form.value().epochs == 8 and page.preset.currentText() == "Custom"


def test_pause_is_not_overwritten_by_a_late_progress_event(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    """Issue 12: after Pause the status went back to "Step 5/20 … ETA" and the header still said "running"."""
    page = _open_pretrain(window, controller, scanned_project)
    fake_workers.script("pretrain", _run_events(scanned_project, 400), interval_ms=5)
    job = page.start()
    qtbot.waitUntil(lambda: "running" in page.run_label.text() and page.progress.value() > 2, timeout=5000)
    page.pause_button.click()
    controller.job_event.emit(Progress(stage="pretrain", step=5, total=20, message="epoch 1/1 ETA 00:09"))
    qtbot.wait(300)  # longer than the progress coalescer's interval
    assert page.status_label.text().startswith("Paused") and page.run_label.text().endswith(": paused")
    page.pause_button.click()
    assert page.run_label.text().endswith(": running")
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        job.cancel()


def test_device_detection_does_not_move_the_buttons(window: Any, controller: Any, scanned_project: Path) -> None:
    """Issue 12: text jumped after device detection, so a first click on Resume missed."""
    from PySide6.QtWidgets import QApplication

    from app.jobs.device import DeviceInfo

    page = _open_pretrain(window, controller, scanned_project)
    page.device_label.setText("detecting…")
    QApplication.processEvents()
    before = page.resume_button.mapTo(page, page.resume_button.rect().topLeft())
    page._on_device_detected(DeviceInfo("cpu", False))
    QApplication.processEvents()
    assert page.resume_button.mapTo(page, page.resume_button.rect().topLeft()) == before


def test_diagnostic_plots_sit_behind_an_advanced_toggle_that_is_remembered(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    """Issue 12: "the diagnostic plots behind an 'Advanced' toggle"; the loss curve stays in view."""
    from app.pages.pretrain_page import PretrainPage

    page = _open_pretrain(window, controller, scanned_project)
    fake_workers.script("pretrain", _run_events(scanned_project, 12))
    with qtbot.waitSignal(controller.job_finished, timeout=10_000):
        page.start()
    plots = page.plots
    diagnostics = ("emb_std", "knn_acc", "lr", "images_per_s")
    assert not plots.advanced_toggle.isChecked() and plots.advanced_toggle.isVisible()
    assert plots.plot_for("loss").isVisible()
    assert not any(plots.plot_for(m).isVisible() for m in diagnostics)
    assert len(plots.plot_for("emb_std").series_data(plots.series_for("emb_std"))[0]) == 12  # data kept while hidden
    plots.advanced_toggle.click()
    assert all(plots.plot_for(m).isVisible() for m in diagnostics) and plots.plot_for("loss").isVisible()
    assert controller.settings.advanced_plots()
    again = PretrainPage(controller)  # the next session opens it as it was left
    qtbot.addWidget(again)
    assert again.plots.advanced_shown()
    plots.advanced_toggle.click()
    assert not plots.plot_for("emb_std").isVisible() and not controller.settings.advanced_plots()


def test_time_left_follows_the_time_budget(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any, tiny_pretrain: Any
) -> None:
    """Issue 12: the Quick-check preset (3-minute budget) showed "24 min left": time left followed the epochs."""
    from dataclasses import replace

    from sslinspect.events import CollectingReporter

    budget_s = 0.6
    reporter = CollectingReporter()  # a real (in-process) run: its events are what the worker sends the page
    with api.open_project(scanned_project) as p:
        api.pretrain(p, replace(tiny_pretrain, epochs=1000, max_minutes=budget_s / 60, log_every=1), report=reporter)
    page = _open_pretrain(window, controller, scanned_project)
    events = [e for e in reporter.events if not isinstance(e, Finished)]
    filler = [Log(level="DEBUG", message="still running")] * 3000  # keeps the job running while the test looks
    fake_workers.script("pretrain", events + filler, interval_ms=1)
    job = page.start()
    last = [e for e in events if isinstance(e, Progress) and e.stage == "pretrain"][-1]
    # the pretraining stage's last step, not the image decoding before it: that can reach the same count and
    # bar (seen once under a loaded CI run), so wait for the pretraining's own status line as well
    qtbot.waitUntil(
        lambda: (
            (page.progress.value(), page.progress.maximum()) == (last.step, last.total)
            and "time limit; 1000 epochs would take" in page.status_label.text()
        ),
        timeout=10_000,
    )
    assert page.progress.maximum() == last.total < 1000 * 36 // 8  # the bar ends where the budget does
    page.plots.set_advanced(True)
    page.plots.flush()
    _, minutes = page.plots.plot_for("eta_s").series_data(page.plots.series_for("eta_s"))
    assert len(minutes) and max(minutes) <= budget_s / 60
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        job.cancel()


def test_the_page_reopens_on_the_preset_chosen_for_the_project(
    window: Any, controller: Any, scanned_project: Path, tmp_path: Path
) -> None:
    """Issue 11: the Pretrain page reopened on "Recommended" although the user had chosen another preset."""
    import shutil

    other = tmp_path / "other.sslproj"
    shutil.copytree(scanned_project, other)
    page = _open_pretrain(window, controller, scanned_project)
    quick = page.preset.findText("Quick check (a few minutes)")
    page.preset.setCurrentIndex(quick)
    assert page.form.value().max_minutes == 3.0
    page = _open_pretrain(window, controller, other)  # never chosen there: the first preset
    assert page.preset.currentIndex() == 0
    page = _open_pretrain(window, controller, scanned_project)
    assert page.preset.currentIndex() == quick and page.form.value().max_minutes == 3.0
    controller.close_project()
    page = _open_pretrain(window, controller, scanned_project)
    assert page.preset.currentText() == "Quick check (a few minutes)"
