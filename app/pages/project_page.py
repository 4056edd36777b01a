"""Step 1, Project: create or open a project folder, reopen a recent one, or open the built-in demo project."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.jobs import Job
from app.pages.base import Page
from app.widgets.progress import Coalescer
from sslinspect.events import Progress


class NewProjectDialog(QDialog):
    """Name and location of a new project; the folder is ``<location>/<name>.sslproj``."""

    def __init__(self, location: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New project")
        self.name = QLineEdit(placeholderText="e.g. line3-housings")
        self.location = QLineEdit(location)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse_clicked)
        row = QHBoxLayout()
        row.addWidget(self.location, 1)
        row.addWidget(browse)
        self.preview = QLabel()
        self.preview.setObjectName("hint")
        form = QFormLayout(self)
        form.addRow("&Name:", self.name)
        location_label = QLabel("&Location:")
        location_label.setBuddy(self.location)  # a layout row has no buddy of its own: "&" would show literally
        form.addRow(location_label, row)
        form.addRow("", self.preview)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self.name.textChanged.connect(self._update)
        self.location.textChanged.connect(self._update)
        self._update()

    def folder(self) -> Path:
        """The project folder that will be created."""
        name = self.name.text().strip()
        return Path(self.location.text().strip()).expanduser() / (
            name if name.endswith(".sslproj") else f"{name}.sslproj"
        )

    def _update(self) -> None:
        ok = bool(self.name.text().strip()) and bool(self.location.text().strip())
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)
        self.preview.setText(f"Creates {self.folder()}" if ok else "Choose a name and a location.")

    def _on_browse_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Location of the new project", self.location.text())
        if folder:
            self.location.setText(folder)


class ProjectPage(Page):
    """Create, open, recent and demo projects; shows what the open project holds."""

    wrapped_text_height = True

    title = "1  Project"
    explanation = (
        "A project is a folder that keeps the image index, your labels, the training runs and the exported models. "
        "Create one for each production line or product, or open the demo project to try everything on built-in "
        "images."
    )

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        start = QGroupBox("Start")
        self.new_button = QPushButton("&New project…")
        self.open_button = QPushButton("&Open project…")
        self.demo_button = QPushButton("Open &demo project")
        self.demo_button.setToolTip("Generates 600 images of a metal part with five defect types (about 5 s).")
        self.new_button.clicked.connect(self._on_new_clicked)
        self.open_button.clicked.connect(self._on_open_clicked)
        self.demo_button.clicked.connect(self._on_demo_clicked)
        self.demo_progress = QProgressBar()
        self.demo_progress.setVisible(False)
        self._progress_view: Coalescer[Progress] = Coalescer(self._show_progress, parent=self)
        col = QVBoxLayout(start)
        for b in (self.new_button, self.open_button, self.demo_button):
            col.addWidget(b)
        col.addWidget(self.demo_progress)
        col.addStretch(1)

        recent_box = QGroupBox("Recent projects")
        self.recent = QListWidget()
        self.recent.setAccessibleName("Recent projects")
        self.recent.itemActivated.connect(self._on_recent_activated)
        self.recent.itemClicked.connect(self._on_recent_activated)  # a single click opens it, as on a start page
        self.recent.setToolTip("Click a project to open it")
        self.forget_button = QPushButton("Remove from list")
        self.forget_button.clicked.connect(self._on_forget_clicked)
        rl = QVBoxLayout(recent_box)
        rl.addWidget(self.recent, 1)
        rl.addWidget(self.forget_button, 0, Qt.AlignmentFlag.AlignRight)

        top = QHBoxLayout()
        top.addWidget(start, 1)
        top.addWidget(recent_box, 2)
        self.body.addLayout(top, 2)

        self.summary_box = QGroupBox("Open project")
        self.summary = QFormLayout(self.summary_box)
        self.summary_labels: dict[str, QLabel] = {}
        for key, text in (
            ("name", "Name"),
            ("folder", "Folder"),
            ("images", "Images"),
            ("labels", "Labels"),
            ("pretrain", "Pretraining"),
            ("fewshot", "Classifier"),
            ("export", "Exported model"),
        ):
            lab = QLabel("—")
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lab.setWordWrap(True)
            self.summary_labels[key] = lab
            self.summary.addRow(f"{text}:", lab)
        self.body.addWidget(self.summary_box, 1)

        controller.status_changed.connect(self._on_controller_status_changed)
        controller.job_event.connect(self._on_controller_job_event)
        controller.job_finished.connect(self._on_controller_job_finished)
        self.refresh_recent()

    def is_complete(self) -> bool:
        """A project is open."""
        return self.controller.project is not None

    def on_enter(self) -> None:
        """Refresh the recent list (projects may have been moved)."""
        self.refresh_recent()

    # -- actions ------------------------------------------------------------------------------------------------
    def create_project_at(self, folder: Path, name: str | None = None) -> bool:
        """Create and open a project at ``folder``."""
        ok = self.controller.create_project(folder, name)
        self.refresh_recent()
        return ok

    def open_path(self, folder: Path) -> bool:
        """Open the project at ``folder``."""
        ok = self.controller.open_project(folder)
        self.refresh_recent()
        return ok

    def open_demo(self) -> Job | None:
        """Create or reopen the demo project in the background."""
        job = self.controller.open_demo()
        if job is not None:
            self.demo_progress.setRange(0, 0)
            self.demo_progress.setVisible(True)
            self.demo_button.setEnabled(False)
        return job

    def refresh_recent(self) -> None:
        """Fill the recent-projects list from the settings."""
        self.recent.clear()
        for path in self.controller.settings.recent_projects():
            item = QListWidgetItem(f"{path.name}    {path.parent}")
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            item.setToolTip(str(path))
            self.recent.addItem(item)
        if self.recent.count():
            self.recent.setCurrentRow(0)
        self.forget_button.setEnabled(self.recent.count() > 0)

    # -- slots --------------------------------------------------------------------------------------------------
    def _on_new_clicked(self) -> None:
        dlg = NewProjectDialog(self.controller.settings.last_folder("projects"), self)
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.controller.settings.set_last_folder("projects", dlg.folder().parent)
            self.create_project_at(dlg.folder(), dlg.name.text().strip().removesuffix(".sslproj"))

    def _on_open_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Open project folder", self.controller.settings.last_folder("projects")
        )
        if folder:
            self.controller.settings.set_last_folder("projects", Path(folder).parent)
            self.open_path(Path(folder))

    def _on_demo_clicked(self) -> None:
        self.open_demo()

    def _on_recent_activated(self, item: QListWidgetItem) -> None:
        self.open_path(Path(item.data(Qt.ItemDataRole.UserRole)))

    def _on_forget_clicked(self) -> None:
        item = self.recent.currentItem()
        if item is not None:
            self.controller.settings.remove_recent_project(Path(item.data(Qt.ItemDataRole.UserRole)))
            self.refresh_recent()

    def _on_controller_job_event(self, event: object) -> None:
        if isinstance(event, Progress) and event.stage == "demo" and event.total:
            self._progress_view.submit(event)

    def _show_progress(self, event: Progress) -> None:
        self.demo_progress.setRange(0, event.total)
        self.demo_progress.setValue(event.step)

    def _on_controller_job_finished(self, job: Job, status: str) -> None:
        if job.stage == "demo":
            self._progress_view.cancel()
            self.demo_progress.setVisible(False)
            self.demo_button.setEnabled(True)
            self.refresh_recent()

    def _on_controller_status_changed(self, status: object) -> None:
        p = self.controller.project
        st = self.controller.status
        if p is None or st is None:
            for lab in self.summary_labels.values():
                lab.setText("—")
            self.summary_box.setTitle("No project open")
            return
        self.summary_box.setTitle("Open project")
        s = self.summary_labels
        s["name"].setText(p.name + ("  (demo)" if p.data.get("demo") else ""))
        s["folder"].setText(str(p.root))
        s["images"].setText(
            f"{st.images} readable in {len(p.sources)} folder(s)"
            + (f", {st.unreadable} unreadable" if st.unreadable else "")
        )
        s["labels"].setText(", ".join(f"{c}: {n}" for c, n in sorted(st.labels.items())) if st.labels else "none yet")
        s["pretrain"].setText(
            f"{st.pretrain_run.name} ({st.pretrain_state or 'unknown'})" if st.pretrain_run else "not yet"
        )
        s["fewshot"].setText(st.fewshot_run.name if st.fewshot_run else "not yet")
        s["export"].setText(str(st.export) if st.export else "not yet")
