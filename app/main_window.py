"""The main window: step list, the wizard pages, Back/Next, status bar with the running job, and the log dock.

Deliberately thin: pages and the controller carry the behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from PySide6.QtCore import QEvent, QObject, Qt, QThreadPool
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QResizeEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.glossary import GlossaryDialog
from app.jobs import Job
from app.pages.base import Page
from app.pages.export_page import ExportPage
from app.pages.fit_page import FitPage
from app.pages.images_page import ImagesPage
from app.pages.label_page import LabelPage
from app.pages.pretrain_page import PretrainPage
from app.pages.project_page import ProjectPage
from app.widgets.elided_label import ElidedLabel
from app.widgets.error_dialog import show_error
from app.widgets.log_view import LogView
from app.widgets.progress import Coalescer
from app.widgets.thumbnails import ThumbnailProvider
from sslinspect.events import Progress

PAGES: tuple[type[Page], ...] = (ProjectPage, ImagesPage, PretrainPage, LabelPage, FitPage, ExportPage)
PANEL_PC = (1024, 700)  # the smallest screen the wizard must fit without cutting anything off


class _PageScroll(QScrollArea):
    """A scroll area that gives its page the height its wrapped text needs at the current width.

    QScrollArea ignores height-for-width, so word-wrapped labels in a narrow window were squeezed and cut; here the
    page's minimum height follows ``heightForWidth`` of the viewport's width on every resize.
    """

    def __init__(self, page: Page) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setWidget(page)
        if page.wrapped_text_height:  # opt-in: measuring a page with live plots on every layout would stall them
            page.installEventFilter(self)

    def fit_height(self) -> None:
        """Give the page the height its wrapped text needs at the viewport's width."""
        page = self.widget()
        if page is not None and page.hasHeightForWidth():
            page.setMinimumHeight(max(0, page.heightForWidth(self.viewport().width())))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """A page whose content changed (new text, shown widgets) is measured again."""
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.fit_height()
        return False

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Keep the page tall enough for its wrapped text."""
        super().resizeEvent(event)
        self.fit_height()


def _scrolled(page: Page) -> QScrollArea:
    """``page`` in a frameless scroll area: on a small panel PC it scrolls instead of being cut off."""
    area = _PageScroll(page)
    area.setObjectName(f"{type(page).__name__}Scroll")
    return area


class MainWindow(QMainWindow):
    """The wizard host."""

    def __init__(self, controller: AppController) -> None:
        super().__init__()
        self.controller = controller
        self.setWindowTitle("SSL Inspect")
        self.setObjectName("MainWindow")
        self.pages: list[Page] = [cls(controller) for cls in PAGES]
        self.stack = QStackedWidget()
        self.steps = QListWidget()
        self.steps.setObjectName("stepList")
        self.steps.setAccessibleName("Steps")
        for page in self.pages:
            self.stack.addWidget(_scrolled(page) if page.scrolls else page)
            self.steps.addItem(QListWidgetItem(page.title))
            page.completeness_changed.connect(self._update_nav)
        self.steps.setFixedWidth(self.steps.sizeHintForColumn(0) + 4 * self.fontMetrics().averageCharWidth() + 24)
        self.steps.currentRowChanged.connect(self._on_steps_current_row_changed)
        self.back_button = QPushButton("◀  &Back")
        self.next_button = QPushButton("&Next  ▶")
        self.back_button.setToolTip("Previous step (Alt+Left)")
        self.next_button.setToolTip("Next step (Alt+Right)")
        self.back_button.clicked.connect(self.go_back)
        self.next_button.clicked.connect(self.go_next)
        self.next_hint = QLabel()
        self.next_hint.setObjectName("hint")
        nav = QHBoxLayout()
        nav.addWidget(self.next_hint, 1)
        nav.addWidget(self.back_button)
        nav.addWidget(self.next_button)
        center = QWidget()
        cl = QVBoxLayout(center)
        cl.addWidget(self.stack, 1)
        cl.addLayout(nav)
        root = QWidget()
        rl = QHBoxLayout(root)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.steps)
        rl.addWidget(center, 1)
        self.setCentralWidget(root)

        self.log = LogView()
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("logDock")
        self.log_dock.setWidget(self.log)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.log_dock.hide()

        self.project_label = ElidedLabel("No project")  # long paths: elided with "…", whole in the tooltip
        self.job_label = ElidedLabel()  # long job messages likewise: the two share the bar's width
        self.job_progress = QProgressBar()
        self.job_progress.setMaximumWidth(16 * self.fontMetrics().averageCharWidth() * 2)
        self.job_cancel = QPushButton("Cancel")
        self.job_cancel.clicked.connect(controller.cancel_job)
        sb = self.statusBar()
        sb.addWidget(self.project_label, 1)
        sb.addPermanentWidget(self.job_label, 1)
        sb.addPermanentWidget(self.job_progress)
        sb.addPermanentWidget(self.job_cancel)
        self._progress_view: Coalescer[Progress] = Coalescer(self._show_progress, parent=self)
        self._show_job(None)
        self._build_menus()

        controller.project_changed.connect(self._on_controller_project_changed)
        controller.status_changed.connect(lambda _s: self._update_nav())
        controller.job_started.connect(self._show_job)
        controller.job_event.connect(self._on_controller_job_event)
        controller.job_finished.connect(self._on_controller_job_finished)
        controller.error_occurred.connect(self._on_controller_error_occurred)
        controller.message.connect(self.log.add)
        self.steps.setCurrentRow(0)
        self._restore()

    # -- navigation -----------------------------------------------------------------------------------------------
    def current_index(self) -> int:
        """Index of the shown step."""
        return self.stack.currentIndex()

    def current_page(self) -> Page:
        """The shown page."""
        return self.pages[self.current_index()]

    def page_area(self, index: int) -> QScrollArea | None:
        """The scroll area that holds page ``index`` (None for a page that fits without one)."""
        area = self.stack.widget(index)
        return area if isinstance(area, QScrollArea) else None

    def reachable(self, index: int) -> bool:
        """A step can be shown when every step before it is complete."""
        return all(p.is_complete() for p in self.pages[:index])

    def go_to(self, index: int) -> bool:
        """Show step ``index`` if it is reachable."""
        if not 0 <= index < len(self.pages) or not self.reachable(index):
            return False
        self.steps.setCurrentRow(index)
        return True

    def go_next(self) -> bool:
        """Next step (when the current one is complete)."""
        return self.go_to(self.current_index() + 1)

    def go_back(self) -> bool:
        """Previous step."""
        return self.go_to(self.current_index() - 1)

    def _on_steps_current_row_changed(self, row: int) -> None:
        if row < 0:
            return
        if not self.reachable(row):
            self.steps.setCurrentRow(self.current_index())
            return
        old = self.current_page()
        if row != self.current_index():
            old.on_leave()
        self.stack.setCurrentIndex(row)
        self.pages[row].on_enter()
        self._update_nav()

    def _update_nav(self) -> None:
        i = self.current_index()
        page = self.pages[i]
        for k in range(len(self.pages)):
            item = self.steps.item(k)
            flags = item.flags()
            enabled = self.reachable(k)
            item.setFlags(flags | Qt.ItemFlag.ItemIsEnabled if enabled else flags & ~Qt.ItemFlag.ItemIsEnabled)
            item.setToolTip("" if enabled else self._locked_reason(k))
        last = i == len(self.pages) - 1
        self.back_button.setEnabled(i > 0)
        self.next_button.setVisible(not last)
        self.next_button.setEnabled(not last and page.is_complete())
        self.next_hint.setText("" if last or page.is_complete() else self._hint(page))

    def _locked_reason(self, index: int) -> str:
        """Why step ``index`` is locked: the first earlier step that is not done, and what it needs."""
        first = next((p for p in self.pages[:index] if not p.is_complete()), None)
        if first is None:
            return ""
        name = first.title.split(maxsplit=1)[-1]
        return f"Locked: finish step {name} first. {self._hint(first)}".strip()

    @staticmethod
    def _hint(page: Page) -> str:
        return {
            "ProjectPage": "Create or open a project to continue.",
            "ImagesPage": "Add a folder with at least 8 readable images and scan it.",
            "PretrainPage": "Pretrain (or let a run finish) to continue.",
            "LabelPage": "Label at least one image to continue.",
            "FitPage": "Fit to continue.",
        }.get(type(page).__name__, "")

    # -- jobs and messages ----------------------------------------------------------------------------------------
    def _show_job(self, job: Job | None) -> None:
        running = job is not None
        self.job_label.setText(f"{job.title}…" if job else "")
        self.job_progress.setVisible(running)
        self.job_cancel.setVisible(running)
        self.job_progress.setRange(0, 0)
        self._update_nav()

    def _on_controller_job_event(self, event: object) -> None:
        if isinstance(event, Progress) and event.total:
            self._progress_view.submit(event)

    def _show_progress(self, event: Progress) -> None:
        if not self.controller.is_busy():
            return
        self.job_progress.setRange(0, event.total)
        self.job_progress.setValue(event.step)
        job = self.controller.job
        self.job_label.setText(f"{job.title if job else event.stage}: {event.message}")

    def _on_controller_job_finished(self, job: Job, status: str) -> None:
        self._show_job(None)
        self.statusBar().showMessage(f"{job.title}: {status}", 8000)
        self._update_nav()

    def _on_controller_error_occurred(self, message: str, details: str) -> None:
        show_error(self, message, details)

    def _on_controller_project_changed(self, project: object) -> None:
        p = self.controller.project
        self.project_label.setText(f"{p.name}  —  {p.root}" if p else "No project")
        self.setWindowTitle(f"{p.name} — SSL Inspect" if p else "SSL Inspect")
        self._update_nav()

    # -- menus ----------------------------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        project_page = self.pages[0]
        assert isinstance(project_page, ProjectPage)
        m = self.menuBar().addMenu("&File")
        self._action(m, "&New project…", QKeySequence.StandardKey.New, project_page._on_new_clicked)
        self._action(m, "&Open project…", QKeySequence.StandardKey.Open, project_page._on_open_clicked)
        self._action(m, "Open &demo project", None, project_page.open_demo)
        self.recent_menu = m.addMenu("&Recent projects")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._action(m, "&Close project", QKeySequence.StandardKey.Close, self.controller.close_project)
        m.addSeparator()
        self._action(m, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        go = self.menuBar().addMenu("&Go")
        self._action(go, "&Back", QKeySequence("Alt+Left"), self.go_back)
        self._action(go, "&Next", QKeySequence("Alt+Right"), self.go_next)
        go.addSeparator()
        for i, page in enumerate(self.pages):
            self._action(go, page.title.split(maxsplit=1)[-1], QKeySequence(f"Ctrl+{i + 1}"), partial(self.go_to, i))
        view = self.menuBar().addMenu("&View")
        toggle = self.log_dock.toggleViewAction()
        toggle.setShortcut(QKeySequence("Ctrl+L"))
        view.addAction(toggle)
        helpm = self.menuBar().addMenu("&Help")
        self._action(helpm, "&Glossary", QKeySequence.StandardKey.HelpContents, self.show_glossary)
        self._action(helpm, "&About SSL Inspect", None, self._on_about_triggered)

    def _action(
        self, menu: QMenu, text: str, key: QKeySequence | QKeySequence.StandardKey | None, slot: Callable[[], object]
    ) -> QAction:
        action = QAction(text, self)
        if key is not None:
            action.setShortcut(key)
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.controller.settings.recent_projects():
            a = self.recent_menu.addAction(str(path))
            a.triggered.connect(lambda _c=False, p=path: self.controller.open_project(p))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def show_glossary(self) -> GlossaryDialog:
        """Help → Glossary: every term the app shows, in plain words (non-modal)."""
        dialog = self.findChild(GlossaryDialog)
        if dialog is None:
            dialog = GlossaryDialog(self)
        dialog.show()
        dialog.raise_()
        return dialog

    def _on_about_triggered(self) -> None:
        import sslinspect

        QMessageBox.about(
            self,
            "About SSL Inspect",
            f"SSL Inspect {sslinspect.__version__}\n\nSelf-supervised visual defect inspection: unlabeled images → "
            "pretraining → a few labels → few-shot classifier + anomaly score → ONNX for the line.",
        )

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def _restore(self) -> None:
        geometry = self.controller.settings.window_geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            fm = self.fontMetrics()
            self.resize(min(110 * fm.averageCharWidth(), PANEL_PC[0]), min(45 * fm.height(), PANEL_PC[1]))
        state = self.controller.settings.window_state()
        if state is not None:
            self.restoreState(state)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Ask before stopping a running job; remember the window layout."""
        job = self.controller.job
        if self.controller.is_busy() and job is not None:
            answer = QMessageBox.question(
                self,
                "Quit SSL Inspect?",
                f"{job.title} is still running. Stop it and quit? Pretraining keeps its last checkpoint and can be "
                "resumed later.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self.controller.settings.save_window(self.saveGeometry(), self.saveState())
        self.controller.settings.sync()
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop the job and the background loaders, and wait (bounded) for worker threads (closing, tests)."""
        self.controller.shutdown()
        for provider in self.findChildren(ThumbnailProvider):
            provider.shutdown(0)
        QThreadPool.globalInstance().waitForDone(5000)
