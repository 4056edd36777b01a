"""The export job: pick the latest head and backbone, choose real check images, export, record the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import ExportConfig
from sslinspect.data.cache import build_cache
from sslinspect.events import Reporter, null_reporter
from sslinspect.export.onnx import ExportInputs, ExportResult, export_model
from sslinspect.fewshot.fit import load_head
from sslinspect.fewshot.segmap import decoder_from_checkpoint
from sslinspect.fewshot.typing_step import load_typing
from sslinspect.model.checkpoint import build_backbone_from_checkpoint, load_checkpoint
from sslinspect.project import Project


def parity_rows(n_images: int, labelled: list[int], n: int, seed: int = 0) -> np.ndarray:
    """Rows for the parity check: labelled images first (they include defects), then a seeded random fill."""
    rows = list(dict.fromkeys(labelled))[: n // 2]
    rest = np.setdiff1d(np.arange(n_images), rows)
    fill = np.random.default_rng(seed).choice(rest, size=min(n - len(rows), len(rest)), replace=False)
    return np.sort(np.concatenate([np.array(rows, dtype=np.int64), fill.astype(np.int64)]))


def check_rows(
    n_images: int, labelled: list[int], n_check: int, n_calibration: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(check, calibration)`` rows: every labelled image plus ``n_check`` held-out unlabelled ones to check
    FP16/INT8 against FP32, and ``n_calibration`` other unlabelled ones (all images if too few) to calibrate INT8."""
    unlabelled = np.random.default_rng(seed).permutation(np.setdiff1d(np.arange(n_images), labelled))
    held = unlabelled[:n_check]
    calib = unlabelled[n_check : n_check + n_calibration]
    if len(calib) == 0:  # a tiny project: calibrate on what there is
        calib = np.arange(min(n_images, n_calibration))
    check = np.concatenate([np.array(sorted(set(labelled)), dtype=np.int64), np.sort(held).astype(np.int64)])
    return check, np.sort(calib).astype(np.int64)


def default_out(project: Project, cfg: ExportConfig) -> Path:
    """``exports/model/model.onnx``, or ``exports/triton`` for a Triton repository."""
    if cfg.format == "triton":
        return project.root / "exports" / "triton"
    return project.root / "exports" / "model" / "model.onnx"


def run_export(
    project: Project,
    out: Path | None,
    cfg: ExportConfig,
    *,
    force: bool = False,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> ExportResult:
    """Export the latest fewshot run's model (see :func:`sslinspect.api.export_onnx`)."""
    head, ckpt_path = load_head(project)
    ckpt = load_checkpoint(ckpt_path)
    backbone = build_backbone_from_checkpoint(ckpt)
    cache = build_cache(project, head.input_size, report=report, cancel=cancel)
    index = cache.index_of()
    label_map = project.store.labels()
    labelled = [index[i] for i in label_map if i in index]
    rows = parity_rows(len(cache), labelled, cfg.parity_images)
    empty = np.zeros((0, head.input_size, head.input_size, 3), np.uint8)
    check_labels: list[str | None] = []
    check, calib = empty, empty
    if cfg.precision != "fp32":
        c_rows, k_rows = check_rows(len(cache), labelled, cfg.check_images, cfg.calibration_images)
        if cfg.precision == "int8":  # good and near-threshold images (sslinspect.export.int8)
            from sslinspect.export.int8 import project_calibration_rows

            fewshot_run = project.latest("fewshot")
            scores_csv = fewshot_run / "scores.csv" if fewshot_run else None
            k_rows = project_calibration_rows(
                scores_csv, index, len(cache), c_rows, head.anomaly.threshold, cfg.calibration_images
            )
        check, calib = np.asarray(cache.images[c_rows]), np.asarray(cache.images[k_rows])
        check_labels = [label_map.get(cache.ids[r]) for r in c_rows]
    out = Path(out) if out is not None else default_out(project, cfg)
    fewshot = project.latest("fewshot")
    provenance = {
        "project": project.name,
        "pretrain_run": project.relative(ckpt_path.parent.parent),
        "fewshot_run": project.relative(fewshot) if fewshot else None,
        "method": ckpt.get("method"),
        "backbone": ckpt.get("backbone"),
        "epochs": ckpt.get("epochs_done"),
        "pretrain_images": ckpt.get("images"),
        "labelled_images": len(labelled),
        "project_images": len(cache),
    }
    inputs = ExportInputs(np.asarray(cache.images[rows]), calib, check, check_labels)
    result = export_model(
        backbone,
        head,
        inputs,
        out,
        cfg,
        provenance=provenance,
        force=force,
        report=report,
        cancel=cancel,
        decoder=decoder_from_checkpoint(ckpt, backbone) if head.anomaly.kind == "segment" else None,
        typing=load_typing(fewshot) if fewshot else None,
    )
    project.set_latest("export", Path(result.path))
    return result
