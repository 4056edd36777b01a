"""Step 6, Export: one ONNX file for the line (checked against PyTorch on real images), then a test on a folder
with ONNX Runtime, exactly as the line PC will run it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.glossary import tip
from app.jobs import Job
from app.pages.base import Page
from app.widgets.config_form import ConfigForm
from app.widgets.export_result import FAIL, PASS, ExportResultBox
from app.widgets.image_grid import ImageGrid
from app.widgets.progress import Coalescer, show_progress
from app.widgets.thumbnails import ThumbnailProvider
from sslinspect import api
from sslinspect.config import ExportConfig
from sslinspect.errors import SSLInspectError
from sslinspect.events import Log, Progress
from sslinspect.review import heatmap_name, latest_export_thresholds


def _wrapped(text: str, name: str = "") -> QLabel:
    """A word-wrapping label (with an object name for the style sheet)."""
    lab = QLabel(text)
    lab.setWordWrap(True)
    if name:
        lab.setObjectName(name)
    return lab


def read_predictions(path: Path) -> list[dict[str, str]]:
    """Rows of a ``sslinspect predict`` CSV, most anomalous first (rows of unreadable images are left out)."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if not r.get("error")]
    return sorted(rows, key=lambda r: -float(r.get("anomaly_score") or 0))


