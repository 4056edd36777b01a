"""AppController: owns the open project and the current job; pages read from it and send requests to it.

No widgets here. Long work is a :class:`~app.jobs.base.Job`: worker processes for pretraining, training and export
(built by ``job_factory``, which tests replace with a scripted fake), thread tasks for scans and the demo project.
One job runs at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths, Signal

from app.jobs import Job, ProcessJob, ThreadJob
from app.settings import Settings
from sslinspect import api
from sslinspect.api import EventToken, Project
from sslinspect.errors import SSLInspectError
from sslinspect.events import Event, Log, Reporter

log = logging.getLogger(__name__)
JobFactory = Callable[[list[str], Path, str, str], Job]


def default_demo_dir() -> Path:
    """Where "Open demo project" puts the demo data and project (per user, outside any project)."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(base or Path.home() / ".sslinspect") / "demo"


class AppController(QObject):
    """The application state: project, status, current job.

    Signals:
        project_changed(object): a project was opened or closed (``Project`` or None).
        status_changed(object): the project's :class:`~sslinspect.review.ProjectStatus` was refreshed.
        job_started(object): a job began; job_event(object) carries each of its events; job_finished(object, str)
            gives the job and its status.
        labels_changed(object): labels of these image ids changed (list of ints).
        classes_changed: classes were added, renamed or recoloured.
        error_occurred(str, str): one-line message and details, for the error dialog.
        message(str, str): level and text, for the log dock.
    """

    project_changed = Signal(object)
    status_changed = Signal(object)
    job_started = Signal(object)
    job_event = Signal(object)
    job_finished = Signal(object, str)
    labels_changed = Signal(object)
    classes_changed = Signal()
    error_occurred = Signal(str, str)
    message = Signal(str, str)

    def __init__(self, settings: Settings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings or Settings()
        self.project: Project | None = None
        self.status: api.ProjectStatus | None = None
        self.job: Job | None = None
        self.threshold: float | None = None  # anomaly threshold chosen on the Fit page (None: the calibrated one)
        self.demo_dir = default_demo_dir()
        self.job_factory: JobFactory = self._process_job

    # -- project ------------------------------------------------------------------------------------------------
    def open_project(self, path: Path) -> bool:
        """Open the project at ``path``; errors go to ``error_occurred``. Returns True on success."""
        try:
            project = api.open_project(Path(path))
        except SSLInspectError as exc:
            self.error_occurred.emit(str(exc), "")
            self.settings.remove_recent_project(Path(path))
            return False
        self._set_project(project)
        return True

    def create_project(self, path: Path, name: str | None = None) -> bool:
        """Create a project folder at ``path`` and open it. Returns True on success."""
        try:
            project = api.create_project(Path(path), name=name or None)
        except SSLInspectError as exc:
            self.error_occurred.emit(str(exc), "")
            return False
        self._set_project(project)
        return True

    def close_project(self) -> None:
        """Close the current project (refused while a job runs)."""
        if self.project is None or self.is_busy():
            return
        self.project.close()
        self.project = None
        self.status = None
        self.project_changed.emit(None)
        self.status_changed.emit(None)

    def _set_project(self, project: Project) -> None:
        if self.project is not None:
            self.project.close()
        self.project = project
        self.threshold = None
        self.settings.add_recent_project(project.root)
        self.message.emit("INFO", f"opened project {project.root}")
        self._read_status()  # before project_changed: pages read the new project's status in their slots
        self.project_changed.emit(project)
        self.status_changed.emit(self.status)

    def _read_status(self) -> api.ProjectStatus | None:
        self.status = None
        if self.project is not None:
            try:
                self.status = api.project_status(self.project)
            except (SSLInspectError, OSError, ValueError) as exc:
                self.error_occurred.emit(f"{self.project.root}: cannot read the project ({exc})", "")
        return self.status

    def refresh_status(self) -> api.ProjectStatus | None:
        """Re-read what the project holds (after jobs and edits) and emit ``status_changed``."""
        if self.project is None or self._read_status() is None:
            return None
        self.status_changed.emit(self.status)
        return self.status

    def open_demo(self) -> Job | None:
        """Create (or reopen) the demo project in the background, then open it."""
        out = self.demo_dir

        def task(report: Reporter, cancel: EventToken) -> Path:
            project = api.open_demo_project(out, report=report, cancel=cancel)
            project.close()
            return project.root

        job = ThreadJob("demo", task, "Preparing the demo project")
        job.returned.connect(lambda root: self.open_project(Path(root)))
        return job if self.start_job(job) else None

    # -- images -------------------------------------------------------------------------------------------------
    def add_source(self, folder: Path) -> bool:
        """Add an image folder to the project (scan it afterwards)."""
        if self.project is None:
            return False
        try:
            self.project.add_source(Path(folder))
        except SSLInspectError as exc:
            self.error_occurred.emit(str(exc), "")
            return False
        self.refresh_status()
        return True

    def remove_source(self, source_id: int) -> None:
        """Remove an image folder and forget its images and their labels."""
        if self.project is not None and not self.is_busy():
            self.project.remove_source(source_id)
            self.refresh_status()
            self.labels_changed.emit([])

    def start_scan(self) -> Job | None:
        """Scan the project's folders in a thread (its own database connection)."""
        if self.project is None:
            return None
        root = self.project.root

        def task(report: Reporter, cancel: EventToken) -> api.ScanResult:
            with api.open_project(root) as project:
                return api.scan_images(project, report=report, cancel=cancel)

        job = ThreadJob("scan", task, "Scanning images")
        return job if self.start_job(job) else None

    # -- worker jobs ----------------------------------------------------------------------------------------------
    def run_worker(
        self, command: list[str], *, stage: str, title: str, config: dict[str, object] | None = None
    ) -> Job | None:
        """Run ``sslinspect <command...>`` as the current job.

        ``config`` (sections such as ``{"pretrain": {...}}``) is written to a file in the project's control folder
        and passed as ``--config``, so the worker validates exactly what the form showed.
        """
        if self.project is None:
            return None
        control = self.project.root / ".control" / stage
        command = list(command)
        if config is not None:
            cfg_file = self.project.root / ".control" / f"{stage}-config.json"
            api.write_config(cfg_file, config)
            command += ["--config", str(cfg_file)]
        job = self.job_factory(command, control, stage, title)
        return job if self.start_job(job) else None

    def _process_job(self, command: list[str], control: Path, stage: str, title: str) -> Job:
        job = ProcessJob(command, control_dir=control, stage=stage, title=title, threads=self.settings.worker_threads())
        job.stderr_received.connect(lambda line: self.message.emit("INFO", line))
        return job

    def start_job(self, job: Job) -> bool:
        """Start ``job`` as the current job, unless one is already running."""
        if self.is_busy():
            self.error_occurred.emit("Another job is still running; wait for it or cancel it first.", "")
            return False
        job.setParent(self)
        self.job = job
        job.event_received.connect(self._on_job_event)
        job.finished.connect(lambda status, j=job: self._on_job_finished(j, status))
        job.start()
        self.job_started.emit(job)  # after start: listeners see a running job
        return True

    def is_busy(self) -> bool:
        """True while a job runs."""
        return self.job is not None and self.job.is_running()

    def cancel_job(self) -> None:
        """Ask the current job to stop (it saves what it has first)."""
        if self.is_busy():
            assert self.job is not None
            self.job.cancel()
            self.message.emit("INFO", f"cancelling {self.job.title.lower()} ...")

    def pause_job(self, paused: bool) -> None:
        """Hold or release the current job."""
        if self.is_busy():
            assert self.job is not None
            self.job.pause(paused)
            self.message.emit("INFO", ("pausing " if paused else "resuming ") + self.job.title.lower())

    def _on_job_event(self, event: Event) -> None:
        if isinstance(event, Log):
            self.message.emit(event.level, event.message)
        self.job_event.emit(event)

    def _on_job_finished(self, job: Job, status: str) -> None:
        if self.project is not None:
            self.refresh_status()
        if status == "failed":
            self.message.emit("ERROR", f"{job.title} failed: {job.error_message}")
            self.error_occurred.emit(f"{job.title} failed: {job.error_message}", job.error_details)
        elif status == "cancelled":
            self.message.emit("INFO", f"{job.title} cancelled")
        else:
            self.message.emit("INFO", f"{job.title} finished")
        self.job_finished.emit(job, status)

    def shutdown(self, msecs: int = 15_000) -> None:
        """Stop the current job (cooperatively, then forcefully) and close the project; used when the app quits."""
        job = self.job
        if job is not None and job.is_running():
            job.cancel()
            if not job.wait(msecs) and isinstance(job, ProcessJob):
                job.kill()
                job.wait(3000)
        if self.project is not None:
            self.project.close()

    # -- labels and classes ---------------------------------------------------------------------------------------
    def set_labels(self, image_ids: Sequence[int], label: str | None) -> None:
        """Label (or, with None, unlabel) images; committed to the database at once."""
        if self.project is None or not image_ids:
            return
        ids = [int(i) for i in image_ids]
        try:
            if label is None:
                for i in ids:
                    self.project.store.clear_label(i)
            else:
                if label not in self.project.classes:
                    label = self.project.add_classes([label])[0]  # as stored (NFC)
                    self.classes_changed.emit()
                self.project.store.set_labels([(i, label) for i in ids])
        except SSLInspectError as exc:
            self.error_occurred.emit(str(exc), "")
            return
        self.refresh_status()  # first: pages that answer labels_changed read the new counts from the status
        self.labels_changed.emit(ids)

    def add_class(self, name: str) -> bool:
        """Add a defect class."""

        def add(p: Project) -> None:
            p.add_classes([name])

        return self._edit_classes(add)

    def rename_class(self, old: str, new: str) -> bool:
        """Rename a class; renaming onto an existing class merges the two."""
        ok = self._edit_classes(lambda p: p.rename_class(old, new))
        if ok:
            self.labels_changed.emit([])
        return ok

    def set_class_color(self, name: str, color: str) -> bool:
        """Change a class's display colour."""
        return self._edit_classes(lambda p: api.set_class_color(p, name, color))

    def _edit_classes(self, fn: Callable[[Project], None]) -> bool:
        if self.project is None:
            return False
        try:
            fn(self.project)
        except SSLInspectError as exc:
            self.error_occurred.emit(str(exc), "")
            return False
        self.classes_changed.emit()
        self.refresh_status()
        return True
