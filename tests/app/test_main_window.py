"""The main window and the app entry point: quitting while a job runs asks first, window state and recent projects
are remembered in QSettings, one job at a time, the log dock, themes, ``python -m app``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QMessageBox

from app.main_window import MainWindow
from sslinspect.events import Progress
from tests.app.conftest import progress_events
from tests.conftest import REPO, subprocess_env

pytestmark = pytest.mark.gui


def test_closing_while_a_job_runs_asks_first(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, monkeypatch: Any, qtbot: Any
) -> None:
    assert controller.open_project(scanned_project)
    fake_workers.script("train", progress_events("embed", 10_000), interval_ms=5)
    job = controller.run_worker(["train", str(scanned_project)], stage="train", title="Training")
    assert job is not None and controller.is_busy()
    asked: list[str] = []
    answers = iter([QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes])

    def question(parent: Any, title: str, text: str, *args: Any) -> Any:
        asked.append(text)
        return next(answers)

    monkeypatch.setattr(QMessageBox, "question", question)
    assert not window.close()  # "No": the window stays, the job goes on
    assert window.isVisible() and job.is_running() and asked[0].startswith("Training is still running")
    assert window.close()  # "Yes": the job is stopped, then the window closes
    assert not job.is_running() and job.status == "cancelled" and len(asked) == 2


def test_window_state_is_remembered(controller: Any, settings: Any, qtbot: Any) -> None:
    w = MainWindow(controller)
    w.show()
    w.log_dock.show()
    assert w.close()
    geometry = settings.window_geometry()
    assert geometry is not None and settings.window_state() is not None
    again = MainWindow(controller)  # restores geometry and dock state from the settings
    again.show()
    assert again.log_dock.isVisible()
    assert again.restoreGeometry(geometry)
    again.shutdown()
    again.close()


def test_one_job_at_a_time_and_the_status_bar(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    assert controller.open_project(scanned_project)
    fake_workers.script("train", [Progress(stage="embed", step=3, total=10, message="embedding")] * 50, interval_ms=5)
    errors: list[str] = []
    controller.error_occurred.connect(lambda m, d: errors.append(m))
    first = controller.run_worker(["train", str(scanned_project)], stage="train", title="Training")
    assert window.job_cancel.isVisible() or not window.isVisible()
    assert controller.run_worker(["export", str(scanned_project)], stage="export", title="Export") is None
    assert errors == ["Another job is still running; wait for it or cancel it first."]
    qtbot.waitUntil(lambda: window.job_progress.value() == 3, timeout=5000)
    assert window.job_label.text().startswith("Training: embedding")
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        window.job_cancel.click()
    assert first.status == "cancelled" and not window.job_progress.isVisible()
    assert any("Training cancelled" in line for line in window.log.lines())


def test_log_dock_shows_job_messages(window: Any, controller: Any) -> None:
    controller.message.emit("WARNING", "x.png: truncated")
    assert window.log.lines()[-1].endswith("WARNING: x.png: truncated")
    window.log_dock.toggleViewAction().trigger()
    assert window.log_dock.isVisible()


def test_dark_theme_reaches_the_plots(qapp: Any, monkeypatch: Any, qtbot: Any) -> None:
    from app.theme import apply_theme
    from app.widgets.plots import MetricPlot

    plot = MetricPlot("Loss")
    qtbot.addWidget(plot)
    monkeypatch.setenv("SSLINSPECT_THEME", "dark")
    try:
        apply_theme(qapp)
        qapp.processEvents()  # palette changes reach widgets through posted events
        assert qapp.palette().color(QPalette.ColorRole.Base).lightness() < 60
        assert "#pageTitle" in qapp.styleSheet()
        assert plot._pw.backgroundBrush().color().lightness() < 60
    finally:
        monkeypatch.setenv("SSLINSPECT_THEME", "light")
        apply_theme(qapp)
        qapp.processEvents()
    assert plot._pw.backgroundBrush().color().lightness() > 200


def test_app_start_opens_the_project_given(scanned_project: Path, tmp_path: Path, monkeypatch: Any) -> None:
    from app import main as app_main

    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp_path))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    _app, window = app_main.start([str(scanned_project)])
    try:
        assert window.isVisible() and window.windowTitle() == "gui — SSL Inspect"
        status = window.controller.status
        assert status is not None
        assert status.images == 36
        assert sys.excepthook is not sys.__excepthook__
        assert not QApplication.windowIcon().isNull()
    finally:
        window.shutdown()
        window.close()


def test_python_m_app_help() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "app", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=subprocess_env(),
        timeout=120,
        check=False,
    )
    assert r.returncode == 0 and "--demo" in r.stdout and "PROJECT" in r.stdout.upper()


def test_status_bar_elides_long_text_at_1024_px(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    """Issue 11: at 1024 px the status bar's text was cut off mid-word; now it is elided with "…" (whole in the
    tooltip) and the project and the job message both stay visible."""
    assert controller.open_project(scanned_project)
    message = "embedding " + "very long message about the images being embedded " * 4
    fake_workers.script("train", [Progress(stage="embed", step=3, total=10, message=message)] * 50, interval_ms=5)
    window.resize(1024, 700)
    window.show()
    controller.run_worker(["train", str(scanned_project)], stage="train", title="Training")
    qtbot.waitUntil(lambda: window.job_progress.value() == 3, timeout=5000)
    full = f"Training: {message}"
    assert window.job_label.text() == full and window.job_label.toolTip() == full
    qtbot.waitUntil(lambda: window.job_label.width() > 0)
    for label in (window.job_label, window.project_label):
        shown = label.shown_text()
        assert shown and label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width()
    assert window.job_label.shown_text().endswith("…")
    assert window.statusBar().width() <= 1024
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        window.job_cancel.click()
