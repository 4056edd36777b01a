"""A job that runs ``python -m sslinspect <command> ... --events jsonl --control DIR`` in a QProcess.

stdout carries one JSON event per line; they are decoded back into :mod:`sslinspect.events` dataclasses and
emitted as ``event_received``. Pause and cancel are files in the control folder; a worker that does not stop within
``cancel_grace_ms`` is terminated, then killed. A crash (no clean exit) becomes ``failed`` with the stderr tail.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

import sslinspect
from app.jobs.base import Job, JobStatus
from sslinspect.events import Finished, Log, decode_event

EXIT_OK, EXIT_CANCELLED = 0, 130
STDERR_TAIL = 200


def worker_environ(threads: int = 1) -> dict[str, str]:
    """The worker's environment: imports this very ``sslinspect`` and uses at most ``threads`` OpenMP threads."""
    env = dict(os.environ)
    root = str(Path(sslinspect.__file__).resolve().parent.parent)
    old = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = root + (os.pathsep + old if old else "")
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("QT_QPA_PLATFORM", None)  # the worker never imports Qt
    return env


def worker_env(threads: int = 1) -> QProcessEnvironment:
    """:func:`worker_environ` as a QProcessEnvironment."""
    env = QProcessEnvironment()
    for key, value in worker_environ(threads).items():
        env.insert(key, value)
    return env


class ProcessJob(Job):
    """Run one ``sslinspect`` command as a supervised worker process.

    Args:
        command: The CLI subcommand and its arguments, e.g. ``["pretrain", "/p/line3.sslproj", "--threads", "1"]``.
        control_dir: Folder for the ``cancel``/``pause`` sentinel files (created; stale files are removed).
        stage: The pipeline stage, for the progress display.
        title: What the status bar says while it runs.
        threads: OpenMP threads of the worker (0 = library default).
        cancel_grace_ms: How long a cancelled worker may take to checkpoint and exit before it is terminated.
    """

    stderr_received = Signal(str)

    def __init__(
        self,
        command: list[str],
        *,
        control_dir: Path,
        stage: str,
        title: str = "",
        threads: int = 1,
        cancel_grace_ms: int = 10_000,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(stage, title, parent)
        self.command = list(command)
        self.control_dir = Path(control_dir)
        self.threads = threads
        self.cancel_grace_ms = cancel_grace_ms
        self._proc: QProcess | None = None
        self._buf = b""
        self._err_buf = b""
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL)
        self._last_failure: Finished | None = None
        self._stop_timer = QTimer(self)
        self._stop_timer.setSingleShot(True)
        self._stop_timer.timeout.connect(self._escalate)
        self._terminated = False
        self._sent_term = False

    @property
    def can_pause(self) -> bool:
        """Workers hold at the next step while ``control_dir/pause`` exists."""
        return True

    def arguments(self) -> list[str]:
        """The full argument list after the Python executable (also shown in the log for reproducibility)."""
        # -P: never import modules planted in the working folder (docs/reliability.md)
        return ["-P", "-m", "sslinspect", *self.command, "--events", "jsonl", "--control", str(self.control_dir)]

    def start(self) -> None:
        """Start the worker process."""
        self.control_dir.mkdir(parents=True, exist_ok=True)
        for name in ("cancel", "pause"):
            (self.control_dir / name).unlink(missing_ok=True)
        proc = QProcess(self)
        proc.setProgram(sys.executable)
        proc.setArguments(self.arguments())
        proc.setProcessEnvironment(worker_env(self.threads))
        proc.readyReadStandardOutput.connect(self._on_proc_stdout)
        proc.readyReadStandardError.connect(self._on_proc_stderr)
        proc.finished.connect(self._on_proc_finished)
        proc.errorOccurred.connect(self._on_proc_error)
        self._proc = proc
        self._begin()
        self._emit_event(Log(level="INFO", message=f"$ {Path(sys.executable).name} {' '.join(self.arguments())}"))
        proc.start()

    def cancel(self) -> None:
        """Create ``control_dir/cancel``; terminate after the grace period, kill if that does not work either."""
        super().cancel()
        if not self.is_running():
            return
        (self.control_dir / "cancel").touch()
        (self.control_dir / "pause").unlink(missing_ok=True)
        if not self._stop_timer.isActive():
            self._stop_timer.start(self.cancel_grace_ms)

    def pause(self, paused: bool) -> None:
        """Create (pause) or remove (resume) ``control_dir/pause``."""
        if not self.is_running():
            return
        flag = self.control_dir / "pause"
        if paused:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)
        super().pause(paused)

    def wait(self, msecs: int) -> bool:
        """Wait for the process to exit (shutdown only); processes the final output."""
        if self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning:
            self._proc.waitForFinished(msecs)
        return not self.is_running()

    def kill(self) -> None:
        """Kill the worker at once (used when the app quits)."""
        if self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning:
            self._terminated = True
            self._proc.kill()

    def stderr_tail(self) -> str:
        """The last lines the worker wrote to stderr."""
        return "\n".join(self._stderr)

    # -- slots --------------------------------------------------------------------------------------------------
    def _escalate(self) -> None:
        proc = self._proc
        if proc is None or proc.state() == QProcess.ProcessState.NotRunning:
            return
        self._terminated = True
        if not self._sent_term:
            self._sent_term = True
            proc.terminate()
            self._stop_timer.start(5_000)
        else:
            proc.kill()

    def _on_proc_stdout(self) -> None:
        assert self._proc is not None
        self._buf += bytes(self._proc.readAllStandardOutput().data())
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            self._handle_line(raw)

    def _handle_line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            return
        try:
            event = decode_event(line)
        except ValueError:  # stdout is reserved for events; anything else is shown, not lost
            event = Log(level="INFO", message=line)
        if isinstance(event, Finished) and event.status == "failed":
            self._last_failure = event
        self._emit_event(event)

    def _on_proc_stderr(self) -> None:
        assert self._proc is not None
        self._err_buf += bytes(self._proc.readAllStandardError().data())
        *lines, self._err_buf = self._err_buf.split(b"\n")
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").rstrip()
            if text:
                self._stderr.append(text)
                self.stderr_received.emit(text)

    def _on_proc_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._stop_timer.stop()
        if self._buf:
            self._handle_line(self._buf)
            self._buf = b""
        if self._err_buf:
            self._stderr.append(self._err_buf.decode("utf-8", errors="replace").rstrip())
            self._err_buf = b""
        details = self.stderr_tail()
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        status: JobStatus
        if exit_code == EXIT_OK and not crashed:
            status, message = "ok", ""
        elif exit_code == EXIT_CANCELLED or (self.cancel_requested() and (crashed or self._terminated)):
            status, message = "cancelled", "cancelled"
        else:
            status = "failed"
            message = self._failure_line(crashed, exit_code)
        self._end(status, message, details)

    def _failure_line(self, crashed: bool, exit_code: int) -> str:
        if self._last_failure is not None and self._last_failure.error_message:
            return self._last_failure.error_message
        for line in reversed(self._stderr):
            if line.startswith("error: "):
                return line.removeprefix("error: ")
        if crashed:
            return f"the {self.stage} worker crashed (see details)"
        return f"the {self.stage} worker stopped with exit code {exit_code} (see details)"

    def _on_proc_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            details = self._proc.errorString() if self._proc else ""
            self._end("failed", f"could not start the worker ({sys.executable})", details)
