"""The per-image results of a few-shot run (``scores.csv``, ``metrics.json``, embeddings) and the thresholds the
next export uses, read for the app's label and review views."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sslinspect.errors import DataError
from sslinspect.project import Project


@dataclass(frozen=True, slots=True)
class Analysis:
    """Per-image results of one few-shot run, aligned row by row with ``ids``."""

    run_dir: Path
    ids: np.ndarray  # int64 image ids
    anomaly: np.ndarray  # float32 held-out anomaly scores
    confidence: np.ndarray  # float32 top class probability
    predicted: tuple[str, ...]
    classes: tuple[str, ...]
    threshold: float
    metrics: dict[str, Any] = field(default_factory=dict)

    def rows_of(self, image_ids: np.ndarray) -> np.ndarray:
        """Row of each id in ``image_ids`` (-1 where the run has no row for it)."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        if not len(self.ids):
            return np.full(len(image_ids), -1, np.int64)
        order = np.argsort(self.ids, kind="stable")
        pos = np.clip(np.searchsorted(self.ids[order], image_ids), 0, len(self.ids) - 1)
        rows = order[pos]
        return np.where(self.ids[rows] == image_ids, rows, -1)

    def embeddings(self) -> np.ndarray:
        """The run's L2-normalised embeddings ``(N, D)``, memory-mapped (rows align with ``ids``).

        Raises:
            DataError: if the run folder has no embeddings.
        """
        path = self.run_dir / "embeddings.npy"
        if not path.is_file():
            raise DataError(f"{path}: missing (train again to recompute the embeddings)")
        emb = np.load(path, mmap_mode="r")
        if emb.ndim != 2 or emb.shape[0] != len(self.ids):
            raise DataError(f"{path}: shape {emb.shape} does not match {len(self.ids)} image ids")
        return emb


def load_analysis(project: Project, run_dir: Path | None = None) -> Analysis | None:
    """Read ``scores.csv`` and ``metrics.json`` of ``run_dir`` (default: the latest few-shot run); None if none.

    Raises:
        DataError: if the run's files are malformed.
    """
    run_dir = run_dir or project.latest("fewshot")
    if run_dir is None or not (run_dir / "scores.csv").is_file():
        return None
    path = run_dir / "scores.csv"
    ids: list[int] = []
    anomaly: list[float] = []
    conf: list[float] = []
    pred: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                ids.append(int(row["image_id"]))
                anomaly.append(float(row["anomaly_score"]))
                conf.append(float(row["confidence"]))
                pred.append(row["label"])
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path.parent}: unreadable few-shot results ({exc})") from exc
    return Analysis(
        run_dir=run_dir,
        ids=np.array(ids, dtype=np.int64),
        anomaly=np.array(anomaly, dtype=np.float32),
        confidence=np.array(conf, dtype=np.float32),
        predicted=tuple(pred),
        classes=tuple(metrics.get("classes", ())),
        threshold=float(metrics.get("threshold", np.inf)),
        metrics=metrics,
    )


@dataclass(frozen=True, slots=True)
class ExportThresholds:
    """The thresholds the next export bakes into the model, and where they come from."""

    threshold: float
    review_threshold: float  # equal to ``threshold`` when there is no review band
    chosen: bool  # picked by the engineer (``set_threshold``), not the calibrated default
    forced: bool = False  # chosen outside the observed anomaly scores (``--force``)

    def describe(self) -> str:
        """One line for the GUI, e.g. ``NG ≥ 0.4200, review ≥ 0.3500 (chosen)``."""
        text = f"NG ≥ {self.threshold:.4f}"
        if self.review_threshold < self.threshold:
            text += f", review ≥ {self.review_threshold:.4f}"
        if self.forced:
            return text + " (FORCED: outside the observed anomaly scores)"
        return text + (" (chosen)" if self.chosen else " (calibrated)")


def export_thresholds(metrics: dict[str, Any]) -> ExportThresholds | None:
    """What the next export uses, from a few-shot run's ``metrics.json`` (None if it has no threshold)."""
    chosen = metrics.get("threshold_override")
    src = chosen if isinstance(chosen, dict) else metrics
    try:
        t = float(src["threshold"])
    except (KeyError, TypeError, ValueError):
        return None
    review = src.get("review_threshold")
    forced = isinstance(chosen, dict) and chosen.get("forced") is True
    return ExportThresholds(t, t if review is None else float(review), isinstance(chosen, dict), forced)


def latest_export_thresholds(project: Project) -> ExportThresholds | None:
    """The thresholds the next export of ``project`` uses (None before the first few-shot run)."""
    run_dir = project.latest("fewshot")
    path = run_dir / "metrics.json" if run_dir is not None else None
    if path is None or not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from exc
    return export_thresholds(metrics) if isinstance(metrics, dict) else None
