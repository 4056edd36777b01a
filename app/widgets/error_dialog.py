"""Errors as a dialog: one clear line, the technical details behind a "Show Details..." button."""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

_CLI_HINT = re.compile(r"\s*\((?:[^()]*?)(?:--[a-z][\w-]*|`sslinspect[^`]*`)(?:[^()]*?)\)")
_CLI_SENTENCE = re.compile(r"\s*[^.;:]*(?:--[a-z][\w-]*|`sslinspect[^`]*`)[^.;]*[.;]?")


def plain_message(message: str) -> str:
    """``message`` without command-line advice: a dialog never tells the user to run a CLI flag or command.

    Examples:
        >>> plain_message("internal error ValueError: bad (run with --debug for details)")
        'internal error ValueError: bad'
        >>> plain_message("no trained classifier yet (run `sslinspect train` first)")
        'no trained classifier yet'
    """
    text = _CLI_HINT.sub("", message)
    text = _CLI_SENTENCE.sub("", text)
    return text.strip().rstrip(":;,") or "Something went wrong (see Show Details…)."


def error_box(parent: QWidget | None, message: str, details: str = "", *, title: str = "SSL Inspect") -> QMessageBox:
    """A (not yet shown) error message box; ``message`` should be one line naming the file and the problem."""
    first = plain_message(message.strip().splitlines()[0]) if message.strip() else "Something went wrong."
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
