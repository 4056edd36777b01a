"""The Job interface every page and the controller program against: start, pause, cancel, events, finished."""

from __future__ import annotations

from typing import Literal

from PySide6.QtCore import QObject, Signal

from sslinspect.events import Event, Progress

JobStatus = Literal["ok", "cancelled", "failed"]


class Job(QObject):
    """A unit of background work that reports :mod:`sslinspect.events` events.

    Signals:
        started: the work began.
        event_received(object): one event (``Started``, ``Progress``, ``Metric``, ``Artifact``, ``Log``, ``Finished``).
        finished(str): the job ended with ``ok``, ``cancelled`` or ``failed`` (emitted exactly once).

    After ``finished``, ``error_message`` is one line and ``error_details`` the technical details (stderr tail or
    traceback) when the job failed.
    """

    started = Signal()
    event_received = Signal(object)
    finished = Signal(str)

    def __init__(self, stage: str, title: str = "", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.stage = stage
        self.title = title or stage
        self.status: JobStatus | None = None
        self.error_message = ""
        self.error_details = ""
        self.last_progress: Progress | None = None
        self._running = False
        self._paused = False
        self._cancel_requested = False

    # -- interface ----------------------------------------------------------------------------------------------
    @property
    def can_pause(self) -> bool:
        """Whether :meth:`pause` does anything for this job."""
        return False

    def start(self) -> None:
        """Begin the work (returns at once)."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Ask the job to stop at the next safe point (it keeps what it saved)."""
        self._cancel_requested = True

    def pause(self, paused: bool) -> None:
        """Hold (``True``) or release (``False``) the job, if it supports it."""
        self._paused = paused and self.can_pause

    def wait(self, msecs: int) -> bool:
        """Block up to ``msecs`` for the job to end (shutdown only). Returns True if it ended."""
        return not self._running

    # -- state --------------------------------------------------------------------------------------------------
    def is_running(self) -> bool:
        """True between start and finished."""
        return self._running

    def is_paused(self) -> bool:
        """True while paused."""
        return self._paused

    def cancel_requested(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancel_requested

    # -- helpers for subclasses ---------------------------------------------------------------------------------
    def _begin(self) -> None:
        self._running = True
        self.started.emit()

    def _emit_event(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.last_progress = event
        self.event_received.emit(event)

    def _end(self, status: JobStatus, message: str = "", details: str = "") -> None:
        if not self._running:
            return
        self._running = False
        self._paused = False
        self.status = status
        self.error_message = message
        self.error_details = details
        self.finished.emit(status)
