"""The stored head of a few-shot run: load it, or change its thresholds. numpy only (no torch, no scikit-learn),
so ``sslinspect threshold`` works on a line-side install."""

from __future__ import annotations

import json
from pathlib import Path

from sslinspect.errors import DataError
from sslinspect.fewshot.model import InspectionHead
from sslinspect.fewshot.thresholds import check_thresholds
from sslinspect.fsutil import atomic_write_json, read_json
from sslinspect.project import Project


def load_head(project: Project, run_dir: Path | None = None) -> tuple[InspectionHead, Path]:
    """The head of ``run_dir`` (default: latest fewshot run) and the checkpoint it was fitted on.

    Raises:
        DataError: if there is no trained head yet.
    """
    run_dir = run_dir or project.latest("fewshot")
    if run_dir is None or not (run_dir / "head.npz").is_file():
        raise DataError(f"{project.root}: no trained classifier yet (run `sslinspect fit` first)")
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    return InspectionHead.load(run_dir / "head.npz"), project.resolve(cfg["checkpoint"])


def set_threshold(
    project: Project, threshold: float, review_threshold: float | None = None, *, force: bool = False
) -> InspectionHead:
    """Store a threshold picked by the engineer (e.g. on the ROC/PR curve) in the latest head; export uses it.

    The heatmap normalisation stays as calibrated, so heatmaps stay comparable. ``metrics.json`` records the
    choice under ``threshold_override`` (with ``forced`` and the observed score range).

    Raises:
        DataError: if there is no trained head yet.
        ConfigError: for a value outside the observed scores (unless ``force``) or not a finite float32.
        ValueError: if the review threshold exceeds the threshold.
    """
    run_dir = project.latest("fewshot")
    head, _ = load_head(project, run_dir)
    assert run_dir is not None
    metrics_path = run_dir / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
    calibrated = metrics.get("threshold")
    new = head.with_thresholds(threshold, review_threshold)  # review above the threshold: ValueError first
    forced, seen = check_thresholds(run_dir, threshold, review_threshold, force=force, calibrated=calibrated)
    new.save(run_dir / "head.npz")
    metrics["threshold_override"] = {
        "threshold": new.anomaly.threshold,
        "review_threshold": new.anomaly.review_threshold,
        "calibrated": metrics.get("threshold"),
        "forced": forced,
        "observed_scores": [seen.low, seen.high] if seen is not None else None,
    }
    atomic_write_json(metrics_path, metrics)
    return new
