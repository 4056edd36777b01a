"""Run folders: ``config.json``, an append-only ``events.jsonl``, ``status.json``; one ``Finished`` event per run.

A run folder is never modified after ``Finished`` apart from ``status.json``. A run whose process was killed keeps
``"state": "running"`` in its ``status.json``; :func:`read_status` reports it as ``interrupted``. Torch-free: the
name of a pretraining run's checkpoint and :func:`latest_checkpoint` live here so every layer (and the GUI) can
find one without importing the training code.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sslinspect.errors import Cancelled, ProjectError
from sslinspect.events import (
    Event,
    Finished,
    JsonlReporter,
    Reporter,
    Started,
    TeeReporter,
    decode_event,
)
from sslinspect.fsutil import atomic_write_json, describe_os_error, read_json

if TYPE_CHECKING:
    from sslinspect.project import Project

MIN_IMAGES = 8  # the fewest readable images pretraining accepts
CHECKPOINT = "checkpoints/last.pt"  # a pretraining run's checkpoint, relative to its run folder
TYPING_SUGGESTIONS = "typing_suggestions.csv"  # a fewshot run's Label-page suggestions (written by fit)


def find_checkpoint(project: Project) -> Path | None:
    """The checkpoint of the latest pretraining run that has one (the ``latest`` pointer first), or None."""
    latest = project.latest("pretrain")
    candidates = ([latest] if latest else []) + list(reversed(project.runs("pretrain")))
    return next((run / CHECKPOINT for run in candidates if (run / CHECKPOINT).is_file()), None)


def latest_checkpoint(project: Project) -> Path:
    """The checkpoint of the latest pretraining run that has one.

    Raises:
        ProjectError: if no pretraining run has saved a checkpoint yet.
    """
    found = find_checkpoint(project)
    if found is None:
        raise ProjectError(f"{project.root}: no pretraining checkpoint yet (run `sslinspect pretrain` first)")
    return found


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class RunMoved(ProjectError):
    """The run folder (with its project) was moved or deleted while the job ran; the job stops."""


@dataclass(slots=True)
class Run:
    """An open run: its folder, and a reporter that also appends to its ``events.jsonl``.

    The folder's identity (device, inode) is taken when the run opens. Every event and every status write
    checks it: a project moved or deleted while the job runs stops the job with :class:`RunMoved` instead of
    writing the rest of the run into a re-created folder at the old path.
    """

    stage: str
    dir: Path
    report: Reporter
    _log: IO[str]
    _where: tuple[int, int] = (0, 0)

    @property
    def run_id(self) -> str:
        """The folder name, e.g. ``20261122-101500-simclr``."""
        return self.dir.name

    def check_in_place(self) -> None:
        """Raise :class:`RunMoved` if the run folder is no longer where the run opened it."""
        try:
            st = self.dir.stat()
            here = (st.st_dev, st.st_ino) == self._where
        except OSError:
            here = False
        if not here:
            now = _now_at(self._log)
            raise RunMoved(
                f"{self.dir}: the project was moved or deleted while {self.stage} ran; stopped"
                + (f" (the run is now at {now}; continue there)" if now else "")
            )

    def set_status(self, state: str, **extra: Any) -> None:
        """Rewrite ``status.json`` (atomically), keeping earlier fields."""
        self.check_in_place()
        path = self.dir / "status.json"
        status: dict[str, Any] = read_json(path) if path.exists() else {}
        status.update({"state": state, **extra})
        atomic_write_json(path, status)


@contextmanager
def open_run(
    stage: str,
    run_dir: Path,
    config: dict[str, Any],
    *,
    report: Reporter,
    total_steps: int = 0,
    resume: bool = False,
) -> Iterator[Run]:
    """Open (or re-open, for ``resume``) a run folder and report ``Started``; report ``Finished`` on exit.

    ``Cancelled`` inside the block ends the run as ``cancelled`` and is re-raised; any other exception ends it as
    ``failed`` and is re-raised.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume or not (run_dir / "config.json").exists():
            atomic_write_json(run_dir / "config.json", config)
        events = run_dir / "events.jsonl"
        torn = _ends_mid_line(events)
        log = events.open("a", encoding="utf-8")
        if torn:  # the process writing it was killed mid-line: end that line, or our first event would be lost
            log.write("\n")
        st = run_dir.stat()
        run = Run(stage, run_dir, report, log, (st.st_dev, st.st_ino))
        tee = TeeReporter(report, JsonlReporter(log))

        def guarded(event: Event) -> None:
            run.check_in_place()
            tee(event)

        run.report = guarded
        run.set_status("running", pid=os.getpid(), host=platform.node(), started=_now(), ended=None)
    except OSError as exc:
        raise ProjectError(f"{run_dir}: cannot write the run folder ({describe_os_error(exc)})") from exc
    run.report(Started(stage=stage, run_id=run.run_id, total_steps=total_steps))
    try:
        yield run
    except Cancelled as exc:
        _finish(run, Finished(stage=stage, status="cancelled", error_type="Cancelled", error_message=str(exc)))
        raise
    except BaseException as exc:
        if not isinstance(exc, RunMoved):  # whatever failed, in a folder that moved away the move is the cause
            try:
                run.check_in_place()
            except RunMoved as moved:
                raise moved from exc
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _finish(run, Finished(stage=stage, status="failed", error_type=type(exc).__name__, error_message=msg), msg)
        raise
    else:
        _finish(run, Finished(stage=stage, status="ok"), strict=True)
    finally:
        log.close()


