"""Step 5, Train: fit the few-shot classifier and the anomaly score (worker process), then review them.

Cross-validated metrics, the confusion matrix and per-class precision/recall; ROC and PR curves of the anomaly score
with a threshold the engineer can move over the histogram of scores; the most uncertain images to label next
(label them, retrain: a loop).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.jobs import Job
from app.pages.base import Page
from app.pages.images_page import image_source
from app.widgets.config_form import ConfigForm
from app.widgets.export_threshold import ExportThresholdBox
from app.widgets.image_grid import ImageGrid
from app.widgets.label_keys import install_label_keys
from app.widgets.metric_plot import MetricPlot
from app.widgets.progress import Coalescer, show_progress
from app.widgets.thumbnails import ThumbnailProvider
from sslinspect import api
from sslinspect.api import GOOD
from sslinspect.config import FewShotConfig
from sslinspect.errors import DataError, SSLInspectError
from sslinspect.events import Progress
from sslinspect.review import Curves, RunHeatmaps, label_list, score_curves, threshold_effect

UNCERTAIN = 40
SLIDER_STEPS = 1000


def _item(text: str, color: QColor | None = None) -> QTableWidgetItem:
    it = QTableWidgetItem(text)
    it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
    if color is not None:
        it.setBackground(color)
        it.setForeground(QColor("#000000") if color.lightness() > 140 else QColor("#ffffff"))
    return it


class TrainPage(Page):
    """Train, then inspect metrics, curves, the threshold and the most uncertain images."""

    title = "5  Train"
    explanation = (
        "Fits a defect classifier on your labels and an anomaly score that flags defects nobody labelled. The "
        "numbers are cross-validated on your labels. Move the threshold to trade missed defects against false "
        "alarms, label the most uncertain images and train again."
    )

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        self.analysis: api.Analysis | None = None
        self.train_button = QPushButton("&Train")
        self.train_button.clicked.connect(self.train)
        self.cancel_button = QPushButton("&Cancel")
        self.cancel_button.clicked.connect(controller.cancel_job)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status_label = QLabel("Not trained yet.")
        self.status_label.setWordWrap(True)
        self.form = ConfigForm(
            FewShotConfig, fields=("classifier", "cv_folds", "knn_k", "threshold_percentile", "min_shots", "device")
        )
        settings = QGroupBox("Settings")
        QVBoxLayout(settings).addWidget(self.form)
        summary = QGroupBox("Result")
        grid = QGridLayout(summary)
        self.values: dict[str, QLabel] = {}
        for k, (key, text) in enumerate(
            (
                ("cv", "Balanced accuracy (CV)"),
                ("classifier", "Classifier"),
                ("auroc", "Anomaly AUROC (labels)"),
                ("threshold", "Anomaly threshold"),
                ("data", "Data"),
                ("notes", "Notes"),
            )
        ):
            lab = QLabel("—")
            lab.setWordWrap(True)
            lab.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)  # rows grow with long notes
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.values[key] = lab
            name = QLabel(f"{text}:")
            name.setAlignment(Qt.AlignmentFlag.AlignTop)
            grid.addWidget(name, k // 2, 2 * (k % 2))
            grid.addWidget(lab, k // 2, 2 * (k % 2) + 1)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addLayout(buttons)
        ll.addWidget(self.progress)
        ll.addWidget(self.status_label)
        ll.addWidget(settings)
        ll.addStretch(1)

        # classifier tab
        self.confusion = QTableWidget()
        self.confusion.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.per_class = QTableWidget(0, 4)
        self.per_class.setHorizontalHeaderLabels(["Precision", "Recall", "F1", "Labels"])
        self.per_class.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.per_class.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        for table in (self.confusion, self.per_class):
            table.setSizeAdjustPolicy(QAbstractItemView.SizeAdjustPolicy.AdjustToContents)
        clf = QWidget()
        cl = QGridLayout(clf)
        cl.addWidget(QLabel("Confusion matrix (rows: your label, columns: predicted; out-of-fold):"), 0, 0)
        cl.addWidget(self.confusion, 1, 0)
        cl.addWidget(QLabel("Per class (cross-validated):"), 0, 1)
        cl.addWidget(self.per_class, 1, 1)
        cl.setRowStretch(2, 1)

        # anomaly tab
        self.hist = MetricPlot("Anomaly scores", x_label="score", y_label="images")
        self.hist.line_moved.connect(self._on_hist_line_moved)
        self.roc = MetricPlot(
            "ROC (labelled images)", x_label="false alarm rate", y_label="defects found", legend=False
        )
        self.pr = MetricPlot(
            "Precision / recall (labelled images)", x_label="recall", y_label="precision", legend=False
        )
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setAccessibleName("Anomaly threshold")
        self.slider.valueChanged.connect(self._on_slider_value_changed)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(4)
        self.spin.setSingleStep(0.01)
        self.spin.valueChanged.connect(self._on_spin_value_changed)
        self.reset_button = QPushButton("Calibrated value")
        self.reset_button.clicked.connect(self._on_reset_clicked)
        self.effect = QLabel()
        self.effect.setWordWrap(True)
        self.export_box = ExportThresholdBox(controller, lambda: self.spin.value() if self.analysis else None)
        trow = QHBoxLayout()
        trow.addWidget(QLabel("Threshold:"))
        trow.addWidget(self.slider, 1)
        trow.addWidget(self.spin)
        trow.addWidget(self.reset_button)
        anom = QWidget()
        al = QGridLayout(anom)
        al.addLayout(trow, 0, 0, 1, 2)
        al.addWidget(self.effect, 1, 0, 1, 2)
        al.addWidget(self.export_box, 2, 0, 1, 2)
        al.addWidget(self.hist, 3, 0, 1, 2)
        al.addWidget(self.roc, 4, 0)
        al.addWidget(self.pr, 4, 1)
        al.setRowStretch(3, 1)
        al.setRowStretch(4, 1)

        # uncertain tab
        self.provider = ThumbnailProvider(size=2 * max(96, 6 * self.fontMetrics().height()), parent=self)
        self.uncertain = ImageGrid(self.provider)
        self.uncertain.setAccessibleName("Most uncertain images")
        self.uncertain.grid_model.caption = self._uncertain_caption
        self.uncertain.grid_model.badge = self._badge
        install_label_keys(self.uncertain, controller)
        retrain = QPushButton("Retrain with the new labels")
        retrain.clicked.connect(self.train)
        self.heat_check = QCheckBox("Show &heatmaps")
        self.heat_check.setToolTip(
            "The anomaly map of each image (held out: never compared with itself), on the scale calibrated on good "
            "parts: unpainted = like good parts, red = at the threshold"
        )
        self.heat_check.setEnabled(False)
        self.heat_check.toggled.connect(self._on_heat_check_toggled)
        self._heat: RunHeatmaps | None = None
        unc = QWidget()
        ul = QVBoxLayout(unc)
        hint = QLabel(
            "The unlabelled images the classifier is least sure about. Label them (1–9, G) and retrain; a few rounds "
            "of this improve the model fastest."
        )
        hint.setWordWrap(True)
        ul.addWidget(hint)
        ul.addWidget(self.uncertain, 1)
        brow = QHBoxLayout()
        brow.addWidget(self.heat_check)
        brow.addStretch(1)
        brow.addWidget(retrain)
        ul.addLayout(brow)

        self.tabs = QTabWidget()
        self.tabs.addTab(clf, "Classifier")
        self.tabs.addTab(anom, "Anomaly score")
        self.tabs.addTab(unc, "Most uncertain")
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(summary)
        rl.addWidget(self.tabs, 1)
        self.add_columns(left, right, (1, 3))

        self._scores = np.empty(0)
        self._labels: list[str | None] = []
        self._label_map: dict[int, str] = {}
        self._progress_view: Coalescer[Progress] = Coalescer(self._show_progress, parent=self)
        self._curves: Curves | None = None
        self._range = (0.0, 1.0)
        controller.project_changed.connect(lambda _p: self.reload())
        controller.job_started.connect(self._on_controller_job_started)
        controller.job_event.connect(self._on_controller_job_event)
        controller.job_finished.connect(self._on_controller_job_finished)
        controller.labels_changed.connect(self._on_controller_labels_changed)
        self._update_buttons()

    def is_complete(self) -> bool:
        """A trained classifier exists."""
        st = self.controller.status
        return st is not None and st.fewshot_run is not None and not self.controller.is_busy()

    def on_enter(self) -> None:
        """Show the latest training run."""
        self.reload()

    def _update_buttons(self) -> None:
        busy = self.controller.is_busy()
        st = self.controller.status
        self.train_button.setEnabled(not busy and st is not None and st.checkpoint is not None)
        job = self.controller.job
        self.cancel_button.setEnabled(busy and job is not None and job.stage == "train")

    # -- actions --------------------------------------------------------------------------------------------------
    def train(self) -> Job | None:
        """Fit classifier and anomaly model in a worker process."""
        return self.run_form_job("train", [], self.form, "train", title="Training")

    def reload(self) -> None:
        """Read the latest few-shot run and fill every view."""
        p = self.controller.project
        self.analysis = None
        if p is not None:
            try:
                self.analysis = api.load_analysis(p)
            except SSLInspectError as exc:
                self.controller.message.emit("WARNING", str(exc))
        self._update_buttons()
        if self.analysis is None or p is None:
            for lab in self.values.values():
                lab.setText("—")
            self.export_box.show_stored(None)
            self.confusion.clear()
            self.per_class.setRowCount(0)
            self.uncertain.set_keys([])
            return
        image_source(p, self.provider, self.provider.size)
        a = self.analysis
        try:
            self._heat = api.load_heatmaps(p, a.run_dir)
        except SSLInspectError as exc:
            self._heat = None
            self.controller.message.emit("WARNING", f"heatmaps not shown: {exc}")
        self.heat_check.setEnabled(self._heat is not None)
        self.heat_check.setToolTip(self.heat_check.toolTip() if self._heat else "This run stored no anomaly maps")
        self._on_heat_check_toggled(self.heat_check.isChecked())
        self._scores = a.anomaly.astype(np.float64)
        self._label_map = p.store.labels()
        self._labels = label_list(a.ids, self._label_map)
        self._show_summary(a)
        self._show_confusion(a)
        self._show_curves(a)
        self._show_uncertain(a)
        self.status_label.setText(f"Showing run {a.run_dir.name}.")

    def _show_summary(self, a: api.Analysis) -> None:
        m = a.metrics
        cv = m.get("cv") or {}
        v = self.values
        v["classifier"].setText(f"{m.get('classifier', '?')} over {', '.join(a.classes)}")
        v["cv"].setText(
            f"{cv['balanced_accuracy']:.3f} (accuracy {cv['accuracy']:.3f}, {cv['folds']} folds)"
            if cv
            else "n/a: label at least 2 images of 2 classes"
        )
        auroc = m.get("anomaly_auroc_labelled")
        v["auroc"].setText(f"{auroc:.3f}" if auroc is not None else "n/a: label good and defect images")
        v["threshold"].setText(f"{a.threshold:.4f} ({m.get('threshold_percentile', '?')}th percentile of good scores)")
        v["data"].setText(
            f"{m.get('labelled', 0)} labels, {m.get('images', 0)} images, memory bank {m.get('bank_size', 0)}"
        )
        dropped = m.get("dropped_classes") or {}
        notes = [f"{c!r} left out ({n} label(s)): label more" for c, n in dropped.items()]
        if cv and a.classes and cv["balanced_accuracy"] < 1.5 / len(a.classes):
            notes.append(
                f"the classifier is near chance ({1 / len(a.classes):.2f}): label more images of each class; "
                "its defect types are not reliable yet"
            )
        if m.get("decision") == "anomaly":
            notes.append("OK/NG is decided by the anomaly score alone")
        elif m.get("decision") == "anomaly_or_class":
            notes.append("NG when the anomaly score is high or the classifier picks a defect class")
        v["notes"].setText("; ".join(notes) or "none")

    def _show_confusion(self, a: api.Analysis) -> None:
        cv = a.metrics.get("cv") or {}
        classes = list(a.classes)
        conf = np.array(cv.get("confusion") or np.zeros((0, 0)), dtype=float)
        self.confusion.clear()
        self.confusion.setRowCount(len(conf))
        self.confusion.setColumnCount(len(conf))
        self.confusion.setHorizontalHeaderLabels(classes[: len(conf)])
        self.confusion.setVerticalHeaderLabels(classes[: len(conf)])
        for i, row in enumerate(conf):
            total = max(row.sum(), 1)
            for j, n in enumerate(row):
                share = n / total
                color = QColor.fromHsvF(0.33 if i == j else 0.0, min(1.0, share) * 0.8, 0.95)
                self.confusion.setItem(i, j, _item(f"{int(n)}", color if n else None))
        self.confusion.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        per = cv.get("per_class") or {}
        self.per_class.setRowCount(len(per))
        self.per_class.setVerticalHeaderLabels(list(per))
        for i, stats in enumerate(per.values()):
            for j, key in enumerate(("precision", "recall", "f1")):
                self.per_class.setItem(i, j, _item(f"{stats[key]:.2f}"))
            self.per_class.setItem(i, 3, _item(str(stats.get("support", ""))))

    def _show_curves(self, a: api.Analysis) -> None:
        s = self._scores
        lab = np.array([x or "" for x in self._labels], dtype=object)
        good_like = (lab == "") | (lab == GOOD)
        hi = float(np.quantile(s, 0.999)) if len(s) else 1.0
        edges = np.linspace(float(s.min()) if len(s) else 0.0, max(hi, a.threshold) * 1.05, 61)
        self.hist.clear()
        self.hist.set_histogram(
            "unlabelled + good", edges, np.histogram(np.clip(s[good_like], None, edges[-1]), edges)[0]
        )
        bad = s[~good_like]
        if len(bad):
            self.hist.set_histogram(
                "labelled defects", edges, np.histogram(np.clip(bad, None, edges[-1]), edges)[0], color="#d62728"
            )
        self.hist.set_vline(a.threshold, movable=True)
        self._range = (float(edges[0]), float(edges[-1]))
        self.spin.blockSignals(True)
        self.spin.setRange(*self._range)
        self.spin.blockSignals(False)
        self.roc.clear()
        self.pr.clear()
        labelled = lab != ""
        try:
            self._curves = score_curves(s[labelled], (lab[labelled] != GOOD))
        except DataError as exc:
            self._curves = None
            self.roc.plot.getPlotItem().setTitle(str(exc), size="9pt")
        if self._curves is not None:
            c = self._curves
            self.roc.plot.getPlotItem().setTitle(f"AUROC {c.auroc:.3f}", size="9pt")
            self.roc.set_curve("ROC", c.fpr, c.tpr)
            self.roc.set_curve("chance", [0, 1], [0, 1], color="#9e9e9e")
            self.pr.set_curve("PR", c.tpr, c.precision)
            self.roc.set_range((0, 1), (0, 1))
            self.pr.set_range((0, 1), (0, 1))
        stored = self.export_box.show_stored(a.metrics)
        start = stored.threshold if stored is not None and stored.chosen else a.threshold
        self.set_threshold(self.controller.threshold or start)

    def _show_uncertain(self, a: api.Analysis) -> None:
        unlabelled = np.array([x is None for x in self._labels])
        rows = np.flatnonzero(unlabelled)
        rows = rows[np.argsort(a.confidence[rows], kind="stable")][:UNCERTAIN]
        self.uncertain.set_keys([int(i) for i in a.ids[rows]])

    # -- threshold ------------------------------------------------------------------------------------------------
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

    def _on_slider_value_changed(self, v: int) -> None:
        lo, hi = self._range
        self.set_threshold(lo + (hi - lo) * v / SLIDER_STEPS)

    def _on_spin_value_changed(self, v: float) -> None:
        self.set_threshold(v)

    def _on_hist_line_moved(self, x: float) -> None:
        self.set_threshold(x)

    def _on_reset_clicked(self) -> None:
        if self.analysis is not None:
            self.set_threshold(self.analysis.threshold)

    # -- cells and slots ------------------------------------------------------------------------------------------
    def _on_heat_check_toggled(self, on: bool) -> None:
        heat = self._heat if on else None

        def painted(key: object, rgb: np.ndarray) -> np.ndarray:
            out = heat.overlay(int(str(key)), rgb) if heat is not None else None
            return rgb if out is None else out

        self.provider.set_transform(painted if heat is not None else None)
        self.uncertain.refresh()

    def _uncertain_caption(self, key: object) -> str:
        a = self.analysis
        if a is None:
            return ""
        row = a.rows_of(np.array([key]))[0]
        return f"{a.predicted[row]} {a.confidence[row]:.2f}" if row >= 0 else ""

    def _badge(self, key: object) -> tuple[str, str] | None:
        p = self.controller.project
        if p is None:
            return None
        label = self._label_map.get(int(str(key)))
        return (label, p.class_colors().get(label, "#888888")) if label else None

    def _on_controller_labels_changed(self, ids: list[int]) -> None:
        if self.controller.project is not None:
            self._label_map = self.controller.project.store.labels()
        self.uncertain.refresh(ids or None)

    def _on_controller_job_started(self, job: Job) -> None:
        self._update_buttons()
        if job.stage == "train":
            self.progress.setRange(0, 0)
            self.progress.setVisible(True)

    def _on_controller_job_event(self, event: object) -> None:
        job = self.controller.job
        if job is not None and job.stage == "train" and isinstance(event, Progress):
            self._progress_view.submit(event)

    def _show_progress(self, event: Progress) -> None:
        show_progress(self.progress, event)
        self.status_label.setText(f"{event.stage}: {event.message}")

    def _on_controller_job_finished(self, job: Job, status: str) -> None:
        self._update_buttons()
        if job.stage == "train":
            self._progress_view.cancel()
            self.progress.setVisible(False)
            if status == "ok":
                self.reload()
            else:
                self.status_label.setText(
                    f"Training {status}" + (f": {job.error_message}" if job.error_message else ".")
                )
        self.completeness_changed.emit()
