"""Step 4, Label: find and label a handful of defects, helped by the model.

The grid sorts by "most unusual first" (anomaly score), "most uncertain", cluster or similarity to an image, and
filters by label. Number keys label the selection (saved at once). The map tab shows every image's embedding; click
or lasso points to label them. The "Suggested types" tab lists, per defect type, the unlabelled images the latest
fit named nearest to it (:mod:`app.widgets.label_suggestions`); clicking one selects it in the grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from app.controller import AppController
from app.jobs import Job
from app.pages.base import Page
from app.pages.images_page import image_source
from app.widgets.class_manager import ClassManager
from app.widgets.embedding_map import EmbeddingMap
from app.widgets.image_grid import ImageGrid
from app.widgets.label_keys import install_label_keys, shortcut_of
from app.widgets.label_suggestions import SuggestionsView
from app.widgets.thumbnails import ThumbnailProvider
from sslinspect import api
from sslinspect.config import FewShotConfig
from sslinspect.errors import SSLInspectError
from sslinspect.review import SortKey, Suggestion, load_suggestions, order_ids, project_2d

SORTS: tuple[tuple[str, SortKey], ...] = (
    ("Most unusual first", "unusual"),
    ("Most uncertain first", "uncertain"),
    ("By cluster", "cluster"),
    ("Similar to the selected image", "similar"),
    ("File order", "file"),
)


class LabelPage(Page):
    """The labelling workbench: sorted grid, map, class manager, preview."""

    title = "4  Label"
    explanation = (
        "Label a few examples of each defect type (5 per type is enough to start) and some good parts. Sort by "
        "“most unusual first” to find defects quickly; select images and press 1–9 for a defect class, G for good, "
        "0 to clear. Every label is saved immediately."
    )

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        self.provider = ThumbnailProvider(size=2 * max(96, 6 * self.fontMetrics().height()), parent=self)
        self.analysis: api.Analysis | None = None
        self._records: dict[int, Any] = {}
        self._labels: dict[int, str] = {}
        self._order_token = 0
        self._map_run: object = None
        self._current: Any = None
        self._shown = 0
        self.add_columns(self._center_column(), self._side_column(), (3, 1))
        controller.project_changed.connect(lambda _p: self.reload())
        controller.labels_changed.connect(self._on_controller_labels_changed)
        controller.classes_changed.connect(self._on_controller_classes_changed)
        controller.job_finished.connect(self._on_controller_job_finished)
        controller.job_started.connect(lambda _j: self.suggest_button.setEnabled(False))

    def _toolbar(self) -> QHBoxLayout:
        """Sort, filter and Update suggestions."""
        self.sort = QComboBox()
        self.sort.setAccessibleName("Sort order")
        self.sort.setToolTip(
            "Which images come first: most unusual (anomaly score), most uncertain, by cluster, similar to the "
            "selection, or file order"
        )
        for text, _key in SORTS:
            self.sort.addItem(text)
        self.filter = QComboBox()
        self.filter.setAccessibleName("Show")
        self.filter.setToolTip("Show all images, only unlabelled ones, or one class")
        self.sort.currentIndexChanged.connect(lambda _i: self.reorder())
        self.filter.currentIndexChanged.connect(lambda _i: self.reorder())
        self.suggest_button = QPushButton("Update suggestions")
        self.suggest_button.setToolTip(
            "Runs the Fit step's fit on the current labels (as long as a fit) so the unusual / uncertain orders "
            "use them; it needs the same label minimums as Fit."
        )
        self.suggest_button.clicked.connect(self.compute_suggestions)
        self.count_label = QLabel()
        self.count_label.setObjectName("hint")
        self.stale = QLabel()
        self.stale.setObjectName("warning")
        self.stale.setWordWrap(True)
        self.stale.setVisible(False)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Sort:"))
        bar.addWidget(self.sort)
        bar.addWidget(QLabel("Show:"))
        bar.addWidget(self.filter)
        bar.addWidget(self.suggest_button)
        bar.addStretch(1)
        return bar

    def _center_column(self) -> QWidget:
        """The toolbar, the counter, the out-of-date line and the Grid / Map tabs."""
        bar = self._toolbar()
        self.grid = ImageGrid(self.provider)
        self.grid.setAccessibleName("Images to label")
        self.grid.grid_model.caption = self._caption
        self.grid.grid_model.badge = self._badge
        self.grid.current_key_changed.connect(self._on_grid_current_key_changed)
        self.grid.key_activated.connect(lambda _k: self.sort_by_similarity())
        install_label_keys(self.grid, self.controller)
        self.map = EmbeddingMap(self.provider)
        self.map.label_requested.connect(self.controller.set_labels)
        self.map.image_activated.connect(self._on_map_image_activated)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.grid, "Grid")
        self.tabs.addTab(self.map, "Map")
        self.suggested = SuggestionsView()
        self.suggested.image_chosen.connect(self.focus_image)
        self.tabs.addTab(self.suggested, "Suggested types")
        self.tabs.currentChanged.connect(lambda _i: self._ensure_map())
        self.tabs.currentChanged.connect(lambda _i: self._refresh_suggestions())
        center = QWidget()
        cl = QVBoxLayout(center)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addLayout(bar)
        cl.addWidget(self.count_label)  # its own row: the bar stays narrow enough for a 1024-px panel PC
        cl.addWidget(self.stale)
        cl.addWidget(self.tabs, 1)
        return center

    def _side_column(self) -> QWidget:
        """The class manager and the selected image with its details."""
        self.classes = ClassManager(self.controller)
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(160, 160)
        self.preview_provider = ThumbnailProvider(size=320, parent=self)
        self.preview_provider.thumbnail_ready.connect(lambda _k: self._show_preview())
        self.details = QLabel("Select an image.")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.similar_button = QPushButton("Find &similar")
        self.similar_button.setToolTip("Sort the grid by similarity to this image (or double-click it).")
        self.similar_button.clicked.connect(self.sort_by_similarity)
        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(self.classes, 1)
        sl.addWidget(self.preview)
        sl.addWidget(self.details)
        sl.addWidget(self.similar_button)
        return side

    def is_complete(self) -> bool:
        """At least one label."""
        st = self.controller.status
        return st is not None and st.labelled > 0

    def on_enter(self) -> None:
        """Pick up new analyses and labels made elsewhere."""
        self.reload()
        self.grid.setFocus()

    # -- data -----------------------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read images, labels, classes and the latest analysis."""
        p = self.controller.project
        self.suggest_button.setEnabled(p is not None and not self.controller.is_busy())
        if p is None:
            self._records, self._labels, self.analysis = {}, {}, None
            self.grid.set_keys([])
            return
        self._records = image_source(p, self.provider, self.provider.size)
        image_source(p, self.preview_provider, self.preview_provider.size)
        self._labels = p.store.labels()
        try:
            self.analysis = api.load_analysis(p)
        except SSLInspectError as exc:
            self.analysis = None
            self.controller.message.emit("WARNING", str(exc))
        self._fill_filter()
        stale = api.fit_staleness(p, self.analysis.run_dir) if self.analysis is not None else None
        self._show_stale(stale.describe() if stale is not None and stale.stale else "")
        has = self.analysis is not None
        model = self.sort.model()
        assert isinstance(model, QStandardItemModel)  # a QComboBox's default model
        for i, (_text, key) in enumerate(SORTS):
            model.item(i).setEnabled(has or key == "file")
        if not has and SORTS[self.sort.currentIndex()][1] != "file":
            self.sort.setCurrentIndex(len(SORTS) - 1)  # triggers reorder
        else:
            self.reorder()
        self.map.set_labels(self._labels, p.class_colors())
        self._map_run = None
        self._ensure_map()
        self._show_suggestions()

    def _show_suggestions(self) -> None:
        """The latest fit's per-type suggestions, without the images labelled since."""
        p, a = self.controller.project, self.analysis
        found: dict[str, list[Suggestion]] = {}
        if p is not None and a is not None:
            try:
                found = load_suggestions(a.run_dir, labelled=set(self._labels))
            except SSLInspectError as exc:
                self.controller.message.emit("WARNING", str(exc))
        records = self._records
        project = p

        def path_of(image_id: int) -> Path | None:
            rec = records.get(image_id)
            return project.image_path(rec.source, rec.relpath) if rec and project else None

        self.suggested.set_suggestions(found, int(a.metrics.get("input_size") or 0) if a else 0, path_of)

    def _refresh_suggestions(self) -> None:
        """Re-read the suggestions when their tab is shown (labels given since drop out)."""
        if self.tabs.currentWidget() is self.suggested:
            self._show_suggestions()

    def focus_image(self, image_id: int) -> None:
        """Show ``image_id`` selected in the grid (showing all images when the filter hides it)."""
        self.tabs.setCurrentWidget(self.grid)
        if self.grid.grid_model.row_of(image_id) >= 0:
            self.grid.select_keys([image_id])
            self.grid.setFocus()
            return
        self.filter.blockSignals(True)
        self.filter.setCurrentIndex(0)
        self.filter.blockSignals(False)
        self.reorder(ref_id=image_id)

    def _show_stale(self, reason: str) -> None:
        """Say when the orderings come from a fit made before the latest labels ('' hides it)."""
        if reason:
            reason = reason.replace("out of date — retrain: ", "")
            self.stale.setText(f"Suggestions are out of date — {reason}. Update suggestions refits on them.")
        self.stale.setVisible(bool(reason))

    def _fill_filter(self) -> None:
        p = self.controller.project
        current = self.filter.currentText()
        self.filter.blockSignals(True)
        self.filter.clear()
        self.filter.addItems(["All images", "Unlabelled", "Labelled", *(p.classes if p else [])])
        if current:
            self.filter.setCurrentText(current)
        self.filter.blockSignals(False)

    def reorder(self, ref_id: int | None = None) -> None:
        """Sort and filter the grid (in a worker thread: clustering 100,000 embeddings takes a few seconds)."""
        ids = np.fromiter(self._records, np.int64, count=len(self._records))
        key = SORTS[self.sort.currentIndex()][1]
        if key == "similar" and ref_id is None:
            cur = self.grid.current_key()
            ref_id = int(cur) if cur is not None else None  # type: ignore[call-overload]
        self._order_token += 1
        token, analysis = self._order_token, self.analysis
        self.count_label.setText("Sorting…")
        create_worker(
            order_ids,
            ids,
            key,
            analysis,
            ref_id=ref_id,
            _connect={
                "returned": lambda order: self._apply_order(token, order, ref_id),
                "errored": lambda exc: self._apply_order(token, None, ref_id, exc),
            },
        )

    def _apply_order(self, token: int, order: np.ndarray | None, ref_id: int | None, exc: Any = None) -> None:
        if token != self._order_token:
            return
        if order is None:
            self.count_label.setText(str(exc))
            return
        flt = self.filter.currentIndex()
        keys = order.tolist()
        if flt == 1:
            keys = [k for k in keys if k not in self._labels]
        elif flt == 2:
            keys = [k for k in keys if k in self._labels]
        elif flt >= 3:
            cls = self.filter.currentText()
            keys = [k for k in keys if self._labels.get(k) == cls]
        self.grid.set_keys(keys)
        self._shown = len(keys)
        if ref_id is not None and ref_id in self._records:
            self.grid.select_keys([ref_id])
        elif keys:
            self.grid.setCurrentIndex(self.grid.grid_model.index(0))
        self._show_count()

    def _show_count(self) -> None:
        st = self.controller.status
        self.count_label.setText(f"{self._shown} shown · {st.labelled if st else 0} labelled")

    def sort_by_similarity(self) -> None:
        """Order the grid by similarity to the focused image."""
        cur = self.grid.current_key()
        if cur is None or self.analysis is None:
            return
        similar = next(i for i, (_t, k) in enumerate(SORTS) if k == "similar")
        self.sort.blockSignals(True)
        self.sort.setCurrentIndex(similar)
        self.sort.blockSignals(False)
        self.reorder(ref_id=int(cur))  # type: ignore[call-overload]

    def compute_suggestions(self) -> Job | None:
        """Fit the classifier and anomaly score on the current labels (the Fit step's job), once labels suffice."""
        p, st = self.controller.project, self.controller.status
        if p is None:
            return None
        short = api.fit_shortfalls(st.labels if st is not None else {}, FewShotConfig().min_shots)
        if short:
            text = "Suggestions need a fit, and a fit needs more labels: " + "; ".join(x.describe() for x in short)
            self.count_label.setText(text)
            self.controller.message.emit("WARNING", text)
            return None
        return self.controller.run_worker(["train", str(p.root)], stage="train", title="Fitting (suggestions)")

    def _ensure_map(self) -> None:
        if self.tabs.currentWidget() is not self.map or self.analysis is None:
            return
        run = self.analysis.run_dir
        if self._map_run == run:
            return
        self._map_run = run
        analysis = self.analysis
        self.map.info.setText("Projecting the embeddings…")

        def compute() -> tuple[np.ndarray, np.ndarray]:
            return analysis.ids, project_2d(analysis.embeddings())

        create_worker(compute, _connect={"returned": lambda r: self._on_map_ready(run, r)})

    def _on_map_ready(self, run: object, result: tuple[np.ndarray, np.ndarray]) -> None:
        if run != self._map_run or self.analysis is None:
            return
        ids, xy = result
        self.map.set_map(ids, xy, caption=f"{len(ids)} images (PCA of the embeddings)")
        self.map.set_scores(self.analysis.ids, self.analysis.anomaly)

    # -- cells ----------------------------------------------------------------------------------------------------
    def _caption(self, key: Any) -> str:
        a = self.analysis
        key_sort = SORTS[self.sort.currentIndex()][1]
        if a is not None and key_sort in ("unusual", "uncertain"):
            row = a.rows_of(np.array([key]))[0]
            if row >= 0:
                return (
                    f"{a.anomaly[row]:.3f}" if key_sort == "unusual" else f"{a.predicted[row]} {a.confidence[row]:.2f}"
                )
        rec = self._records.get(key)
        return rec.relpath.rsplit("/", 1)[-1] if rec else ""

    def _badge(self, key: Any) -> tuple[str, str] | None:
        label = self._labels.get(key)
        if label is None or self.controller.project is None:
            return None
        return label, self.controller.project.class_colors().get(label, "#888888")

    def _on_grid_current_key_changed(self, key: Any) -> None:
        self._current = key
        self._show_preview()

    def _show_preview(self) -> None:
        key = self._current
        if key is None or key not in self._records:
            self.preview.clear()
            self.details.setText("Select an image.")
            return
        pm = self.preview_provider.get(key)
        if pm is not None:
            side = min(self.preview.width(), 320)
            self.preview.setPixmap(
                pm.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            )
        rec = self._records[key]
        lines = [f"<b>{rec.relpath}</b>", f"label: {self._labels.get(key, 'none')}"]
        if self.analysis is not None:
            row = self.analysis.rows_of(np.array([key]))[0]
            if row >= 0:
                a = self.analysis
                below = float((a.anomaly < a.anomaly[row]).mean())
                lines.append(f"anomaly score {a.anomaly[row]:.3f} (higher than {100 * below:.1f} % of the images)")
                lines.append(f"model says {a.predicted[row]} ({a.confidence[row]:.0%})")
        p = self.controller.project
        if p is not None:
            keys = shortcut_of(p.classes)
            lines.append("keys: " + ", ".join(f"{k} {c}" for c, k in keys.items()) + ", 0 clear")
        self.details.setText("<br>".join(lines))

    # -- slots ----------------------------------------------------------------------------------------------------
    def _on_controller_labels_changed(self, ids: list[int]) -> None:
        p = self.controller.project
        if p is None:
            return
        self._labels = p.store.labels()
        self.grid.refresh(ids or None)
        self.map.set_labels(self._labels, p.class_colors())
        self._show_preview()  # the grid keeps its order while labelling; filters apply on the next reorder
        self._show_count()  # the counter follows every label at once
        self._refresh_suggestions()
        if self.analysis is not None:  # cheap: no digest per key press; reload() measures it exactly
            self._show_stale("the labels changed since the fit they come from")

    def _on_controller_classes_changed(self) -> None:
        p = self.controller.project
        if p is not None:
            self._fill_filter()
            self.map.set_labels(self._labels, p.class_colors())
            self.grid.refresh()

    def _on_controller_job_finished(self, job: Job, status: str) -> None:
        self.suggest_button.setEnabled(self.controller.project is not None)
        if job.stage == "train" and status == "ok" and self.isVisible():
            self.reload()

    def _on_map_image_activated(self, image_id: int) -> None:
        self.tabs.setCurrentWidget(self.grid)
        if image_id in self._records:
            self.grid.select_keys([image_id])
            self.sort_by_similarity()

    def shutdown(self) -> None:
        """Stop thumbnail loading (app exit, tests)."""
        self.provider.shutdown()
        self.preview_provider.shutdown()
