"""Issue 12, small trust bugs, each pinned: a literal "&" in a form label, a recent project that needs a double
click, locked steps without a reason, and error dialogs that tell the user to run a CLI flag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QLabel

from app.pages.project_page import NewProjectDialog
from app.widgets.error_dialog import error_box
from sslinspect import api

pytestmark = pytest.mark.gui


def test_form_labels_with_a_mnemonic_have_a_buddy(qtbot: Any, tmp_path: Path) -> None:
    """'&Location:' showed a literal ampersand: its row is a layout, which gets no buddy."""
    dialog = NewProjectDialog(str(tmp_path))
    qtbot.addWidget(dialog)
    form = dialog.findChild(QFormLayout) or dialog.layout()
    labels = [w for w in dialog.findChildren(QLabel) if "&" in w.text()]
    assert labels and form is not None
    assert all(lab.buddy() is not None for lab in labels), [lab.text() for lab in labels if lab.buddy() is None]


def test_one_click_on_a_recent_project_opens_it(window: Any, controller: Any, tmp_path: Path, qtbot: Any) -> None:
    root = tmp_path / "r.sslproj"
    api.create_project(root).close()
    controller.settings.add_recent_project(root)
    page = window.pages[0]
    page.refresh_recent()
    item = page.recent.item(0)
    rect = page.recent.visualItemRect(item)
    qtbot.mouseClick(page.recent.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert controller.project is not None and controller.project.root.resolve() == root.resolve()


def test_locked_steps_say_why(window: Any) -> None:
    tip = window.steps.item(3).toolTip()
    assert tip.startswith("Locked: finish step Project first") and "Create or open a project" in tip


@pytest.mark.parametrize(
    "message",
    [
        "Fitting failed: internal error ValueError: y has 1 class (run with --debug for details)",
        "no trained classifier yet (run `sslinspect train` first)",
        "use --force to export anyway; FP16 differs by 0.2",
    ],
)
def test_error_dialogs_never_mention_cli_flags(qtbot: Any, message: str) -> None:
    box = error_box(None, message, "Traceback ...")
    qtbot.addWidget(box)
    assert "--" not in box.text() and "sslinspect " not in box.text() and box.text()
    assert box.detailedText() == "Traceback ..."
