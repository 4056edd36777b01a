"""The export job: pick the latest head and backbone, choose real parity images, export, record the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import ExportConfig
from sslinspect.data.cache import build_cache
from sslinspect.events import Reporter, null_reporter
from sslinspect.export.onnx import ExportResult, export_model
from sslinspect.fewshot.fit import load_head
from sslinspect.project import Project
from sslinspect.train.checkpoint import build_backbone_from_checkpoint, load_checkpoint


def parity_rows(n_images: int, labelled: list[int], n: int, seed: int = 0) -> np.ndarray:
    """Rows for the parity check: labelled images first (they include defects), then a seeded random fill."""
    rows = list(dict.fromkeys(labelled))[: n // 2]
    rest = np.setdiff1d(np.arange(n_images), rows)
    fill = np.random.default_rng(seed).choice(rest, size=min(n - len(rows), len(rest)), replace=False)
    return np.sort(np.concatenate([np.array(rows, dtype=np.int64), fill.astype(np.int64)]))


def run_export(
    project: Project,
    out: Path | None,
    cfg: ExportConfig,
    *,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> ExportResult:
    """Export the latest fewshot run's model (see :func:`sslinspect.api.export_onnx`)."""
    head, ckpt_path = load_head(project)
    ckpt = load_checkpoint(ckpt_path)
    backbone = build_backbone_from_checkpoint(ckpt)
    cache = build_cache(project, head.image_size, report=report, cancel=cancel)
    index = cache.index_of()
    labelled = [index[i] for i in project.store.labels() if i in index]
    rows = parity_rows(len(cache), labelled, cfg.parity_images)
    out = Path(out) if out is not None else project.root / "exports" / "model" / "model.onnx"
    fewshot = project.latest("fewshot")
    provenance = {
        "project": project.name,
        "pretrain_run": project.relative(ckpt_path.parent.parent),
        "fewshot_run": project.relative(fewshot) if fewshot else None,
        "method": ckpt.get("method"),
        "backbone": ckpt.get("backbone"),
        "epochs": ckpt.get("epochs_done"),
        "pretrain_images": ckpt.get("images"),
    }
    result = export_model(
        backbone, head, np.asarray(cache.images[rows]), out, cfg, provenance=provenance, report=report, cancel=cancel
    )
    project.set_latest("export", out)
    return result
