"""Step 3, Pretrain: self-supervised pretraining in a worker process, with live plots and the embedding map.

A preset gives good defaults (Start and go); the expert panel edits every setting that matters. Pause, resume and
cancel work at step boundaries; a cancelled run keeps its checkpoint and can be resumed. Reopening a project redraws
the latest run's plots from its ``events.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.jobs import Job
from app.jobs.device import DeviceInfo, DeviceProbe
from app.pages.base import Page
from app.widgets.config_form import ConfigForm
from app.widgets.embedding_map import EmbeddingMap
from app.widgets.plots import TrainingPlots
from app.widgets.progress import Coalescer, show_progress
from app.widgets.thumbnails import ThumbnailProvider
from sslinspect import api
from sslinspect.api import BACKBONES, METHODS, from_dict, to_dict
from sslinspect.config import PretrainConfig
from sslinspect.errors import SSLInspectError
from sslinspect.events import Artifact, Finished, Metric, Progress, Started
from sslinspect.review import read_events

# Mirrors sslinspect.train.health.COLLAPSE_STD (a torch module the GUI does not import).
COLLAPSE_STD = 0.05
EXPERT_FIELDS = (
    "method",
    "backbone",
    "image_size",
    "epochs",
    "batch_size",
    "max_minutes",
    "device",
    "lr",
    "temperature",
    "seed",
    "augment",
)


def presets(cuda: bool) -> dict[str, PretrainConfig]:
    """Named starting points; "Recommended" depends on whether a GPU is there."""
    # the defect-aware method at the frames' native size (bench/quality.py's winner); a 15-minute budget on a CPU
    recommended = PretrainConfig(batch_size=32) if cuda else PretrainConfig(max_minutes=15.0)
    return {
        "Recommended": recommended,
        "Quick check (a few minutes)": PretrainConfig(epochs=200, max_minutes=3.0, log_every=10),
    }


class PretrainPage(Page):
    """Configure, start, pause, resume and cancel pretraining; watch its curves and embedding map."""

    scrolls = False  # fits 1024×700 on its own (the plots scroll inside); see Page.scrolls

    title = "3  Pretrain"
    explanation = (
        "The network learns what your parts look like from the unlabeled images alone (self-supervised). Press "
        "Start with the recommended settings and watch the loss fall; a warning appears if training goes wrong "
        "(the diagnostic plots are under Advanced). Pausing and cancelling keep the last checkpoint, and a stopped "
        "run can be resumed."
    )

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        self.device_probe = DeviceProbe(self)
        self.device_probe.detected.connect(self._on_device_detected)
        self._cuda = False
        self._progress_view: Coalescer[Progress] = Coalescer(self._show_progress, parent=self)
        self.preset = QComboBox()
        self.preset.setAccessibleName("Preset")
        self.preset.setToolTip(
            "Quick check: a short run to see that everything works. Recommended: sized for the device shown. "
            "Custom: your own settings (Expert settings)"
        )
        self.preset.currentIndexChanged.connect(self._on_preset_changed)
        self.device_label = QLabel("detecting…")
        self.device_label.setWordWrap(True)
        # two lines reserved from the start: the answer never pushes the buttons down (a click would miss)
        self.device_label.setMinimumHeight(2 * self.fontMetrics().lineSpacing())
        self.device_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.form = ConfigForm(
            PretrainConfig, fields=EXPERT_FIELDS, choices={"method": list(METHODS), "backbone": list(BACKBONES)}
        )
        self.form.changed.connect(self._on_form_changed)
        expert_scroll = QScrollArea()
        expert_scroll.setWidgetResizable(True)
        expert_scroll.setWidget(self.form)
        self.expert_toggle = QToolButton()
        self.expert_toggle.setText("Expert settings")
        self.expert_toggle.setCheckable(True)
        self.expert_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.expert_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.expert_toggle.toggled.connect(self._on_expert_toggled)
        self.expert = expert_scroll
        self.expert.setVisible(False)
        self.add_columns(self._control_column(), self._view_column(), (1, 3))
        self._fill_presets()
        controller.project_changed.connect(lambda _p: self.replay_latest())
        controller.project_changed.connect(lambda _p: self._restore_preset())
        controller.job_started.connect(self._on_controller_job_started)
        controller.job_event.connect(self._on_controller_job_event)
        controller.job_finished.connect(self._on_controller_job_finished)
        controller.labels_changed.connect(lambda _ids: self._update_map_labels())
        controller.classes_changed.connect(self._update_map_labels)
        controller.status_changed.connect(lambda _s: self._update_buttons())
        self._update_buttons()

    def _control_column(self) -> QWidget:
        """Preset, device, expert settings, Start / Pause / Cancel / Resume, progress and warnings."""
        self.start_button = QPushButton("&Start")
        self.pause_button = QPushButton("&Pause")
        self.pause_button.setCheckable(True)
        self.cancel_button = QPushButton("&Cancel")
        self.resume_button = QPushButton("&Resume last run")
        self.start_button.clicked.connect(lambda: self.start(resume=False))
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.pause_button.toggled.connect(self._on_pause_toggled)
        self.cancel_button.clicked.connect(self.controller.cancel_job)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.cancel_button):
            buttons.addWidget(b)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status_label = QLabel("Not started.")
        self.status_label.setWordWrap(True)
        self.warning = QLabel()
        self.warning.setObjectName("warningBanner")
        self.warning.setWordWrap(True)
        self.warning.setVisible(False)

        settings = QGroupBox("Settings")
        sf = QFormLayout(settings)
        sf.addRow("Preset:", self.preset)
        sf.addRow("Device:", self.device_label)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(settings)
        ll.addWidget(self.expert_toggle)
        ll.addWidget(self.expert, 1)
        ll.addLayout(buttons)
        ll.addWidget(self.resume_button)
        ll.addWidget(self.progress)
        ll.addWidget(self.status_label)
        ll.addWidget(self.warning)
        ll.addStretch(0)
        return left

    def _view_column(self) -> QWidget:
        """The run's live curves and embedding map."""
        self.plots = TrainingPlots()
        self.plots.set_advanced(self.controller.settings.advanced_plots())  # remembered between sessions
        self.plots.advanced_toggled.connect(self.controller.settings.set_advanced_plots)
        self.provider = ThumbnailProvider(size=160, parent=self)
        self.map = EmbeddingMap(self.provider)
        self.map.label_requested.connect(self.controller.set_labels)
        self.run_label = QLabel()
        self.run_label.setObjectName("hint")
        self.tabs = QTabWidget()
        self.tabs.addTab(self.plots, "Training curves")
        self.tabs.addTab(self.map, "Embedding map")
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.run_label)
        rl.addWidget(self.tabs, 1)
        return right

    # -- state --------------------------------------------------------------------------------------------------
    def is_complete(self) -> bool:
        """A checkpoint exists and nothing is running."""
        st = self.controller.status
        return st is not None and st.checkpoint is not None and not self._running()

    def on_enter(self) -> None:
        """Find out the device (once)."""
        self.device_probe.start()

    def _running(self) -> bool:
        job = self.controller.job
        return job is not None and job.is_running() and job.stage == "pretrain"

    def _update_buttons(self) -> None:
        running = self._running()
        busy = self.controller.is_busy()
        st = self.controller.status
        self.start_button.setEnabled(not busy and st is not None and st.can_pretrain)
        self.resume_button.setEnabled(not busy and st is not None and st.can_resume)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        if not running and self.pause_button.isChecked():
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(False)
            self.pause_button.setText("&Pause")
            self.pause_button.blockSignals(False)
        self.form.setEnabled(not running)
        self.preset.setEnabled(not running)

    def _fill_presets(self) -> None:
        self.preset.blockSignals(True)
        self.preset.clear()
        self._presets = presets(self._cuda)
        self.preset.addItems([*self._presets, "Custom"])
        self.preset.blockSignals(False)
        self._on_preset_changed(0)

    def config(self) -> PretrainConfig:
        """The configuration Start will use (validated by the core)."""
        return dataclasses.replace(self.form.value(), threads=self.controller.settings.worker_threads())

    # -- actions ------------------------------------------------------------------------------------------------
    def start(self, *, resume: bool = False) -> Job | None:
        """Start (or resume) pretraining in a worker process."""
        p = self.controller.project
        if p is None:
            return None
        try:
            cfg = self._resumed_config() if resume else None
            cfg = cfg or self.config()
        except SSLInspectError as exc:
            self.controller.error_occurred.emit(str(exc), "")
            return None
        cmd = ["pretrain", str(p.root), "--threads", str(cfg.threads)]
        if resume:
            cmd.append("--resume")
        else:
            self.plots.reset()
            self.warning.setVisible(False)
        return self.controller.run_worker(cmd, stage="pretrain", title="Pretraining", config={"pretrain": to_dict(cfg)})

    def _latest_run_config(self) -> PretrainConfig | None:
        """The settings of the project's latest pretraining run; None without one or if they are unreadable."""
        st = self.controller.status
        run = st.pretrain_run if st is not None else None
        try:
            stored = json.loads((run / "config.json").read_text(encoding="utf-8"))["pretrain"] if run else None
            cfg = from_dict(PretrainConfig, stored, section="pretrain") if stored else None
        except (OSError, ValueError, KeyError, SSLInspectError):
            return None
        return dataclasses.replace(cfg, threads=self.controller.settings.worker_threads()) if cfg else None

    def _resumed_config(self) -> PretrainConfig | None:
        """A resumed run keeps its own settings (epochs included), shown in the form; None if they are unreadable."""
        cfg = self._latest_run_config()
        if cfg is None:
            return None
        self.form.set_value(cfg)  # the form shows what runs (the preset switches to Custom)
        self._on_form_changed()
        self.status_label.setText(f"Resuming with the run's own settings ({cfg.epochs} epochs).")
        return cfg

    def replay_latest(self) -> None:
        """Draw the latest run's curves and embedding map from its files (after opening a project)."""
        self.plots.reset()
        self.warning.setVisible(False)
        self.map.set_map(np.empty(0, np.int64), np.empty((0, 2)), caption="No map yet.")
        st = self.controller.status
        p = self.controller.project
        if p is None or st is None or st.pretrain_run is None:
            self.run_label.setText("No pretraining run yet.")
            self.status_label.setText("Not started.")
            return
        self._point_provider()
        run = st.pretrain_run
        for event in read_events(run):
            if isinstance(event, Metric):
                self._on_metric(event)
        self.plots.flush()
        self.load_map(run / "embedding_map" / "latest.npz")
        self.run_label.setText(f"Run {run.name}: {st.pretrain_state or 'unknown state'}")
        self.status_label.setText(
            {"ok": "The last run finished: go on to Label, or start a new run."}.get(
                st.pretrain_state or "", "The last run stopped early: Resume continues it from its checkpoint."
            )
        )

    def load_map(self, path: Path) -> bool:
        """Show an embedding-map snapshot (``ids``, ``xy``, ``epoch``)."""
        if not path.is_file():
            return False
        try:
            with np.load(path) as data:
                ids, xy, epoch = data["ids"], data["xy"], int(data["epoch"])
        except (OSError, ValueError, KeyError) as exc:
            self.controller.message.emit("WARNING", f"{path}: unreadable embedding map ({exc})")
            return False
        self.map.set_map(ids, xy, caption=f"{len(ids)} images, epoch {epoch} (PCA of the embeddings)")
        self._update_map_labels()
        p = self.controller.project
        try:
            analysis = api.load_analysis(p) if p is not None else None
        except SSLInspectError:
            analysis = None
        if analysis is not None:  # a trained model exists: "Anomaly score" colouring becomes available
            self.map.set_scores(analysis.ids, analysis.anomaly)
        return True

    def _point_provider(self) -> None:
        from app.pages.images_page import image_source

        if self.controller.project is not None:
            image_source(self.controller.project, self.provider, self.provider.size)

    def _update_map_labels(self) -> None:
        p = self.controller.project
        if p is not None:
            self.map.set_labels(p.store.labels(), p.class_colors())

    # -- events -------------------------------------------------------------------------------------------------
    def _on_metric(self, event: Metric) -> None:
        self.plots.add(event)
        if event.name == "emb_std" and event.value < COLLAPSE_STD and not self.warning.isVisible():
            self.warning.setText(
                f"Possible representation collapse: embedding spread {event.value:.3f} < {COLLAPSE_STD} at step "
                f"{event.step}. The features are becoming identical; try a lower learning rate or another method."
            )
            self.warning.setVisible(True)

    def _on_controller_job_started(self, job: Job) -> None:
        if job.stage == "pretrain":
            self._point_provider()
            self.progress.setVisible(True)
            self.progress.setRange(0, 0)
            self.status_label.setText("Starting the worker…")
        self._update_buttons()

    def _on_controller_job_event(self, event: object) -> None:
        job = self.controller.job
        if job is None or job.stage != "pretrain":
            return
        if isinstance(event, Metric):
            self._on_metric(event)
        elif isinstance(event, Progress):
            self._progress_view.submit(event)
        elif isinstance(event, Artifact) and event.kind == "embedding_map" and self.controller.project:
            self.load_map(self.controller.project.resolve(event.path))
        elif isinstance(event, Started) and event.stage == "pretrain":
            self.run_label.setText(f"Run {event.run_id}: running")
        elif isinstance(event, Finished) and event.stage == "pretrain":
            self.run_label.setText(self.run_label.text().replace("running", event.status))

    def _show_progress(self, event: Progress) -> None:
        job = self.controller.job
        if not self._running() or (job is not None and job.is_paused()):  # a late event never hides "Paused"
            return
        show_progress(self.progress, event)
        what = "Decoding images" if event.stage == "cache" else f"Step {event.step}/{event.total}"
        self.status_label.setText(f"{what}: {event.message}")

    def _on_controller_job_finished(self, job: Job, status: str) -> None:
        if job.stage == "pretrain":
            self._progress_view.cancel()
            self.plots.flush()
            self.progress.setVisible(False)
            self.status_label.setText(
                {
                    "ok": "Finished. Go on to Label.",
                    "cancelled": "Cancelled; the last checkpoint was kept (Resume continues it).",
                }.get(status, f"Failed: {job.error_message}")
            )
        self._update_buttons()
        self.completeness_changed.emit()

    def _on_pause_toggled(self, paused: bool) -> None:
        self.controller.pause_job(paused)
        self.pause_button.setText("&Resume" if paused else "&Pause")
        run = self.run_label.text()
        self.run_label.setText(run.replace(": running", ": paused") if paused else run.replace(": paused", ": running"))
        if paused:
            self.status_label.setText("Paused (at the next step boundary).")

    def _on_preset_changed(self, index: int) -> None:
        names = list(self._presets)
        if 0 <= index < len(names):
            self.form.set_value(self._presets[names[index]])
        self._remember_preset()

    def _on_form_changed(self) -> None:
        custom = self.preset.count() - 1
        if self.preset.currentIndex() != custom:
            self.preset.blockSignals(True)
            self.preset.setCurrentIndex(custom)
            self.preset.blockSignals(False)
            self._remember_preset()

    def _remember_preset(self) -> None:
        """Keep the preset chosen for the open project (the page reopens on it)."""
        p = self.controller.project
        if p is not None and self.preset.currentText():
            self.controller.settings.set_pretrain_preset(p.root, self.preset.currentText())

    def _restore_preset(self) -> None:
        """Reopen on the preset last chosen for this project; Custom shows the latest run's settings."""
        p = self.controller.project
        if p is None:
            return
        name = self.controller.settings.pretrain_preset(p.root)
        index = max(0, self.preset.findText(name)) if name else 0  # never chosen: the first preset
        if index == self.preset.currentIndex():
            return
        if index == self.preset.count() - 1:  # Custom: the settings of the latest run, when readable
            cfg = self._latest_run_config()
            self.preset.blockSignals(True)
            self.preset.setCurrentIndex(index)
            self.preset.blockSignals(False)
            if cfg is not None:
                self.form.blockSignals(True)
                self.form.set_value(cfg)
                self.form.blockSignals(False)
            return
        self.preset.setCurrentIndex(index)

    def _on_expert_toggled(self, on: bool) -> None:
        self.expert.setVisible(on)
        self.expert_toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    def _on_device_detected(self, info: DeviceInfo) -> None:
        self._cuda = info.cuda
        if info.cuda:
            self.device_label.setText(info.name)
        else:
            threads = self.controller.settings.worker_threads() or os.cpu_count()
            self.device_label.setText(f"CPU, {os.cpu_count()} cores (jobs use {threads}). No GPU found.")
            self.device_label.setToolTip("Without a GPU pretraining is slower, so the recommended preset is smaller.")
        if self.preset.currentIndex() == 0:
            self._fill_presets()
        else:
            self._presets = presets(info.cuda)
