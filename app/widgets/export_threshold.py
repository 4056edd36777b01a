"""The Fit page's "use this threshold for export": stores the picked NG (and review) threshold in the trained head.

The head on disk is the source of truth (``sslinspect.api.set_threshold`` writes it and records the choice in
``metrics.json``), so the choice survives closing the app, and the next export, from the GUI or the CLI, bakes it
into the model as the default of its threshold inputs.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QWidget

from app.controller import AppController
from sslinspect import api
from sslinspect.errors import SSLInspectError
from sslinspect.review import ExportThresholds, export_thresholds


class ExportThresholdBox(QWidget):
    """Review-band spin box, a "Use for export" button and the thresholds the next export will use.

    Signals:
        applied(ExportThresholds): after the thresholds were stored.
    """

    applied = Signal(object)

    def __init__(
        self, controller: AppController, current: Callable[[], float | None], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.controller = controller
        self._current = current
        self.review = QDoubleSpinBox()
        self.review.setDecimals(4)
        self.review.setSingleStep(0.01)
        self.review.setRange(0.0, 1e6)
        self.review.setSpecialValueText("off")  # 0: no review band (scores are distances, never below 0)
        self.review.setAccessibleName("Review threshold (off: OK or NG only)")
        self.review.setToolTip("Scores between this and the threshold are marked 'review' (OK / review / NG)")
        self.apply_button = QPushButton("Use for &export")
        self.apply_button.setToolTip("The next export bakes these thresholds in (the line can still override them)")
        self.apply_button.clicked.connect(self.apply)
        self.stored = QLabel("—")
        self.stored.setWordWrap(True)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Review from:"))
        row.addWidget(self.review)
        row.addWidget(self.apply_button)
        row.addWidget(self.stored, 1)

    def show_stored(self, metrics: dict[str, object] | None) -> ExportThresholds | None:
        """Show what the next export uses, from a few-shot run's metrics (None: nothing trained)."""
        stored = export_thresholds(dict(metrics)) if metrics else None
        self.stored.setText(f"Export uses {stored.describe()}." if stored else "—")
        self.apply_button.setEnabled(stored is not None)
        if stored is not None:
            self.review.setValue(stored.review_threshold if stored.review_threshold < stored.threshold else 0.0)
        return stored

    def apply(self) -> ExportThresholds | None:
        """Store the current threshold (and review band) in the latest trained head."""
        project, t = self.controller.project, self._current()
        if project is None or t is None:
            return None
        review = self.review.value() or None
        if review is not None and review > t:
            self.stored.setText(f"The review threshold {review:.4f} must not exceed the NG threshold {t:.4f}.")
            return None
        try:
            api.set_threshold(project, t, review)
            analysis = api.load_analysis(project)
        except (SSLInspectError, ValueError, OSError) as exc:
            self.controller.error_occurred.emit(f"could not store the threshold: {exc}", "")
            return None
        stored = self.show_stored(analysis.metrics if analysis else None)
        if stored is not None:
            self.controller.message.emit("INFO", f"the next export uses {stored.describe()}")
            self.applied.emit(stored)
        return stored
