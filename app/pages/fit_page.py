"""Step 5, Fit: fit the few-shot classifier and the anomaly score (worker process), then review them.

The page itself is thin: a verdict in words with the cross-validated figures behind it, an "out of date" line when
the labels or the pretraining changed after the fit, and four tabs: :class:`TypingView` (how flagged defects are named
from their regions; hidden without a typing head), :class:`ThresholdPanel`, :class:`UncertainView` and the whole-image
classifier's :class:`ConfusionView`. Label minimums are checked before a worker starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.glossary import tip
from app.jobs import Job
from app.pages.base import Page
from app.pages.images_page import image_source
from app.widgets.config_form import ConfigForm
from app.widgets.fit_confusion import ConfusionView
from app.widgets.fit_threshold import ThresholdPanel
from app.widgets.fit_types import TypingView, typing_kind
from app.widgets.fit_uncertain import UncertainView
from app.widgets.progress import Coalescer, show_progress
from app.widgets.thumbnails import ThumbnailProvider
from sslinspect import api
from sslinspect.config import FewShotConfig
from sslinspect.errors import SSLInspectError
from sslinspect.events import Progress
from sslinspect.review import SURE_AGREE_TEXT, label_list

STAGE = "train"  # the worker command keeps its old name (an alias of `fit`)
RESULT_ROWS = (
    ("cv", "Balanced accuracy (CV)", "balanced accuracy (CV)"),
    ("classifier", "Classifier", "classifier"),
    ("auroc", "Anomaly AUROC (labels)", "AUROC"),
    ("threshold", "Anomaly threshold", "threshold"),
    ("data", "Data", "memory bank"),
    ("notes", "Notes", "verdict"),
)


class FitPage(Page):
    """Fit, then inspect the verdict, metrics, curves, the threshold and the most uncertain images."""

    wrapped_text_height = True

    title = "5  Fit"
    explanation = (
        "Fits, from your labels, an anomaly score that flags defects nobody labelled, a whole-image classifier, "
        "and (with two or more defect types) a typing step that locates each defect's region and names its type. "
        "The numbers are cross-validated on your labels. Move the threshold to trade missed defects against false "
        "alarms, label the most uncertain images and fit again."
    )

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        self.analysis: api.Analysis | None = None
        self.fit_button = QPushButton("&Fit")
        self.fit_button.setToolTip("Fit the classifier and the anomaly score on your labels (a worker process)")
        self.fit_button.clicked.connect(self.fit)
        self.cancel_button = QPushButton("&Cancel")
        self.cancel_button.clicked.connect(controller.cancel_job)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status_label = QLabel("Not fitted yet.")
        self.status_label.setWordWrap(True)
        self.form = ConfigForm(
            FewShotConfig, fields=("classifier", "cv_folds", "knn_k", "threshold_percentile", "min_shots", "device")
        )
        self.verdict = QLabel("—")
        self.verdict.setObjectName("verdict")
        self.verdict.setWordWrap(True)
        tip(self.verdict, "verdict")
        self.stale = QLabel()
        self.stale.setObjectName("warning")
        self.stale.setWordWrap(True)
        self.stale.setVisible(False)
        tip(self.stale, "out of date")
        self.values: dict[str, QLabel] = {}
        self.provider = ThumbnailProvider(size=2 * max(96, 6 * self.fontMetrics().height()), parent=self)
        self.confusion_view = ConfusionView()
        self.threshold_panel = ThresholdPanel(controller)
        self.uncertain_view = UncertainView(controller, self.provider)
        self.uncertain_view.refit_requested.connect(self.fit)
        self.tabs = QTabWidget()
        self.typing_view = TypingView()
        self.tabs.addTab(self.typing_view, "Defect types")  # hidden without a typing head
        self.tabs.addTab(self.threshold_panel, "Anomaly score")
        self.tabs.addTab(self.uncertain_view, "Most uncertain")
        self.tabs.addTab(self.confusion_view, "Whole-image classifier")
        self.tabs.setTabToolTip(0, tip(None, "defect types"))
        self.tabs.setTabToolTip(3, tip(None, "whole-image classifier"))
        self.add_columns(self._left_column(), self._right_column(), (1, 3))
        self._progress_view: Coalescer[Progress] = Coalescer(self._show_progress, parent=self)
        controller.project_changed.connect(lambda _p: self.reload())
        controller.job_started.connect(self._on_controller_job_started)
        controller.job_event.connect(self._on_controller_job_event)
        controller.job_finished.connect(self._on_controller_job_finished)
        controller.labels_changed.connect(self._on_controller_labels_changed)
        self._update_buttons()

    def _left_column(self) -> QWidget:
        settings = QGroupBox("Settings")
        QVBoxLayout(settings).addWidget(self.form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.fit_button)
        buttons.addWidget(self.cancel_button)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addLayout(buttons)
        ll.addWidget(self.progress)
        ll.addWidget(self.status_label)
        ll.addWidget(settings)
        ll.addStretch(1)
        return left

    def _right_column(self) -> QWidget:
        summary = QGroupBox("Result")
        grid = QGridLayout(summary)
        grid.addWidget(self.verdict, 0, 0, 1, 4)
        grid.addWidget(self.stale, 1, 0, 1, 4)
        for k, (key, text, term) in enumerate(RESULT_ROWS):
            lab = QLabel("—")
            lab.setWordWrap(True)
            lab.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)  # rows grow with long notes
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            name = QLabel(f"{text}:")
            name.setAlignment(Qt.AlignmentFlag.AlignTop)
            tip(name, term)
            lab.setToolTip(name.toolTip())
            self.values[key] = lab
            grid.addWidget(name, 2 + k // 2, 2 * (k % 2))
            grid.addWidget(lab, 2 + k // 2, 2 * (k % 2) + 1)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(summary)
        rl.addWidget(self.tabs, 1)
        return right

    def is_complete(self) -> bool:
        """A fitted model exists."""
        st = self.controller.status
        return st is not None and st.fewshot_run is not None and not self.controller.is_busy()

    def on_enter(self) -> None:
        """Show the latest fit."""
        self.reload()

    def _update_buttons(self) -> None:
        busy = self.controller.is_busy()
        st = self.controller.status
        self.fit_button.setEnabled(not busy and st is not None and st.checkpoint is not None)
        job = self.controller.job
        self.cancel_button.setEnabled(busy and job is not None and job.stage == STAGE)

    # -- actions --------------------------------------------------------------------------------------------------
    def shortfalls(self) -> list[api.Shortfall]:
        """What the labels lack for a fit that uses every labelled class (checked before a worker starts)."""
        st = self.controller.status
        try:
            min_shots = self.form.value().min_shots
        except SSLInspectError:
            min_shots = FewShotConfig().min_shots
        return api.fit_shortfalls(st.labels if st is not None else {}, min_shots)

    def fit(self) -> Job | None:
        """Fit classifier and anomaly model in a worker process, once the labels are enough."""
        short = self.shortfalls()
        if short:
            text = "Not enough labels to fit: " + "; ".join(s.describe() for s in short) + "."
            self.status_label.setText(text)
            self.controller.message.emit("WARNING", text)
            return None
        return self.run_form_job(STAGE, [], self.form, "train", title="Fitting")

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
            self.verdict.setText("Not fitted yet.")
            self.stale.setVisible(False)
            self.threshold_panel.clear()
            self.confusion_view.clear()
            self.typing_view.clear()
            self.uncertain_view.clear()
            return
        records = image_source(p, self.provider, self.provider.size)
        a = self.analysis
        try:
            heat = api.load_heatmaps(p, a.run_dir)
        except SSLInspectError as exc:
            heat = None
            self.controller.message.emit("WARNING", f"heatmaps not shown: {exc}")
        label_map = p.store.labels()
        labels = label_list(a.ids, label_map)
        self.threshold_panel.show_analysis(a, a.anomaly.astype("float64"), labels)
        self.confusion_view.show_cv(a.metrics.get("cv") or {}, list(a.classes))
        self._show_typing(a, lambda i: p.image_path(r.source, r.relpath) if (r := records.get(i)) else None)
        self.uncertain_view.show_analysis(a, labels, label_map, heat)
        self._show_summary(a)
        self._show_staleness()
        self.status_label.setText(f"Showing fit {a.run_dir.name}.")

    def _show_typing(self, a: api.Analysis, path_of: Callable[[int], Path | None]) -> None:
        """The "Defect types" tab from ``metrics["typing"]`` (hidden, with the whole-image classifier shown instead,
        for a fit without a typing head)."""
        typing = a.metrics.get("typing")
        if typing:
            self.typing_view.show_typing(typing, int(a.metrics.get("input_size") or 0), path_of)
        else:
            self.typing_view.clear()
            if self.tabs.currentIndex() == 0:
                self.tabs.setCurrentWidget(self.confusion_view)
        self.tabs.setTabVisible(0, bool(typing))

    def _show_summary(self, a: api.Analysis) -> None:
        m = a.metrics
        cv = m.get("cv") or {}
        v = self.values
        auroc = self.threshold_panel.auroc  # the number the ROC tab draws: one truth
        self.verdict.setText(f"<b>{api.fit_verdict(m, auroc).describe()}</b>")
        v["classifier"].setText(f"{m.get('classifier', '?')} over {', '.join(a.classes)}")
        v["cv"].setText(
            f"{cv['balanced_accuracy']:.3f} (accuracy {cv['accuracy']:.3f}, {cv['folds']} folds)"
            if cv
            else "n/a: label at least 2 images of 2 classes"
        )
        typing = m.get("typing") or {}
        if typing.get("balanced_accuracy") is not None:  # what names the defects: the region typing
            v["classifier"].setText(
                f"{typing_kind(typing)} on defect regions over {', '.join(typing.get('classes') or [])}"
                f"; whole image: {m.get('classifier', '?')}"
            )
            v["cv"].setText(
                f"{typing['balanced_accuracy']:.3f} naming defect types (accuracy {typing['accuracy']:.3f}, "
                f"{typing['folds']} folds)" + (f"; whole image {cv['balanced_accuracy']:.3f}" if cv else "")
            )
        v["auroc"].setText(f"{auroc:.3f}" if auroc is not None else "n/a: label good and defect images")
        v["threshold"].setText(f"{a.threshold:.4f} ({m.get('threshold_percentile', '?')}th percentile of good scores)")
        v["data"].setText(
            f"{m.get('labelled', 0)} labels, {m.get('images', 0)} images, memory bank {m.get('bank_size', 0)}"
        )
        v["notes"].setText("; ".join(self._notes(a)) or "none")

    @staticmethod
    def _notes(a: api.Analysis) -> list[str]:
        m = a.metrics
        cv = m.get("cv") or {}
        dropped = m.get("dropped_classes") or {}
        notes = [f"{c!r} left out ({n} label(s)): label more" for c, n in dropped.items()]
        typing = m.get("typing") or {}
        types = typing.get("classes") or []
        if typing.get("balanced_accuracy") is not None and types:  # the region typing names the defects
            if typing["balanced_accuracy"] < 1.5 / len(types):
                notes.append(
                    f"defect types are named near chance ({1 / len(types):.2f} over {len(types)} types): label more "
                    "defects of each type"
                )
            notes.append(FitPage._sure_note(typing))
        elif cv and a.classes and cv["balanced_accuracy"] < 1.5 / len(a.classes):
            notes.append(
                f"the classifier is near chance ({1 / len(a.classes):.2f}): label more images of each class; "
                "its defect types are not reliable yet"
            )
        if m.get("decision") == "anomaly":
            notes.append("OK/NG is decided by the anomaly score alone")
        elif m.get("decision") == "anomaly_or_class":
            notes.append("NG when the anomaly score is high or the classifier picks a defect class")
        return notes

    @staticmethod
    def _sure_note(typing: dict[str, Any]) -> str:
        """When predict calls a name sure (``type_sure`` 1), from the fit's confidence cut (``typing.sure_cut``)."""
        cut, coverage, right = typing.get("sure_cut"), typing.get("sure_coverage"), typing.get("sure_accuracy")
        if cut is None or cut > 1.0:
            return "no defect name is sure yet (predict marks every name unsure, '?'): label more defects of each type"
        if cut <= 0.0:
            return "every defect name counts as sure (fitted before names had a confidence cut: fit again)"
        share = f"{coverage:.0%} of the labelled defects" if coverage is not None else "some labelled defects"
        agree = f" {SURE_AGREE_TEXT}" if typing.get("sure_agree") else ""
        return f"defect names are sure from confidence {cut:.2f}{agree} ({share}" + (
            f", {right:.0%} of those right out of fold)" if right is not None else ")"
        )

    def _show_staleness(self) -> None:
        p, a = self.controller.project, self.analysis
        st = api.fit_staleness(p, a.run_dir) if p is not None and a is not None else None
        self.stale.setText(st.describe() if st is not None else "")
        self.stale.setVisible(st is not None and st.stale)

    # -- slots ----------------------------------------------------------------------------------------------------
    def _on_controller_labels_changed(self, ids: list[int]) -> None:
        p = self.controller.project
        if p is not None:
            self.uncertain_view.labels_changed(p.store.labels(), ids)
        if self.isVisible():  # hidden: on_enter() reloads and measures it then
            self._show_staleness()

    def _on_controller_job_started(self, job: Job) -> None:
        self._update_buttons()
        if job.stage == STAGE:
            self.progress.setRange(0, 0)
            self.progress.setVisible(True)

    def _on_controller_job_event(self, event: object) -> None:
        job = self.controller.job
        if job is not None and job.stage == STAGE and isinstance(event, Progress):
            self._progress_view.submit(event)

    def _show_progress(self, event: Progress) -> None:
        show_progress(self.progress, event)
        self.status_label.setText(f"{event.stage}: {event.message}")

    def _on_controller_job_finished(self, job: Job, status: str) -> None:
        self._update_buttons()
        if job.stage == STAGE:
            self._progress_view.cancel()
            self.progress.setVisible(False)
            if status == "ok":
                self.reload()
            else:
                self.status_label.setText(f"Fit {status}" + (f": {job.error_message}" if job.error_message else "."))
        self.completeness_changed.emit()
