"""Errors as a dialog: one clear line, the technical details behind a "Show Details..." button."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget


def error_box(parent: QWidget | None, message: str, details: str = "", *, title: str = "SSL Inspect") -> QMessageBox:
    """A (not yet shown) error message box; ``message`` should be one line naming the file and the problem."""
    first = message.strip().splitlines()[0] if message.strip() else "Something went wrong."
    box = QMessageBox(QMessageBox.Icon.Critical, title, first, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("errorDialog")
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if details.strip():
        box.setDetailedText(details.strip())
    return box


def show_error(parent: QWidget | None, message: str, details: str = "") -> QMessageBox:
    """Show an error dialog without blocking (window-modal); it deletes itself when closed."""
    box = error_box(parent, message, details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.open()
    return box
