"""The Fit page's "most uncertain" view: the unlabelled images the classifier is least sure about, to label next
(with their stored held-out heatmaps on request), and a button to fit again."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.controller import AppController
from app.widgets.image_grid import ImageGrid
from app.widgets.label_keys import install_label_keys
from app.widgets.thumbnails import ThumbnailProvider
from sslinspect import api

UNCERTAIN = 40
HEAT_TIP = (
    "The anomaly map of each image (held out: never compared with itself), on the scale calibrated on good "
    "parts: unpainted = like good parts, red = at the threshold"
)


class UncertainView(QWidget):
    """A labelling grid of the most uncertain unlabelled images.

    Signals:
        refit_requested: the user asked to fit again with the new labels.
    """

    refit_requested = Signal()

    def __init__(self, controller: AppController, provider: ThumbnailProvider, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.provider = provider
        self.analysis: api.Analysis | None = None
        self.label_map: dict[int, str] = {}
        self._heat: Any = None
        self.grid = ImageGrid(provider)
        self.grid.setAccessibleName("Most uncertain images")
        self.grid.grid_model.caption = self._caption
        self.grid.grid_model.badge = self._badge
        install_label_keys(self.grid, controller)
        self.refit_button = QPushButton("Fit again with the new labels")
        self.refit_button.clicked.connect(self.refit_requested)
        self.heat_check = QCheckBox("Show &heatmaps")
        self.heat_check.setToolTip(HEAT_TIP)
        self.heat_check.setEnabled(False)
        self.heat_check.toggled.connect(self._on_heat_check_toggled)
        hint = QLabel(
            "The unlabelled images the classifier is least sure about. Label them (1–9, G) and fit again; a few "
            "rounds of this improve the model fastest."
        )
        hint.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(hint)
        lay.addWidget(self.grid, 1)
        row = QHBoxLayout()
        row.addWidget(self.heat_check)
        row.addStretch(1)
        row.addWidget(self.refit_button)
        lay.addLayout(row)

    def clear(self) -> None:
        """Nothing fitted."""
        self.analysis = None
        self.grid.set_keys([])

    def show_analysis(self, a: api.Analysis, labels: list[str | None], label_map: dict[int, str], heat: Any) -> None:
        """List the ``UNCERTAIN`` least confident unlabelled images of ``a``."""
        self.analysis = a
        self.label_map = label_map
        self._heat = heat
        self.heat_check.setEnabled(heat is not None)
        self.heat_check.setToolTip(HEAT_TIP if heat is not None else "This run stored no anomaly maps")
        self._on_heat_check_toggled(self.heat_check.isChecked())
        rows = np.flatnonzero(np.array([x is None for x in labels], dtype=bool))
        rows = rows[np.argsort(a.confidence[rows], kind="stable")][:UNCERTAIN]
        self.grid.set_keys([int(i) for i in a.ids[rows]])

    def labels_changed(self, label_map: dict[int, str], ids: list[int]) -> None:
        """Repaint the badges of ``ids`` (all when empty)."""
        self.label_map = label_map
        self.grid.refresh(ids or None)

    def _on_heat_check_toggled(self, on: bool) -> None:
        heat = self._heat if on else None

        def painted(key: object, rgb: np.ndarray) -> np.ndarray:
            out = heat.overlay(int(str(key)), rgb) if heat is not None else None
            return rgb if out is None else out

        self.provider.set_transform(painted if heat is not None else None)
        self.grid.refresh()

    def _caption(self, key: object) -> str:
        a = self.analysis
        if a is None:
            return ""
        row = a.rows_of(np.array([key]))[0]
        return f"{a.predicted[row]} {a.confidence[row]:.2f}" if row >= 0 else ""

    def _badge(self, key: object) -> tuple[str, str] | None:
        p = self.controller.project
        if p is None:
            return None
        label = self.label_map.get(int(str(key)))
        return (label, p.class_colors().get(label, "#888888")) if label else None
