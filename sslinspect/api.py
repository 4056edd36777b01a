"""The small facade that the GUI and the CLI both call. Long jobs take keyword-only ``report`` and ``cancel``.

Heavy modules (torch) are imported inside the functions that need them, so ``import sslinspect.api`` stays fast
and :func:`predict` works on a line-side PC without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sslinspect.cancel import NEVER, CancelToken, EventToken
from sslinspect.catalog import BACKBONES, METHODS
from sslinspect.config import DataConfig, EvaluateConfig, ExportConfig, FewShotConfig, PretrainConfig
from sslinspect.configio import from_dict, to_dict
from sslinspect.data.scan import ScanResult, scan_project
from sslinspect.errors import ConfigError
from sslinspect.events import Reporter, null_reporter
from sslinspect.fsutil import atomic_write_json
from sslinspect.infer.run import PredictResult
from sslinspect.labels import LabelImportResult
from sslinspect.labels import import_labels as _import_labels
from sslinspect.project import GOOD, Project
from sslinspect.review import Analysis, ProjectStatus, RunHeatmaps
from sslinspect.review import load_analysis as _load_analysis
from sslinspect.review import project_status as _project_status
from sslinspect.review import set_class_color as _set_class_color
from sslinspect.staleness import Staleness, export_staleness, fit_failed_after, fit_staleness, label_stamp
from sslinspect.staleness import record_export as _record_export
from sslinspect.staleness import record_fit as _record_fit
from sslinspect.store import ImageRecord
from sslinspect.verdict import Shortfall, Verdict, auroc, fit_shortfalls, fit_verdict, labelled_auroc

if TYPE_CHECKING:
    from sslinspect.evaluate.compare import RunSummary
    from sslinspect.evaluate.run import EvaluateResult
    from sslinspect.export.onnx import ExportResult
    from sslinspect.fewshot.fit import FewShotResult
    from sslinspect.fewshot.model import InspectionHead
    from sslinspect.infer.watch import WatchResult
    from sslinspect.report.html import ReportResult
    from sslinspect.train.pretrain import PretrainResult

__all__ = [
    "BACKBONES",
    "GOOD",
    "METHODS",
    "Analysis",
    "EventToken",
    "ImageRecord",
    "PredictResult",
    "Project",
    "ProjectStatus",
    "RunHeatmaps",
    "ScanResult",
    "Shortfall",
    "Staleness",
    "Verdict",
    "auroc",
    "compare",
    "create_project",
    "demo_test_folder",
    "device_info",
    "evaluate",
    "export_onnx",
    "export_staleness",
    "fit_failed_after",
    "fit_fewshot",
    "fit_shortfalls",
    "fit_staleness",
    "fit_verdict",
    "from_dict",
    "import_labels",
    "label_stamp",
    "labelled_auroc",
    "load_analysis",
    "load_heatmaps",
    "open_demo_project",
    "open_project",
    "predict",
    "pretrain",
    "project_status",
    "scan_images",
    "set_class_color",
    "set_threshold",
    "to_dict",
    "watch",
    "write_config",
    "write_report",
]


def create_project(root: Path, *, images: Sequence[Path] = (), name: str | None = None) -> Project:
    """Create a project folder and add image folders to it (not scanned yet).

    Raises:
        ConfigError: if an image folder does not exist (checked before anything is created).
        ProjectError: if a project already exists at ``root``.

    Examples:
        >>> import tempfile, pathlib
        >>> p = create_project(pathlib.Path(tempfile.mkdtemp()) / "line3.sslproj")
        >>> p.classes
        ['good']
    """
    for folder in images:  # checked first: a wrong --images must not leave an empty project behind
        where = Path(folder).expanduser()
        if not where.is_dir():
            what = "not a folder" if where.exists() else "no such folder"
            raise ConfigError(f"{folder}: {what} (nothing was created)")
    project = Project.create(Path(root), name=name)
    for folder in images:
        project.add_source(Path(folder))
    return project


def device_info(device: str = "auto") -> dict[str, object]:
    """Which device ``device`` resolves to: ``{"name": "cuda:0 (NVIDIA H100, 79 GiB)", "cuda": True}`` (imports torch).

    Raises:
        ConfigError: if ``cuda`` is asked for and there is none.
    """
    import torch

    from sslinspect.model.runtime import describe_device, pick_device

    return {"name": describe_device(pick_device(device)), "cuda": bool(torch.cuda.is_available())}


def write_config(path: Path, sections: dict[str, object]) -> None:
    """Write config ``sections`` (e.g. ``{"pretrain": to_dict(cfg)}``) atomically, as ``--config`` reads them."""
    atomic_write_json(Path(path), sections)


def open_project(root: Path) -> Project:
    """Open an existing project (migrating an old ``project.json``).

    Examples:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp()) / "p"
        >>> _ = create_project(root)
        >>> open_project(root).name
        'p'
    """
    return Project.open(Path(root))


def scan_images(
    project: Project, cfg: DataConfig | None = None, *, report: Reporter = null_reporter, cancel: CancelToken = NEVER
) -> ScanResult:
    """Scan the project's image folders; unreadable files are listed with reasons, never fatal.

    Examples:
        >>> import tempfile, pathlib
        >>> p = create_project(pathlib.Path(tempfile.mkdtemp()) / "p")
        >>> scan_images(p).ok
        0
    """
    return scan_project(project, cfg, report=report, cancel=cancel)


def import_labels(project: Project, csv_path: Path) -> LabelImportResult:
    """Import a ``path,label`` CSV; bad rows are reported in the result, valid ones saved at once.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "l.csv").write_text("path,label\\nmissing.png,scratch\\n")
        >>> import_labels(create_project(d / "p"), d / "l.csv").problems[0]
        "l.csv:2: unknown image 'missing.png' (not in the project's scanned folders)"
    """
    return _import_labels(project, Path(csv_path))


def pretrain(
    project: Project,
    cfg: PretrainConfig,
    *,
    resume: bool = False,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> PretrainResult:
    """Self-supervised pretraining; writes ``runs/pretrain/<id>/`` with a checkpoint every epoch.

    Args:
        project: The open project (scanned).
        cfg: Method, backbone, sizes, budget.
        resume: Continue the latest run from its last checkpoint (its architecture and data recipe are kept;
            ``epochs``, ``max_minutes``, ``device`` and ``threads`` come from ``cfg``).
        report: Receives events.
        cancel: Checked every step; a cancelled run keeps its checkpoint.

    Raises:
        Cancelled: if cancelled (the checkpoint is kept and the run is marked cancelled).
        DataError: if there are too few readable images.

    Examples:
        >>> # pretrain(open_project("line3.sslproj"), PretrainConfig(epochs=20))  # doctest: +SKIP
    """
    from sslinspect.methods import check_config
    from sslinspect.train.pretrain import resolve_image_size, run_pretrain

    if not resume:
        cfg = resolve_image_size(project, cfg, report)
    check_config(cfg)  # refuse method/backbone/size combinations before a run folder is made
    return run_pretrain(project, cfg, resume=resume, report=report, cancel=cancel)


def fit_fewshot(
    project: Project,
    cfg: FewShotConfig | None = None,
    *,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
    allow_running: bool = False,
) -> FewShotResult:
    """Fit the few-shot classifier and the anomaly model on the latest pretrained backbone.

    A pretraining run that is still running is refused (its checkpoint is an early epoch's) unless
    ``allow_running``.

    Examples:
        >>> # fit_fewshot(open_project("line3.sslproj")).cv_balanced_accuracy  # doctest: +SKIP
    """
    from sslinspect.fewshot.fit import run_fit

    stamp = label_stamp(project)  # the labels the fit reads (taken before it, in case they change meanwhile)
    result = run_fit(project, cfg or FewShotConfig(), report=report, cancel=cancel, allow_running=allow_running)
    _record_fit(project, project.resolve(result.run_dir), stamp)
    return result


def export_onnx(
    project: Project,
    out: Path | None = None,
    cfg: ExportConfig | None = None,
    *,
    force: bool = False,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> ExportResult:
    """Export the latest trained model to one ONNX file (plus a ``.json`` sidecar), parity-checked.

    ``out`` defaults to ``exports/model/model.onnx`` inside the project (``exports/triton`` for
    ``cfg.format == "triton"``). FP16/INT8 models are compared with FP32 on the project's labelled and held-out
    images; beyond ``cfg.tolerance`` the export is refused (``ExportError`` with the figures) unless ``force``.

    Examples:
        >>> # export_onnx(open_project("line3.sslproj"), Path("line3.onnx")).parity.passed  # doctest: +SKIP
    """
    from sslinspect.export.run import run_export

    fit_run = project.latest("fewshot")
    result = run_export(project, out, cfg or ExportConfig(), force=force, report=report, cancel=cancel)
    if result.format == "onnx":  # a Triton repository holds only what Triton reads
        _record_export(project, project.resolve(result.path), fit_run)
    return result


def predict(
    model: Path,
    inputs: Sequence[str | Path],
    *,
    out: Path | str | None = None,
    device: str = "auto",
    batch_size: int = 16,
    threshold: float | None = None,
    review_threshold: float | None = None,
    fmt: str | None = None,
    heatmaps: Path | None = None,
    report: Reporter = null_reporter,
) -> PredictResult:
    """Score files, folders and globs with an exported model (ONNX Runtime only; torch is not imported).

    Writes ``out`` when given: CSV (``path,label,confidence,anomaly_score,is_defect,p_<class>...,decision,error``)
    or JSON lines (``fmt="jsonl"`` or a ``.jsonl`` suffix), with the same row for every input (an unreadable image
    has its ``error``), plus ``<out>.meta.json`` (model, provider actually used, thresholds). ``out="-"`` writes to
    standard output. A folder, symlink, device, one of the inputs, the model or a project file is refused
    (:class:`~sslinspect.errors.ConfigError`) before anything is written. ``heatmaps`` is a folder for overlay PNGs.

    Examples:
        >>> # predict(Path("line3.onnx"), ["incoming/"], out=Path("results.csv")).defects  # doctest: +SKIP
    """
    from sslinspect.infer.run import run_predict

    return run_predict(
        Path(model),
        inputs,
        out=out,
        device=device,
        batch_size=batch_size,
        threshold=threshold,
        review_threshold=review_threshold,
        fmt=fmt,
        heatmaps=heatmaps,
        report=report,
    )


def watch(
    model: Path,
    folder: Path,
    out: Path,
    *,
    device: str = "auto",
    batch_size: int = 16,
    threshold: float | None = None,
    review_threshold: float | None = None,
    fmt: str | None = None,
    heatmaps: Path | None = None,
    poll_s: float = 1.0,
    idle_exit_s: float = 0.0,
    settle_s: float | None = None,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> WatchResult:
    """Score each new image in ``folder`` once, appending to ``out``; survives restarts, never re-processes.

    Runs until ``cancel`` fires (or ``idle_exit_s`` seconds pass without a new file). The state is kept in
    ``<out>.watch.sqlite``; unreadable frames that stay unchanged for ``settle_s`` seconds are recorded and
    skipped.

    Raises:
        ConfigError: for a missing folder, a file instead of a folder, heatmaps or output inside the folder, or a
            poll interval ≤ 0 (checked before the model is loaded).

    Examples:
        >>> # watch(Path("line3.onnx"), Path("/camera"), Path("results.csv"))  # doctest: +SKIP
    """
    from sslinspect.infer.onnx_predictor import Predictor
    from sslinspect.infer.watch import SETTLE_S, check_watch_paths, run_watch

    check_watch_paths(Path(folder), Path(out), heatmaps)  # a wrong target is a usage error, before the model loads
    if not poll_s > 0:
        raise ConfigError(f"the poll interval must be > 0 seconds (got {poll_s:g})")
    predictor = Predictor(Path(model), device=device, threshold=threshold, review_threshold=review_threshold)
    return run_watch(
        predictor,
        Path(folder),
        Path(out),
        batch_size=batch_size,
        fmt=fmt,
        heatmaps=heatmaps,
        poll_s=poll_s,
        idle_exit_s=idle_exit_s,
        settle_s=SETTLE_S if settle_s is None else settle_s,
        report=report,
        cancel=cancel,
    )


def set_threshold(
    project: Project, threshold: float, review_threshold: float | None = None, *, force: bool = False
) -> InspectionHead:
    """Use a threshold the engineer picked (e.g. on the ROC/PR curve in ``metrics.json``) for the next export.

    A value outside the held-out anomaly scores of the run is refused (``ConfigError``) unless ``force``; a
    forced value is recorded as such and shown by the GUI and the QA report.

    Examples:
        >>> # set_threshold(open_project("line3.sslproj"), 0.42, review_threshold=0.35)  # doctest: +SKIP
    """
    from sslinspect.fewshot.stored import set_threshold as _set

    return _set(project, threshold, review_threshold, force=force)


def write_report(
    project: Project, out: Path | None = None, *, examples: int = 6, report: Reporter = null_reporter
) -> ReportResult:
    """Write the self-contained HTML QA report of the latest trained model (``reports/report.html`` by default).

    Examples:
        >>> # write_report(open_project("line3.sslproj")).path  # doctest: +SKIP
    """
    from sslinspect.report.html import build_report

    return build_report(project, out, examples=examples, report=report)


# -- evaluation of pretraining runs (engine) ------------------------------------------------------------------------
def evaluate(
    project: Project,
    cfg: EvaluateConfig | None = None,
    *,
    run: str | None = None,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> EvaluateResult:
    """Score a pretraining run's backbone on the project's labels with one protocol, cross-validated.

    Args:
        project: The open project, with ≥ 2 classes of ≥ 2 labelled images.
        cfg: Protocol (``knn``, ``linear``, ``finetune``), folds and protocol settings.
        run: Pretraining run id (folder name under ``runs/pretrain``) or path; default the latest.
        report: Receives events.
        cancel: Checked between batches and fine-tuning steps.

    Raises:
        DataError: if there are too few labels.
        ProjectError: if the run does not exist or has no checkpoint.

    Examples:
        >>> # evaluate(open_project("line3.sslproj"), EvaluateConfig(protocol="linear"))  # doctest: +SKIP
    """
    from sslinspect.evaluate.run import run_evaluate

    return run_evaluate(project, cfg or EvaluateConfig(), run=run, report=report, cancel=cancel)


def compare(project: Project) -> list[RunSummary]:
    """One summary per pretraining run (method, backbone, epochs, final loss, health, k-NN and evaluations).

    Examples:
        >>> import tempfile, pathlib
        >>> compare(create_project(pathlib.Path(tempfile.mkdtemp()) / "p"))
        []
    """
    from sslinspect.evaluate.compare import compare_runs

    return compare_runs(project)


# -- desktop-app support: read-only queries and small project edits (see sslinspect.review)  -------------------------
def open_demo_project(
    out_dir: Path, *, product: str = "metal", report: Reporter = null_reporter, cancel: CancelToken = NEVER
) -> Project:
    """Create or reopen the demo project under ``out_dir`` (demo images, scanned, 5 labels per class; no training).

    Examples:
        >>> open_demo_project(Path("demo")).name  # doctest: +SKIP
        'demo-metal'
    """
    from sslinspect.demo.project import open_demo_project as _open

    return _open(Path(out_dir), product=product, report=report, cancel=cancel)


def demo_test_folder(project: Project) -> Path | None:
    """The demo's held-out test images (``data/<product>/test`` beside its training images); None elsewhere."""
    if not project.data.get("demo"):
        return None
    for source in project.sources:
        folder = project.source_dir(source).parent / "test"
        if folder.is_dir():
            return folder
    return None


def project_status(project: Project) -> ProjectStatus:
    """What ``project`` holds and which steps are possible (images, labels, latest runs).

    Examples:
        >>> import tempfile, pathlib
        >>> project_status(create_project(pathlib.Path(tempfile.mkdtemp()) / "p")).can_pretrain
        False
    """
    return _project_status(project)


def load_analysis(project: Project, run_dir: Path | None = None) -> Analysis | None:
    """Per-image anomaly scores, predictions and embeddings of the latest few-shot run (None before training).

    Examples:
        >>> import tempfile, pathlib
        >>> load_analysis(create_project(pathlib.Path(tempfile.mkdtemp()) / "p")) is None
        True
    """
    return _load_analysis(project, run_dir)


def load_heatmaps(project: Project, run_dir: Path | None = None) -> RunHeatmaps | None:
    """The held-out anomaly heatmaps stored by the latest (or ``run_dir``'s) few-shot run; None without any.

    Examples:
        >>> import tempfile, pathlib
        >>> load_heatmaps(create_project(pathlib.Path(tempfile.mkdtemp()) / "p")) is None
        True
    """
    return RunHeatmaps.open(run_dir or project.latest("fewshot"))


def set_class_color(project: Project, name: str, color: str) -> None:
    """Set the display colour (``#rrggbb``) of a class.

    Examples:
        >>> import tempfile, pathlib
        >>> p = create_project(pathlib.Path(tempfile.mkdtemp()) / "p")
        >>> set_class_color(p, "good", "#00aa00"); p.class_colors()["good"]
        '#00aa00'
    """
    _set_class_color(project, name, color)