def _finish(run: Run, event: Finished, error: str | None = None, *, strict: bool = False) -> None:
    """Report ``event`` and record it in ``status.json``.

    When the job already failed (``strict`` False), a full disk must not hide the original error: the status is
    then left as ``running`` (read back as ``interrupted``). A successful job whose status cannot be saved fails.
    """
    extra = {"ended": _now(), **({"error": error} if error else {})}
    try:
        run.report(event)
        run.set_status(event.status, **extra)
    except RunMoved:
        if strict:  # "success" into a folder that is gone is not success
            raise
    except OSError as exc:
        if strict:
            raise ProjectError(f"{run.dir}: cannot write the run folder ({describe_os_error(exc)})") from exc


def _now_at(log: IO[str]) -> str:
    """Where the run folder is now, found through the still-open ``events.jsonl`` (Linux; '' elsewhere)."""
    try:
        target = str(Path(f"/proc/self/fd/{log.fileno()}").readlink())
    except (OSError, ValueError):
        return ""
    return "" if target.endswith(" (deleted)") else str(Path(target).parent)


def _ends_mid_line(path: Path) -> bool:
    """True when ``path`` exists, is not empty and does not end with a newline."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except FileNotFoundError:
        return False


def read_events(run_dir: Path) -> list[Event]:
    """Events of a run, in order; a torn last line (killed process) is skipped."""
    path = Path(run_dir) / "events.jsonl"
    out: list[Event] = []
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(decode_event(line))
        except ValueError:
            continue
    return out


def read_status(run_dir: Path) -> dict[str, Any]:
    """``status.json`` of a run; a ``running`` run whose process is gone on this machine becomes ``interrupted``.

    Returns ``{"state": "unknown"}`` when the file is missing or unreadable.
    """
    try:
        status = read_json(Path(run_dir) / "status.json")
    except (OSError, ValueError):
        return {"state": "unknown"}
    if not isinstance(status, dict):
        return {"state": "unknown"}
    if status.get("state") == "running" and status.get("host") == platform.node():
        pid = status.get("pid")
        if isinstance(pid, int) and not _alive(pid):
            status["state"] = "interrupted"
    return status


def _alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (POSIX; on Windows assume it does)."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def refuse_running(run_dir: Path, what: str, done: object = None) -> None:
    """Refuse to use the output of a run that is still running (its checkpoint is only an early one).

    Raises:
        ProjectError: when ``status.json`` says running and its process is alive on this machine.
    """
    status = read_status(run_dir)
    if status.get("state") == "running":
        at = f" (its checkpoint holds epoch {done} only)" if done is not None else ""
        raise ProjectError(
            f"{run_dir}: the {what} run is still running{at}; wait for it to finish, or pass --allow-running "
            "to use its latest checkpoint anyway"
        )
