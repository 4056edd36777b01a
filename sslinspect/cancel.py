"""Cooperative cancellation and pausing, in-process or across processes via sentinel files.

The GUI runs long jobs in a worker process and controls it by creating files in a control folder: ``cancel`` asks
the job to stop at the next safe point (after saving a checkpoint), ``pause`` holds it until the file is removed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol


class CancelToken(Protocol):
    """Polled by long-running loops at safe points."""

    def is_cancelled(self) -> bool:
        """True once cancellation was requested."""

    def is_paused(self) -> bool:
        """True while the job should hold."""


class _Never:
    def is_cancelled(self) -> bool:
        return False

    def is_paused(self) -> bool:
        return False


NEVER: CancelToken = _Never()


class EventToken:
    """An in-process token backed by :class:`threading.Event` objects."""

    def __init__(self) -> None:
        """Create a token that is neither cancelled nor paused."""
        self._cancel = threading.Event()
        self._pause = threading.Event()

    def cancel(self) -> None:
        """Request cancellation (also releases a pause)."""
        self._cancel.set()

    def pause(self, paused: bool = True) -> None:
        """Hold (``True``) or release (``False``) the job."""
        if paused:
            self._pause.set()
        else:
            self._pause.clear()

    def is_cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancel.is_set()

    def is_paused(self) -> bool:
        """True while paused."""
        return self._pause.is_set()


class FileToken:
    """Cancelled when ``<folder>/cancel`` exists; paused while ``<folder>/pause`` exists.

    Also cancelled by :meth:`cancel` in-process (used by the CLI's SIGINT/SIGTERM handler).
    """

    def __init__(self, folder: Path) -> None:
        """Watch ``folder`` (it need not exist yet)."""
        self.folder = Path(folder)
        self._local = threading.Event()

    def cancel(self) -> None:
        """Request cancellation from inside this process."""
        self._local.set()

    def is_cancelled(self) -> bool:
        """True once cancelled locally or the ``cancel`` file exists."""
        return self._local.is_set() or (self.folder / "cancel").exists()

    def is_paused(self) -> bool:
        """True while the ``pause`` file exists."""
        return (self.folder / "pause").exists()


def wait_while_paused(token: CancelToken, poll_s: float = 0.2) -> None:
    """Block while ``token`` is paused; return at once when it is cancelled or released."""
    while token.is_paused() and not token.is_cancelled():
        time.sleep(poll_s)
