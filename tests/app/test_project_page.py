"""Project step: create, open, recent projects (kept in QSettings), errors as a one-line dialog, the demo project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from app.settings import Settings

pytestmark = pytest.mark.gui


def test_create_then_reopen_from_the_recent_list(window: Any, controller: Any, tmp_path: Path) -> None:
    page = window.pages[0]
    assert page.create_project_at(tmp_path / "line3.sslproj", "line3")
    assert controller.project.name == "line3" and (tmp_path / "line3.sslproj" / "project.json").is_file()
    assert page.summary_labels["images"].text().startswith("0 readable")
    controller.close_project()
    assert controller.project is None and not page.is_complete()
    page.refresh_recent()
    assert page.recent.count() == 1
    page._on_recent_activated(page.recent.item(0))
    assert controller.project is not None and controller.project.root == (tmp_path / "line3.sslproj").resolve()
    assert window.windowTitle().startswith("line3")


def test_recent_projects_survive_a_restart(settings: Settings, tmp_path: Path) -> None:
    for name in ("a", "b", "a"):
        (tmp_path / name).mkdir(exist_ok=True)
        settings.add_recent_project(tmp_path / name)
    settings.sync()
    again = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    assert [p.name for p in again.recent_projects()] == ["a", "b"]


def test_opening_a_folder_that_is_no_project_shows_one_clear_line(window: Any, tmp_path: Path, qtbot: Any) -> None:
    (tmp_path / "random").mkdir()
    assert not window.pages[0].open_path(tmp_path / "random")
    box = window.findChild(QMessageBox, "errorDialog")
    assert box is not None and box.isVisible()
    assert box.text() == f"{(tmp_path / 'random').resolve()}: not an SSL Inspect project (no project.json)"
    assert "\n" not in box.text()
    box.close()


def test_demo_project_opens_in_one_click(window: Any, controller: Any, qtbot: Any) -> None:
    page = window.pages[0]
    with qtbot.waitSignal(controller.job_finished, timeout=60_000) as finished:
        job = page.open_demo()
        assert job is not None and not page.demo_button.isEnabled()
    assert finished.args[1] == "ok"
    st = controller.status
    assert controller.project.data["demo"] and st.images == 600 and st.labelled == 25
    assert page.demo_button.isEnabled() and not page.demo_progress.isVisible()
    assert window.next_button.isEnabled()
    assert window.go_to(2) and not window.go_to(3)  # scanned and labelled; pretraining comes next
