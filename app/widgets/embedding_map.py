"""The embedding map: every image as a point (2-D projection of its embedding), coloured by label or anomaly
score, with a thumbnail on hover, click or Shift+drag lasso to select, and labelling of the selection."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.widgets.plots import ScatterView
from app.widgets.thumbnails import ThumbnailProvider

UNLABELLED = "#9e9e9e"
SCORE_COLORS = ("#313695", "#4575b4", "#74add1", "#abd9e9", "#fee090", "#fdae61", "#f46d43", "#d73027")


class EmbeddingMap(QWidget):
    """Scatter of image embeddings with hover previews and selection labelling.

    Signals:
        label_requested(object, object): label these image ids (list) with this class (str, or None to clear).
        image_activated(int): an image was double-clicked.
        selection_changed(object): the selected image ids (list).
    """

    label_requested = Signal(object, object)
    image_activated = Signal(int)
    selection_changed = Signal(object)

    def __init__(self, provider: ThumbnailProvider, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.provider = provider
        self.view = ScatterView()
        self.view.setAccessibleName("Embedding map")
        self.view.setToolTip("Drag to pan, wheel to zoom, click to select, Shift+drag to lasso (Ctrl adds).")
        self.color_by = QComboBox()
        self.color_by.addItems(["Label", "Anomaly score", "None"])
        self.color_by.setAccessibleName("Colour points by")
        self.color_by.currentIndexChanged.connect(lambda _i: self._recolor())
        self.class_box = QComboBox()
        self.class_box.setAccessibleName("Class for the selection")
        self.apply_button = QPushButton("Label selection")
        self.clear_button = QPushButton("Clear labels")
        self.apply_button.clicked.connect(self._on_apply_clicked)
        self.clear_button.clicked.connect(self._on_clear_clicked)
        self.info = QLabel("No map yet.")
        self.info.setObjectName("hint")
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Colour by:"))
        top.addWidget(self.color_by)
        top.addStretch(1)
        top.addWidget(self.class_box)
        top.addWidget(self.apply_button)
        top.addWidget(self.clear_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.view, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.info, 1)
        bottom.addWidget(self.legend, 2)
        lay.addLayout(bottom)
        self._popup = QLabel(None, Qt.WindowType.ToolTip)
        self._popup.setObjectName("mapPopup")
        self._popup.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._caption = ""
        self._hover_id: int | None = None
        self._hover_pos = QPoint()
        self.ids = np.empty(0, np.int64)
        self._labels: Mapping[int, str] = {}
        self._colors: Mapping[str, str] = {}
        self._scores: np.ndarray | None = None
        self.view.hovered.connect(self._on_view_hovered)
        self.view.selection_changed.connect(self._on_view_selection_changed)
        self.view.activated.connect(lambda i: self.image_activated.emit(int(self.ids[i])))
        provider.thumbnail_ready.connect(self._on_provider_thumbnail_ready)
        self._update_buttons()

    # -- data ---------------------------------------------------------------------------------------------------
    def set_map(self, ids: np.ndarray, xy: np.ndarray, *, caption: str = "") -> None:
        """Show points ``xy`` for images ``ids`` (aligned rows)."""
        self.ids = np.asarray(ids, np.int64)
        self._scores = None
        groups, colors = self._groups()
        self.view.set_points(np.asarray(xy), groups, colors)
        self._caption = caption or f"{len(self.ids)} images"
        self.info.setText(self._caption + ("  ·  click or Shift+drag to select" if len(self.ids) else ""))
        self._update_buttons()

    def set_labels(self, labels: Mapping[int, str], class_colors: Mapping[str, str]) -> None:
        """Label of each image id, and the colour of each class (recolours when colouring by label)."""
        self._labels = labels
        self._colors = class_colors
        current = self.class_box.currentText()
        self.class_box.clear()
        self.class_box.addItems(list(class_colors))
        if current:
            self.class_box.setCurrentText(current)
        if self.color_by.currentIndex() == 0:
            self._recolor()

    def set_scores(self, ids: np.ndarray, scores: np.ndarray) -> None:
        """Anomaly score per image id (for the "Anomaly score" colouring)."""
        lookup = dict(zip(np.asarray(ids).tolist(), np.asarray(scores, np.float64).tolist(), strict=True))
        self._scores = np.array([lookup.get(int(i), np.nan) for i in self.ids], np.float64)
        if self.color_by.currentIndex() == 1:
            self._recolor()

    def selected_ids(self) -> list[int]:
        """Image ids of the selected points."""
        return [int(self.ids[i]) for i in self.view.selection()]

    def select_ids(self, image_ids: list[int]) -> None:
        """Select the points of ``image_ids``."""
        rows = np.flatnonzero(np.isin(self.ids, np.asarray(image_ids, np.int64)))
        self.view.select(rows)

    def _groups(self) -> tuple[np.ndarray, list[str]]:
        mode = self.color_by.currentIndex()
        n = len(self.ids)
        if mode == 1 and self._scores is not None and np.isfinite(self._scores).any():
            finite = np.where(np.isfinite(self._scores), self._scores, np.nanmin(self._scores))
            edges = np.quantile(finite, np.linspace(0, 1, len(SCORE_COLORS) + 1)[1:-1])
            self.legend.setText(
                "anomaly score: " + " ".join(f"<span style='color:{c}'>■</span>" for c in SCORE_COLORS) + " high"
            )
            return np.searchsorted(edges, finite), list(SCORE_COLORS)
        if mode == 0 and self._colors:
            names = list(self._colors)
            index = {c: k + 1 for k, c in enumerate(names)}
            # vectorised lookup: labels are few, points may be 100,000
            lab_ids = np.fromiter(self._labels.keys(), np.int64, count=len(self._labels))
            lab_grp = np.fromiter((index.get(v, 0) for v in self._labels.values()), np.int64, count=len(self._labels))
            groups = np.zeros(n, np.int64)
            if len(lab_ids):
                order = np.argsort(lab_ids)
                pos = np.clip(np.searchsorted(lab_ids[order], self.ids), 0, len(lab_ids) - 1)
                hit = lab_ids[order][pos] == self.ids
                groups[hit] = lab_grp[order][pos][hit]
            self.legend.setText(
                f"<span style='color:{UNLABELLED}'>■</span> unlabelled  "
                + "  ".join(f"<span style='color:{self._colors[c]}'>■</span> {c}" for c in names)
            )
            return groups, [UNLABELLED, *[self._colors[c] for c in names]]
        self.legend.setText("")
        return np.zeros(n, np.int64), ["#4a90d9"]

    def _recolor(self) -> None:
        if len(self.ids):
            groups, colors = self._groups()
            self.view.set_groups(groups, colors)

    # -- interaction --------------------------------------------------------------------------------------------
    def _on_view_hovered(self, index: int, pos: QPoint) -> None:
        if index < 0:
            self._hover_id = None
            self._popup.hide()
            return
        self._hover_id = int(self.ids[index])
        self._hover_pos = pos
        self._show_popup()

    def _show_popup(self) -> None:
        if self._hover_id is None:
            return
        key = self._hover_id
        label = self._labels.get(key, "unlabelled")
        text = f"#{key}  {label}"
        if self._scores is not None:
            row = np.flatnonzero(self.ids == key)
            if len(row) and np.isfinite(self._scores[row[0]]):
                text += f"  score {self._scores[row[0]]:.3f}"
        pm = self.provider.get(key)
        if pm is not None:
            self._popup.setPixmap(pm.scaled(160, 160, Qt.AspectRatioMode.KeepAspectRatio))
            self._popup.setToolTip(text)
        else:
            self._popup.setText(text + "\n(loading…)")
        self._popup.setAccessibleDescription(text)
        self._popup.adjustSize()
        self._popup.move(self._hover_pos + QPoint(16, 16))
        self._popup.show()

    def _on_provider_thumbnail_ready(self, key: object) -> None:
        if key == self._hover_id:
            self._show_popup()

    def _on_view_selection_changed(self, rows: np.ndarray) -> None:
        ids = [int(self.ids[i]) for i in rows]
        n = len(ids)
        self.info.setText(f"{n} selected: choose a class and press Label selection" if n else self._caption)
        self._update_buttons()
        self.selection_changed.emit(ids)

    def _update_buttons(self) -> None:
        has = len(self.view.selection()) > 0
        self.apply_button.setEnabled(has and self.class_box.count() > 0)
        self.clear_button.setEnabled(has)

    def _on_apply_clicked(self) -> None:
        self.label_requested.emit(self.selected_ids(), self.class_box.currentText())

    def _on_clear_clicked(self) -> None:
        self.label_requested.emit(self.selected_ids(), None)

    def hideEvent(self, event: object) -> None:
        """Never leave the hover preview floating."""
        self._popup.hide()
        super().hideEvent(event)  # type: ignore[arg-type]
