"""Wizard navigation: Next is disabled until a step is valid, unreachable steps cannot be opened, Back keeps state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from tests.app.conftest import write_pretrain_run

pytestmark = pytest.mark.gui


def test_next_is_disabled_until_a_project_is_open(window: Any, tmp_path: Path) -> None:
    assert window.current_index() == 0
    assert not window.next_button.isEnabled() and not window.back_button.isEnabled()
    assert window.next_hint.text() == "Create or open a project to continue."
    assert not window.go_to(2)
    assert not window.steps.item(1).flags() & Qt.ItemFlag.ItemIsEnabled
    assert window.pages[0].create_project_at(tmp_path / "new.sslproj")
    assert window.next_button.isEnabled()
    assert window.go_next() and window.current_index() == 1
    # an empty project: the Images step is not complete, so Next stays disabled and Pretrain is unreachable
    assert not window.next_button.isEnabled() and not window.go_to(2)
    assert "at least 8" in window.next_hint.text()


def test_steps_open_as_far_as_the_project_allows(window: Any, controller: Any, scanned_project: Path) -> None:
    write_pretrain_run(scanned_project)
    assert controller.open_project(scanned_project)
    # project, images, pretrain (checkpoint) and label (2 labels) are complete: Train is reachable, Export not yet
    assert [window.reachable(i) for i in range(6)] == [True, True, True, True, True, False]
    assert window.go_to(4) and window.current_index() == 4
    assert not window.next_button.isEnabled()
    assert window.go_back() and window.current_index() == 3
    window.steps.setCurrentRow(5)  # clicking an unreachable step does nothing
    assert window.current_index() == 3


def test_back_keeps_the_state_of_a_page(window: Any, controller: Any, scanned_project: Path) -> None:
    assert controller.open_project(scanned_project)
    assert window.go_to(2)
    page = window.pages[2]
    page.expert_toggle.setChecked(True)
    page.form.editor("epochs").setValue(3)
    page.form.editor("augment.flip").setChecked(False)
    assert page.preset.currentText() == "Custom"
    assert window.go_back() and window.current_index() == 1
    assert window.go_next() and window.current_index() == 2
    assert page.expert.isVisible() and page.preset.currentText() == "Custom"
    cfg = page.config()
    assert cfg.epochs == 3 and cfg.augment.flip is False and cfg.threads == 1


def test_keyboard_moves_between_steps(window: Any, controller: Any, scanned_project: Path, qtbot: Any) -> None:
    assert controller.open_project(scanned_project)
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=2000)
    qtbot.keyClick(window, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert window.current_index() == 1
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert window.current_index() == 2
    qtbot.keyClick(window, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    assert window.current_index() == 1
