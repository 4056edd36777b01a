"""Step 2, Images: the project's image folders, a background scan with progress, statistics, a thumbnail grid and
the list of files that could not be read (with the reason)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.jobs import Job
from app.pages.base import Page
from app.widgets.image_grid import ImageGrid
from app.widgets.progress import Coalescer, show_progress
from app.widgets.thumbnails import ThumbnailProvider
from sslinspect import api
from sslinspect.api import ImageRecord
from sslinspect.events import Progress
from sslinspect.review import MIN_IMAGES, existing_cache


def image_source(project: api.Project, provider: ThumbnailProvider, thumb_px: int) -> dict[int, ImageRecord]:
    """Point ``provider`` at the project's images (decoded cache when big enough, else the files). Returns records."""
    records = {r.id: r for r in project.store.images(status="ok", unique=True)}
    cache = existing_cache(project, min_size=int(thumb_px * 0.75))

    def path_of(key: object) -> Path | None:
        rec = records.get(int(key))  # type: ignore[call-overload]
        return project.image_path(rec.source, rec.relpath) if rec else None

    if cache is None:
        provider.set_source(path_of)
    else:
        images, rows, _ = cache
        provider.set_source(path_of, lambda key: images[rows[key]] if key in rows else None)
    return records


class ImagesPage(Page):
    """Folders, scan, statistics, thumbnails, unreadable files."""

    wrapped_text_height = True

    title = "2  Images"
    explanation = (
        "Add the folders your cameras write to (subfolders are included). The scan reads every file once, skips "
        f"duplicates and lists files it cannot read, without stopping. Pretraining needs at least "
        f"{MIN_IMAGES} readable images; a few hundred or more is better."
    )

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        self.provider = ThumbnailProvider(size=2 * max(96, 6 * self.fontMetrics().height()), parent=self)

        folders = QGroupBox("Image folders")
        self.sources = QListWidget()
        self.sources.setAccessibleName("Image folders")
        self.add_button = QPushButton("&Add folder…")
        self.remove_button = QPushButton("&Remove")
        self.scan_button = QPushButton("&Scan")
        self.scan_button.setDefault(True)
        self.add_button.clicked.connect(self._on_add_clicked)
        self.remove_button.clicked.connect(self._on_remove_clicked)
        self.scan_button.clicked.connect(self.start_scan)
        buttons = QHBoxLayout()
        for b in (self.add_button, self.remove_button, self.scan_button):
            buttons.addWidget(b)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.progress_label = QLabel()
        self.progress_label.setObjectName("hint")
        fl = QVBoxLayout(folders)
        fl.addWidget(self.sources, 1)
        fl.addLayout(buttons)
        fl.addWidget(self.progress)
        fl.addWidget(self.progress_label)

        stats_box = QGroupBox("Statistics")
        self.stats = QFormLayout(stats_box)
        self.stat_labels: dict[str, QLabel] = {}
        for key, text in (
            ("readable", "Readable images"),
            ("unreadable", "Unreadable files"),
            ("duplicates", "Duplicates skipped"),
            ("formats", "Formats"),
            ("sizes", "Sizes (px)"),
            ("depth", "Bit depth / channels"),
            ("labelled", "Labelled"),
        ):
            lab = QLabel("—")
            lab.setWordWrap(True)
            self.stat_labels[key] = lab
            self.stats.addRow(f"{text}:", lab)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(folders, 1)
        ll.addWidget(stats_box)

        self.grid = ImageGrid(self.provider)
        self.grid.setAccessibleName("Image thumbnails")
        self.errors = QTableWidget(0, 2)
        self.errors.setHorizontalHeaderLabels(["File", "Problem"])
        self.errors.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.errors.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.errors.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.errors.verticalHeader().setVisible(False)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.grid, "Thumbnails")
        self.tabs.addTab(self.errors, "Unreadable files")

        self.add_columns(left, self.tabs, (1, 3))

        self._records: dict[int, ImageRecord] = {}
        self._progress_view: Coalescer[Progress] = Coalescer(self._show_progress, parent=self)
        self.grid.grid_model.caption = lambda key: Path(self._records[key].relpath).name if key in self._records else ""
        self.grid.grid_model.tooltip = self._tooltip
        controller.project_changed.connect(self._on_controller_project_changed)
        controller.job_started.connect(self._on_controller_job_started)
        controller.job_event.connect(self._on_controller_job_event)
        controller.job_finished.connect(self._on_controller_job_finished)

    def is_complete(self) -> bool:
        """Enough readable images to pretrain."""
        st = self.controller.status
        return st is not None and st.can_pretrain

    def on_enter(self) -> None:
        """Show the current index (labels may have changed on other pages)."""
        self.reload()

    # -- actions ------------------------------------------------------------------------------------------------
    def add_folder(self, folder: Path) -> bool:
        """Add ``folder`` to the project and scan."""
        if not self.controller.add_source(folder):
            return False
        self.reload()
        self.start_scan()
        return True

    def start_scan(self) -> Job | None:
        """Scan the project's folders in the background."""
        return self.controller.start_scan()

    def reload(self) -> None:
        """Re-read folders, statistics, thumbnails and problems from the project."""
        p = self.controller.project
        self.sources.clear()
        self.errors.setRowCount(0)
        if p is None:
            self._records = {}
            self.grid.set_keys([])
            self._show_stats(None)
            return
        for src in p.sources:
            folder = p.source_dir(src)
            item = QListWidgetItem(str(folder) + ("" if folder.is_dir() else "   (not found)"))
            item.setData(Qt.ItemDataRole.UserRole, src.id)
            self.sources.addItem(item)
        self._records = image_source(p, self.provider, self.provider.size)
        self.grid.set_keys(list(self._records))
        bad = p.store.images(status="error", unique=False)
        missing = [s for s in p.sources if not p.source_dir(s).is_dir()]
        self.errors.setRowCount(len(bad) + len(missing))
        rows = [(str(p.source_dir(s)), "image folder not found (moved or unplugged?)") for s in missing]
        rows += [(str(p.image_path(r.source, r.relpath)), r.error or "unreadable") for r in bad]
        for i, (path, reason) in enumerate(rows):
            self.errors.setItem(i, 0, QTableWidgetItem(path))
            self.errors.setItem(i, 1, QTableWidgetItem(reason))
        self.tabs.setTabText(1, f"Unreadable files ({len(rows)})")
        self._show_stats(list(self._records.values()))
        self.remove_button.setEnabled(self.sources.count() > 0)

    def _show_stats(self, records: list[ImageRecord] | None) -> None:
        s = self.stat_labels
        st = self.controller.status
        if records is None or st is None:
            for lab in s.values():
                lab.setText("—")
            return
        counts = self.controller.project.store.counts() if self.controller.project else {}
        s["readable"].setText(f"{st.images}")
        s["unreadable"].setText(f"{st.unreadable}")
        s["duplicates"].setText(f"{counts.get('duplicates', 0)}")
        fmt = Counter(r.format or "?" for r in records)
        s["formats"].setText(", ".join(f"{k} {v}" for k, v in fmt.most_common()) or "—")
        if records:
            ws = [r.width or 0 for r in records]
            hs = [r.height or 0 for r in records]
            same = min(ws) == max(ws) and min(hs) == max(hs)
            s["sizes"].setText(f"{ws[0]}×{hs[0]}" if same else f"{min(ws)}×{min(hs)} to {max(ws)}×{max(hs)}")
            depth = Counter(f"{r.bit_depth}-bit/{r.channels}ch" for r in records)
            s["depth"].setText(", ".join(f"{k} {v}" for k, v in depth.most_common()))
        else:
            s["sizes"].setText("—")
            s["depth"].setText("—")
        s["labelled"].setText(f"{st.labelled}")

    def _tooltip(self, key: object) -> str:
        rec = self._records.get(key)  # type: ignore[call-overload]
        if rec is None:
            return ""
        return f"{rec.relpath}\n{rec.width}×{rec.height}, {rec.bit_depth}-bit, {rec.format}, {rec.size / 1024:.0f} KB"

    # -- slots --------------------------------------------------------------------------------------------------
    def _on_add_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Add image folder", self.controller.settings.last_folder("images")
        )
        if folder:
            self.controller.settings.set_last_folder("images", Path(folder))
            self.add_folder(Path(folder))

    def _on_remove_clicked(self) -> None:
        item = self.sources.currentItem()
        if item is not None:
            self.controller.remove_source(int(item.data(Qt.ItemDataRole.UserRole)))
            self.reload()

    def _on_controller_project_changed(self, project: object) -> None:
        self.progress_label.clear()
        self.reload()

    def _on_controller_job_started(self, job: Job) -> None:
        busy = True
        for b in (self.add_button, self.remove_button, self.scan_button):
            b.setEnabled(not busy)
        if job.stage == "scan":
            self.progress.setRange(0, 0)
            self.progress.setVisible(True)
            self.progress_label.setText("Scanning…")

    def _on_controller_job_event(self, event: object) -> None:
        if isinstance(event, Progress) and event.stage == "scan":
            self._progress_view.submit(event)

    def _show_progress(self, event: Progress) -> None:
        show_progress(self.progress, event)
        self.progress_label.setText(f"{event.step} / {event.total} files  {event.message}")

    def _on_controller_job_finished(self, job: Job, status: str) -> None:
        for b in (self.add_button, self.remove_button, self.scan_button):
            b.setEnabled(True)
        if job.stage == "scan":
            self._progress_view.cancel()
            self.progress.setVisible(False)
            result = getattr(job, "result", None)
            if status == "ok" and result is not None:
                # result.unique is the number Statistics shows (ImageStore.counts): one truth per figure
                dup = f", {result.duplicates} duplicate(s) skipped" if result.duplicates else ""
                self.progress_label.setText(
                    f"Scan done: {result.unique} readable images ({result.new} new files{dup}), "
                    f"{result.failed} unreadable."
                )
            else:
                self.progress_label.setText(f"Scan {status}.")
            self.reload()
