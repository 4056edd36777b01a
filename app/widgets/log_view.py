"""The log dock's view: a read-only text pane capped at a fixed number of lines (old lines drop off)."""

from __future__ import annotations

import time

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit, QWidget

MAX_LINES = 5000


class LogView(QPlainTextEdit):
    """Timestamped log lines; at most ``max_lines`` are kept, so a chatty job cannot grow memory or slow paints."""

    def __init__(self, parent: QWidget | None = None, *, max_lines: int = MAX_LINES) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(max_lines)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setPlaceholderText("Messages from jobs appear here.")

    def add(self, level: str, message: str) -> None:
        """Append one message (multi-line messages stay together)."""
        stamp = time.strftime("%H:%M:%S")
        tag = "" if level.upper() == "INFO" else f"{level.upper()}: "
        self.appendPlainText(f"{stamp}  {tag}{message}")

    def lines(self) -> list[str]:
        """The lines currently kept."""
        return self.toPlainText().splitlines()
