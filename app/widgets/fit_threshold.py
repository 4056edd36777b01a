"""The Fit page's anomaly-threshold panel: slider, spin box and the draggable line over the histogram of scores,
what the threshold does on the labelled images, "Use for export", and (behind *Advanced*) ROC and PR curves.

The AUROC shown here is ``sslinspect.api.auroc`` on the same scores and labels the curves are drawn from; the page's
result box shows the same number (:attr:`ThresholdPanel.auroc`).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.glossary import tip
from app.widgets.export_threshold import ExportThresholdBox
from app.widgets.plots import MetricPlot
from sslinspect import api
from sslinspect.api import GOOD
from sslinspect.errors import DataError
from sslinspect.review import Curves, score_curves, threshold_effect

SLIDER_STEPS = 1000


class ThresholdPanel(QWidget):
    """Pick the anomaly threshold and see its effect.

    Signals:
        threshold_changed(float): the threshold was moved (slider, spin box, line or reset).
    """

    threshold_changed = Signal(float)

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.analysis: api.Analysis | None = None
        self.auroc: float | None = None
        self._scores = np.empty(0)
        self._labels: list[str | None] = []
        self._curves: Curves | None = None
        self._range = (0.0, 1.0)
        self.hist = MetricPlot("Anomaly scores", x_label="anomaly score (unitless distance)", y_label="images")
        self.hist.line_moved.connect(self.set_threshold)
        self.roc = MetricPlot(
            "ROC (labelled images)",
            x_label="false alarm rate (share of good)",
            y_label="defects found (share)",
            legend=False,
        )
        self.pr = MetricPlot(
            "Precision / recall (labelled images)",
            x_label="recall (share of defects found)",
            y_label="precision (share of alarms that are defects)",
            legend=False,
        )
        tip(self.hist, "anomaly score")
        tip(self.roc, "ROC")
        tip(self.pr, "precision / recall")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setAccessibleName("Anomaly threshold")
        self.slider.valueChanged.connect(self._on_slider_value_changed)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(4)
        self.spin.setSingleStep(0.01)
        self.spin.valueChanged.connect(self.set_threshold)
        tip(self.slider, "threshold")
        tip(self.spin, "threshold")
        self.reset_button = QPushButton("Calibrated value")
        self.reset_button.setToolTip("Go back to the threshold calibrated on good parts during the fit")
        self.reset_button.clicked.connect(self._on_reset_clicked)
        self.effect = QLabel()
        self.effect.setWordWrap(True)
        self.export_box = ExportThresholdBox(controller, lambda: self.spin.value() if self.analysis else None)
        self.advanced = QToolButton()
        self.advanced.setText("Advanced: ROC and precision/recall curves")
        self.advanced.setCheckable(True)
        self.advanced.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced.setToolTip("Show the diagnostic curves behind the numbers")
        self.advanced.toggled.connect(self._on_advanced_toggled)
        self._layout()
        self._on_advanced_toggled(False)

    def _layout(self) -> None:
        trow = QHBoxLayout()
        trow.addWidget(QLabel("Threshold:"))
        trow.addWidget(self.slider, 1)
        trow.addWidget(self.spin)
        trow.addWidget(self.reset_button)
        curves = QWidget()
        cl = QHBoxLayout(curves)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.roc)
        cl.addWidget(self.pr)
        self._curves_box = curves
        lay = QVBoxLayout(self)
        lay.addLayout(trow)
        lay.addWidget(self.effect)
        lay.addWidget(self.export_box)
        lay.addWidget(self.hist, 1)
        lay.addWidget(self.advanced)
        lay.addWidget(curves, 1)

    def _on_advanced_toggled(self, on: bool) -> None:
        self.advanced.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self._curves_box.setVisible(on)

    def clear(self) -> None:
        """Nothing fitted."""
        self.analysis = None
        self.auroc = None
        self.export_box.show_stored(None)

    def show_analysis(self, a: api.Analysis, scores: np.ndarray, labels: list[str | None]) -> None:
        """Draw the histogram and curves of ``a`` with the current labels; restore the chosen threshold."""
        self.analysis = a
        self._scores, self._labels = scores, labels
        lab = np.array([x or "" for x in labels], dtype=object)
        self._draw_histogram(a, lab)
        labelled = lab != ""
        self.roc.clear()
        self.pr.clear()
        positive = lab[labelled] != GOOD
        self.auroc = api.labelled_auroc(scores, labels)
        try:
            self._curves = score_curves(scores[labelled], positive)
        except DataError as exc:
            self._curves = None
            self.roc.set_note(str(exc))
        if self._curves is not None and self.auroc is not None:
            c = self._curves
            self.roc.set_note(f"AUROC {self.auroc:.3f}")
            self.roc.set_curve("ROC", c.fpr, c.tpr)
            self.roc.set_curve("chance", [0, 1], [0, 1], color="#9e9e9e")
            self.pr.set_curve("PR", c.tpr, c.precision)
            self.roc.set_range((0, 1), (0, 1))
            self.pr.set_range((0, 1), (0, 1))
        stored = self.export_box.show_stored(a.metrics)
        start = stored.threshold if stored is not None and stored.chosen else a.threshold
        self.set_threshold(self.controller.threshold or start)

    def _draw_histogram(self, a: api.Analysis, lab: np.ndarray) -> None:
        s = self._scores
        good_like = (lab == "") | (lab == GOOD)
        hi = float(np.quantile(s, 0.999)) if len(s) else 1.0
        edges = np.linspace(float(s.min()) if len(s) else 0.0, max(hi, a.threshold) * 1.05, 61)
        self.hist.clear()
        counts = np.histogram(np.clip(s[good_like], None, edges[-1]), edges)[0]
        self.hist.set_histogram("unlabelled + good", edges, counts)
        bad = s[~good_like]
        if len(bad):
            counts = np.histogram(np.clip(bad, None, edges[-1]), edges)[0]
            self.hist.set_histogram("labelled defects", edges, counts, color="#d62728")
        self.hist.set_vline(a.threshold, movable=True)
        self._range = (float(edges[0]), float(edges[-1]))
        self.spin.blockSignals(True)
        self.spin.setRange(*self._range)
        self.spin.blockSignals(False)

    def set_threshold(self, t: float) -> None:
        """Move the threshold: line, slider, spin box, operating points and the effect summary."""
        if self.analysis is None:
            return
        lo, hi = self._range
        self.controller.threshold = None if abs(t - self.analysis.threshold) < 1e-12 else float(t)
        self.slider.blockSignals(True)
        self.slider.setValue(round((t - lo) / max(hi - lo, 1e-12) * SLIDER_STEPS))
        self.slider.blockSignals(False)
        self.spin.blockSignals(True)
        self.spin.setValue(t)
        self.spin.blockSignals(False)
        self.hist.set_vline(t, movable=True)
        e = threshold_effect(self._scores, t, self._labels)
        parts = [f"flags {100 * e.flagged:.1f} % of all images"]
        if e.recall is not None:
            parts.append(f"finds {100 * e.recall:.0f} % of the labelled defects")
        if e.false_alarms is not None:
            parts.append(f"false alarms on {100 * e.false_alarms:.0f} % of the labelled good images")
        self.effect.setText("At this threshold the model " + ", ".join(parts) + ".")
        if self._curves is not None:
            c = self._curves
            k = int(np.searchsorted(-c.thresholds, -float(t), side="right")) - 1
            k = min(max(k, 0), len(c.fpr) - 1)
            self.roc.set_marker("threshold", c.fpr[k], c.tpr[k])
            self.pr.set_marker("threshold", c.tpr[k], c.precision[k])
        self.threshold_changed.emit(float(t))

    def _on_slider_value_changed(self, v: int) -> None:
        lo, hi = self._range
        self.set_threshold(lo + (hi - lo) * v / SLIDER_STEPS)

    def _on_reset_clicked(self) -> None:
        if self.analysis is not None:
            self.set_threshold(self.analysis.threshold)
