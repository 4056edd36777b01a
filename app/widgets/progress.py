"""Coalescing of frequent updates: a job may report progress hundreds of times a second; the screen needs ~10."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QProgressBar

from sslinspect.events import Progress

T = TypeVar("T")


class Coalescer(QObject, Generic[T]):
    """Calls ``fn(value)`` with the newest submitted value at most once per ``interval_ms`` (O(1) per submit).

    The first value after a quiet period is shown at once; later ones wait for the interval to end.
    """

    def __init__(self, fn: Callable[[T], None], interval_ms: int = 100, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._fn = fn
        self._pending: T | None = None
        self._has = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._fire)

    def submit(self, value: T) -> None:
        """Show ``value`` now if nothing was shown recently, else at the end of the interval."""
        self._pending, self._has = value, True
        if not self._timer.isActive():
            self._fire()
            self._timer.start()

    def flush(self) -> None:
        """Show a pending value now."""
        if self._has:
            self._fire()

    def cancel(self) -> None:
        """Drop a pending value."""
        self._has = False
        self._pending = None

    def _fire(self) -> None:
        if self._has:
            value = self._pending
            self._has, self._pending = False, None
            self._fn(value)  # type: ignore[arg-type]


def show_progress(bar: QProgressBar, event: Progress) -> None:
    """Show ``event`` on ``bar`` (an unknown total shows a full bar rather than a busy one)."""
    bar.setRange(0, max(event.total, 1))
    bar.setValue(event.step)