class ExportPage(Page):
    """Export with a parity check; test the exported model on a folder."""

    wrapped_text_height = True

    title = "6  Export"
    explanation = (
        "Writes one ONNX file with the preprocessing, class names and threshold inside, plus a .json sidecar. It is "
        "only written after ONNX Runtime gave the same answers as PyTorch on real project images. Then test it on a "
        "folder of new images, with the same runtime the line PC uses."
    )

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        self._rows: dict[str, dict[str, str]] = {}
        self._heatmaps: Path | None = None
        self._sidecar: dict[str, Any] = {}
        self._failed: list[str] = []
        self._test_csv: Path | None = None
        self._out_root: Path | None = None
        self.result_box = ExportResultBox()
        self.values = self.result_box.values
        self.open_folder = self.result_box.open_folder
        self.open_folder.clicked.connect(self._on_open_folder_clicked)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self._model_box())
        ll.addWidget(self.result_box)
        ll.addStretch(1)
        self.add_columns(left, self._test_box(), (1, 2))
        self._progress_view: Coalescer[Progress] = Coalescer(self._show_progress, parent=self)
        controller.project_changed.connect(lambda _p: self.reload())
        controller.job_started.connect(lambda _j: self._update_buttons())
        controller.job_event.connect(self._on_controller_job_event)
        controller.job_finished.connect(self._on_controller_job_finished)

    def _model_box(self) -> QGroupBox:
        """Where to write, how, the verdict, why an export is refused, and Export."""
        self.out = QLineEdit()
        self.out.setAccessibleName("Output file")
        self.out.setToolTip("Where the ONNX model (and its .json sidecar) is written")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse_clicked)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out, 1)
        out_row.addWidget(browse)
        self.form = ConfigForm(ExportConfig, fields=("precision", "parity_images", "parity_atol"))
        self.export_button = QPushButton("&Export")
        self.export_button.clicked.connect(self.export)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status_label = _wrapped("Not exported yet.")
        self.verdict = _wrapped("—", "verdict")
        tip(self.verdict, "verdict")
        self.blocked = _wrapped("", "warning")
        self.blocked.setVisible(False)
        self.refit_button = QPushButton("Fit again now")
        self.refit_button.setToolTip("Fit the model on the current labels (the Fit step's job, default settings)")
        self.refit_button.setVisible(False)
        self.refit_button.clicked.connect(self.refit)
        self.bake = _wrapped("—")
        self.bake.setToolTip("Pick and store another threshold on the Fit page (Anomaly score tab, 'Use for export')")
        box = QGroupBox("Model file")
        bl = QFormLayout(box)
        bl.addRow("Save as:", out_row)
        bl.addRow(self.form)
        bl.addRow("Thresholds:", self.bake)
        bl.addRow("Verdict:", self.verdict)
        for w in (self.blocked, self.refit_button, self.export_button, self.progress, self.status_label):
            bl.addRow(w)
        return box

    def _test_box(self) -> QGroupBox:
        """Test the exported model on a folder (the demo's test images on the demo project)."""
        self.test_button = QPushButton("&Test on a folder…")
        self.test_button.clicked.connect(self._on_test_clicked)
        self.demo_test_button = QPushButton("Test with the &demo's test images")
        self.demo_test_button.setToolTip("Score the demo's held-out test images (never used for training)")
        self.demo_test_button.clicked.connect(self._on_demo_test_clicked)
        self.demo_test_button.setVisible(False)
        self.threshold_choice = QComboBox()
        self.threshold_choice.setAccessibleName("Threshold for the test")
        self.threshold_choice.setToolTip("Which NG threshold the folder test uses: the model's own, or another")
        self.test_summary = _wrapped("Choose a folder of images the model has not seen.")
        self.provider = ThumbnailProvider(size=2 * max(96, 6 * self.fontMetrics().height()), parent=self)
        self.provider.set_source(lambda key: Path(str(key)))
        self.predictions = ImageGrid(self.provider)
        self.predictions.setAccessibleName("Test predictions")
        self.predictions.grid_model.caption = self._caption
        self.predictions.grid_model.badge = self._badge
        self.predictions.grid_model.tooltip = self._tooltip
        self.predictions.current_key_changed.connect(self._on_predictions_current_key_changed)
        self.show_heatmaps = QCheckBox("Show &heatmaps")
        self.show_heatmaps.setToolTip("Anomaly map over each image, normalised against good parts: calm = normal")
        self.show_heatmaps.setEnabled(False)
        self.show_heatmaps.toggled.connect(self._on_show_heatmaps_toggled)
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setAccessibleName("Heatmap of the selected image")
        self.preview.setVisible(False)
        self.preview_caption = _wrapped("", "previewCaption")
        self.preview_caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        test = QGroupBox("Test on a folder (ONNX Runtime)")
        tl = QVBoxLayout(test)
        buttons, options = QHBoxLayout(), QHBoxLayout()  # two rows: fits a 1024-wide panel PC
        buttons.addWidget(self.test_button)
        buttons.addWidget(self.demo_test_button)
        buttons.addStretch(1)
        options.addWidget(QLabel("Threshold:"))
        options.addWidget(self.threshold_choice)
        options.addWidget(self.show_heatmaps)
        options.addStretch(1)
        tl.addLayout(buttons)
        tl.addLayout(options)
        tl.addWidget(self.test_summary)
        tl.addWidget(self.predictions, 2)
        tl.addWidget(self.preview, 1)
        tl.addWidget(self.preview_caption)
        return test

    def on_enter(self) -> None:
        """Show the latest export and the threshold choices."""
        self.reload()

    def model_path(self) -> Path:
        """Where the model is (or will be) written."""
        return Path(self.out.text().strip()).expanduser()

    def blockers(self) -> tuple[list[str], bool]:
        """Why the latest fit must not be exported, and whether fitting again fixes it (else: label more)."""
        p, st = self.controller.project, self.controller.status
        if p is None or st is None or st.fewshot_run is None:
            return [], False
        reasons: list[str] = []
        failed = api.fit_failed_after(p)
        if failed:
            reasons.append(f"the last fit ({failed}) failed; the model on disk is an older one")
        stale = api.fit_staleness(p, st.fewshot_run)
        reasons += list(stale.reasons)
        try:
            analysis = api.load_analysis(p)
        except SSLInspectError:
            analysis = None
        have = set(analysis.classes) if analysis is not None else set()
        missing = sorted(c for c, n in st.labels.items() if n and have and c not in have)
        refit = bool(reasons)
        if missing:
            names = ", ".join(repr(c) for c in missing)
            reasons.append(f"the model lacks the labelled class(es) {names}")
        short = api.fit_shortfalls(st.labels, 2)
        if missing and short:
            reasons.append("first " + "; ".join(x.describe() for x in short))
            refit = False
        elif missing:
            refit = True
        return reasons, refit

    def _update_buttons(self) -> None:
        busy = self.controller.is_busy()
        st = self.controller.status
        reasons, refit = self.blockers()
        self.blocked.setText("Export refused: " + "; ".join(reasons) + "." if reasons else "")
        self.blocked.setVisible(bool(reasons))
        self.refit_button.setVisible(bool(reasons) and refit)
        self.refit_button.setEnabled(not busy)
        ok = not busy and st is not None and st.fewshot_run is not None and not reasons
        self.export_button.setEnabled(ok)
        self.test_button.setEnabled(not busy and self.model_path().is_file())
        self.demo_test_button.setVisible(self.demo_folder() is not None)
        self.demo_test_button.setEnabled(self.test_button.isEnabled())
        self.open_folder.setEnabled(self.model_path().parent.is_dir())

    def reload(self) -> None:
        """Default output path, the latest export's sidecar, threshold choices."""
        p = self.controller.project
        st = self.controller.status
        if p is not None and p.root != self._out_root:  # a new project: its latest export, or the default place
            default = st.export if st is not None and st.export else p.root / "exports" / "model" / "model.onnx"
            self.out.setText(str(default))
            self._out_root = p.root
        stored = None
        if p is not None:
            try:
                stored = latest_export_thresholds(p)
            except SSLInspectError as exc:
                self.controller.message.emit("WARNING", str(exc))
        self.bake.setText(f"{stored.describe()}, baked into the model as the default" if stored else "—")
        self.threshold_choice.clear()
        self.threshold_choice.addItem("built into the model", None)
        t = self.controller.threshold
        if t is not None and not (stored is not None and abs(stored.threshold - t) <= 1e-6 * max(1.0, abs(t))):
            self.threshold_choice.addItem(f"moved on the Fit page, not stored ({t:.4f})", t)
            self.threshold_choice.setCurrentIndex(1)
        self.show_sidecar()
        self._show_verdict()
        self._update_buttons()

    def _show_verdict(self) -> None:
        """The fit's verdict in words, with the AUROC every page shows (the current labels, one function)."""
        p = self.controller.project
        try:
            a = api.load_analysis(p) if p is not None else None
        except SSLInspectError:
            a = None
        if p is None or a is None:
            self.verdict.setText("—")
            return
        labels = p.store.labels()
        value = api.labelled_auroc(a.anomaly, [labels.get(int(i)) for i in a.ids])
        self.verdict.setText(f"<b>{api.fit_verdict(a.metrics, value).describe()}</b>")

    def show_sidecar(self) -> bool:
        """Show what the sidecar JSON next to the model says (parity result included)."""
        ok = self.result_box.show_model(self.model_path())
        self._sidecar = self.result_box.sidecar
        return ok

    # -- actions --------------------------------------------------------------------------------------------------
    def refit(self) -> Job | None:
        """The one-click fix of an out-of-date model: fit again on the current labels."""
        p = self.controller.project
        if p is None:
            return None
        return self.controller.run_worker(["train", str(p.root)], stage="train", title="Fitting")

    def export(self) -> Job | None:
        """Export in a worker process (refused, with the reason, for an out-of-date or incomplete model)."""
        reasons, _ = self.blockers()
        if reasons:
            self._update_buttons()
            return None
        return self.run_form_job("export", ["--out", str(self.model_path())], self.form, "export", title="Export")

    def test_folder(self, folder: Path) -> Job | None:
        """Score every image under ``folder`` with the exported model (``sslinspect predict``)."""
        model = self.model_path()
        self._test_csv = model.parent / f"test-{Path(folder).name or 'folder'}.csv"
        self._test_csv.unlink(missing_ok=True)  # never show an older result as this test's
        cmd = ["predict", str(model), str(folder), "--out", str(self._test_csv)]
        self._heatmaps = None
        if "anomaly_map" in self._sidecar.get("outputs", ()):  # older models have no map to draw
            self._heatmaps = model.parent / f"test-{Path(folder).name or 'folder'}-heatmaps"
            for old in self._heatmaps.glob("*.heatmap.png"):  # only this test's overlays are shown
                old.unlink(missing_ok=True)
            cmd += ["--heatmaps", str(self._heatmaps)]
        t = self.threshold_choice.currentData()
        if t is not None:
            cmd += ["--threshold", f"{float(t):.6g}"]
        self._failed = []
        return self.controller.run_worker(cmd, stage="predict", title="Testing the model")

    def show_predictions(self, csv_path: Path) -> None:
        """Show a predict CSV as a grid, most anomalous first."""
        rows = read_predictions(csv_path)
        self._rows = {r["path"]: r for r in rows}
        has_maps = any(self.heatmap_of(k) is not None for k in list(self._rows)[:1])
        self.show_heatmaps.setEnabled(has_maps)
        self.show_heatmaps.setChecked(has_maps)
        self._on_show_heatmaps_toggled(has_maps)
        self.predictions.set_keys(list(self._rows))
        defects = sum(r.get("is_defect") == "1" for r in rows)
        text = f"{len(rows)} image(s) scored: {defects} flagged as defective. Results: {csv_path}"
        if self._failed:
            text += f"\n{len(self._failed)} file(s) could not be read: " + "; ".join(self._failed[:3])
        self.test_summary.setText(text)

    def heatmap_of(self, key: object) -> Path | None:
        """The overlay PNG the test run wrote for prediction ``key`` (None without one)."""
        if self._heatmaps is None:
            return None
        path = self._heatmaps / heatmap_name(str(key))
        return path if path.is_file() else None

    # -- cells and slots ------------------------------------------------------------------------------------------
    def _on_show_heatmaps_toggled(self, on: bool) -> None:
        if on:
            self.provider.set_source(lambda key: self.heatmap_of(key) or Path(str(key)))
        else:
            self.provider.set_source(lambda key: Path(str(key)))
        self.predictions.refresh()
        self._on_predictions_current_key_changed(self.predictions.current_key())

    def describe_image(self, key: object) -> str:
        """The enlarged view's caption: file name, decision with the score against the threshold, and the type."""
        r = self._rows.get(str(key))
        if r is None:
            return ""
        badge = self._badge(key)
        decision = badge[0] if badge else ""
        named = " (type named from the outlined region)" if self._type_words(key) else ""
        return f"{Path(str(r.get('path', key))).name} — {decision}{named}, anomaly score {self._caption(key)}"

    def _on_predictions_current_key_changed(self, key: object) -> None:
        self.preview_caption.setText(self.describe_image(key) if key is not None else "")
        heat = self.heatmap_of(key) if key is not None and self.show_heatmaps.isChecked() else None
        pix = QPixmap(str(heat)) if heat is not None else QPixmap()
        self.preview.setVisible(not pix.isNull())
        if not pix.isNull():
            side = 16 * self.fontMetrics().height()  # about 256 px at 100 % scaling, grows with the font
            self.preview.setPixmap(pix.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio))
            self.preview.setToolTip(self.describe_image(key))

    def _caption(self, key: object) -> str:
        """The anomaly score against the threshold (the badge above says OK / NG and the type)."""
        r = self._rows.get(str(key))
        if not r:
            return ""
        defect = r.get("is_defect") == "1"
        t = self._test_threshold()
        score = float(r["anomaly_score"])
        return f"{score:.2f} {'≥' if defect else '<'} {t:.2f}" if t is not None else f"{score:.3f}"

    def _kind(self, key: object, *, mark: bool = True) -> str:
        """The defect type of an NG image ('' for OK images and for NG without a defect class); with ``mark``, a
        name predict did not call sure (``type_sure`` 0) ends in '?', as on the heatmaps."""
        r = self._rows.get(str(key)) or {}
        defect = r.get("is_defect") == "1"
        kind = str(r["label"]) if defect and r.get("label") not in (None, "", api.GOOD) else ""
        return f"{kind}?" if mark and kind and self._unsure(r) else kind

    @staticmethod
    def _unsure(row: dict[str, str]) -> bool:
        """A type predict named but did not call sure (``type_sure`` 0; ``unknown`` is no type)."""
        return row.get("label") != "unknown" and row.get("type_sure") == "0"

    def _test_threshold(self) -> float | None:
        t = self.threshold_choice.currentData()
        if t is None:
            t = self._sidecar.get("threshold") if self._sidecar else None
        return float(t) if t is not None else None

    def _badge(self, key: object) -> tuple[str, str] | None:
        r = self._rows.get(str(key))
        if r is None:
            return None
        if r.get("is_defect") != "1":
            return "OK", PASS
        kind = self._kind(key)
        return (f"NG {kind}" if kind else "NG"), FAIL  # one truth per tile: decision, type and colour agree

    def _tooltip(self, key: object) -> str:
        r = self._rows.get(str(key))
        if r is None:
            return ""
        probs = ", ".join(f"{k[2:]} {float(v):.2f}" for k, v in r.items() if k.startswith("p_"))
        return f"{r['path']}\nanomaly score {float(r['anomaly_score']):.4f}\n{probs}{self._type_words(key)}"

    def _type_words(self, key: object) -> str:
        """How a flagged part's type was named: from its outlined region (``unknown``: like no labelled type)."""
        r = self._rows.get(str(key)) or {}
        kind, region = self._kind(key, mark=False), str(r.get("region") or "").split()
        if not kind or len(region) != 4:
            return ""
        novelty = str(r.get("novelty") or "")
        words = "like no labelled defect type" if kind == "unknown" else f"type {kind!r}"
        if self._unsure(r):
            words += " (a guess: below the confidence the fit calls sure)"
        extra = f", novelty {float(novelty):.2f}" if novelty else ""
        x0, y0, x1, y1 = region
        return f"\n{words}, named from the outlined region ({x0}, {y0})–({x1}, {y1}) px{extra}"

    def _on_browse_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save model as", self.out.text(), "ONNX model (*.onnx)")
        if path:
            self.out.setText(path if path.endswith(".onnx") else path + ".onnx")
            self.show_sidecar()
            self._update_buttons()

    def test_start_folder(self) -> str:
        """Where the folder picker starts: the demo's test images, else the last test folder, else the project."""
        demo = self.demo_folder()
        if demo is not None:
            return str(demo)
        last = self.controller.settings.last_folder("test")
        if last != str(Path.home()) and Path(last).is_dir():
            return last
        p = self.controller.project
        return str(p.root) if p is not None else last

    def demo_folder(self) -> Path | None:
        """The demo project's held-out test images (None for other projects)."""
        p = self.controller.project
        return api.demo_test_folder(p) if p is not None else None

    def _on_demo_test_clicked(self) -> None:
        folder = self.demo_folder()
        if folder is not None:
            self.test_folder(folder)

    def _on_test_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of test images", self.test_start_folder())
        if folder:
            self.controller.settings.set_last_folder("test", Path(folder))
            self.test_folder(Path(folder))

    def _on_open_folder_clicked(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.model_path().parent)))

    def _on_controller_job_event(self, event: object) -> None:
        job = self.controller.job
        if job is None or job.stage not in ("export", "predict"):
            return
        if isinstance(event, Progress):
            self._progress_view.submit(event)
        elif isinstance(event, Log) and job.stage == "predict" and event.level == "WARNING":
            self._failed.append(event.message)

    def _show_progress(self, event: Progress) -> None:
        self.progress.setVisible(True)
        show_progress(self.progress, event)
        self.status_label.setText(event.message)

    def _on_controller_job_finished(self, job: Job, status: str) -> None:
        self._progress_view.cancel()
        self._update_buttons()
        self.progress.setVisible(False)
        if job.stage == "export":
            self.status_label.setText("Exported." if status == "ok" else f"Export {status}: {job.error_message}")
            self.show_sidecar()
        elif job.stage == "predict" and self._test_csv is not None and self._test_csv.is_file():
            self.show_predictions(self._test_csv)
            self.status_label.setText("Tested: see the predictions on the right.")
        self._update_buttons()
