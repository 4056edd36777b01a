"""A job that runs a short function in a superqt thread worker: folder scans, demo generation, analyses.

The function is called as ``fn(report, cancel)``; events it reports are relayed to the GUI thread through a queued
signal, and ``cancel`` is an :class:`~sslinspect.cancel.EventToken` the function polls. Expected failures (the core's
typed errors, OS errors) end the job as ``failed`` with their one-line message; anything else also carries the
traceback in ``error_details`` and is logged, never swallowed.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal
from superqt.utils import create_worker

from app.jobs.base import Job
from sslinspect.api import EventToken
from sslinspect.errors import Cancelled, SSLInspectError
from sslinspect.events import Event, Reporter

log = logging.getLogger(__name__)
TaskFn = Callable[[Reporter, EventToken], Any]


class ThreadJob(Job):
    """Run ``fn(report, cancel)`` on the global QThreadPool.

    Signals:
        returned(object): the function's return value (before ``finished("ok")``).
    """

    returned = Signal(object)
    _relay = Signal(object)

    def __init__(self, stage: str, fn: TaskFn, title: str = "", parent: QObject | None = None) -> None:
        super().__init__(stage, title, parent)
        self._fn = fn
        self._token = EventToken()
        self._worker: Any = None
        self.result: Any = None
        self._relay.connect(self._emit_event)

    @property
    def can_pause(self) -> bool:
        """Thread tasks poll the same token as the core's loops."""
        return True

    def start(self) -> None:
        """Start the worker thread."""
        worker = create_worker(
            self._run,
            _start_thread=False,
            _connect={"returned": self._on_worker_returned, "errored": self._on_worker_errored},
        )
        self._worker = worker
        self._begin()
        worker.start()

    def cancel(self) -> None:
        """Set the cancel token (the function stops at its next check)."""
        super().cancel()
        self._token.cancel()

    def pause(self, paused: bool) -> None:
        """Hold or release the function at its next check."""
        self._token.pause(paused)
        super().pause(paused)

    def wait(self, msecs: int) -> bool:
        """Wait for the worker thread (shutdown only); queued results are delivered by the caller's event loop."""
        from PySide6.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(msecs)
        return not self._worker or not self._worker.is_running

    def _run(self) -> Any:
        def report(event: Event) -> None:
            self._relay.emit(event)

        return self._fn(report, self._token)

    def _on_worker_returned(self, value: Any) -> None:
        self.result = value
        self.returned.emit(value)
        self._end("ok")

    def _on_worker_errored(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            self._end("cancelled", str(exc))
        elif isinstance(exc, (SSLInspectError, OSError)):
            self._end("failed", str(exc), "".join(traceback.format_exception(exc)))
        else:
            details = "".join(traceback.format_exception(exc))
            log.error("%s task failed:\n%s", self.stage, details)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._end("failed", f"internal error {type(exc).__name__}: {first}", details)
