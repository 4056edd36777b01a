"""Queries behind the desktop app's labelling and review views, Qt-free and torch-free (numpy only).

What a project is ready for (:func:`project_status`), the per-image analysis of the latest few-shot run
(:func:`load_analysis`: anomaly scores, predictions, embeddings), grid orderings (most unusual, most uncertain,
by cluster, by similarity), a 2-D map of the embeddings, ROC/PR curves of the anomaly score, and class colours.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sslinspect.errors import DataError, ProjectError
from sslinspect.project import GOOD, Project

# Mirrors sslinspect.train.pretrain.MIN_IMAGES (that module imports torch; the GUI must not). A core test checks both.
MIN_PRETRAIN_IMAGES = 8
CHECKPOINT = "checkpoints/last.pt"
SortKey = Literal["file", "unusual", "uncertain", "cluster", "similar"]
SORT_KEYS: tuple[SortKey, ...] = ("file", "unusual", "uncertain", "cluster", "similar")
_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True, slots=True)
class ProjectStatus:
    """What the project holds and which pipeline steps are possible now."""

    images: int
    unreadable: int
    labels: dict[str, int]
    checkpoint: Path | None
    pretrain_run: Path | None
    pretrain_state: str | None
    fewshot_run: Path | None
    export: Path | None

    @property
    def labelled(self) -> int:
        """Total number of labelled images."""
        return sum(self.labels.values())

    @property
    def can_pretrain(self) -> bool:
        """Enough readable images to pretrain."""
        return self.images >= MIN_PRETRAIN_IMAGES

    @property
    def can_resume(self) -> bool:
        """The latest pretraining run stopped early and left a checkpoint."""
        return self.checkpoint is not None and self.pretrain_state in ("cancelled", "failed", "running")


def _run_state(run_dir: Path) -> str | None:
    try:
        state = json.loads((run_dir / "status.json").read_text(encoding="utf-8")).get("state")
    except (OSError, ValueError):
        return None
    return str(state) if state else None


def project_status(project: Project) -> ProjectStatus:
    """Summarise ``project`` (re-reads ``project.json``: a worker process may have moved its pointers)."""
    project.reload()
    counts = project.store.counts()
    latest = project.latest("pretrain")
    candidates = ([latest] if latest else []) + list(reversed(project.runs("pretrain")))
    checkpoint = next((run / CHECKPOINT for run in candidates if (run / CHECKPOINT).is_file()), None)
    pretrain_run = checkpoint.parent.parent if checkpoint else latest
    fewshot = project.latest("fewshot")
    export = project.latest("export")
    return ProjectStatus(
        images=counts["ok"] - counts["duplicates"],
        unreadable=counts["error"],
        labels=project.store.label_counts(),
        checkpoint=checkpoint,
        pretrain_run=pretrain_run,
        pretrain_state=_run_state(pretrain_run) if pretrain_run else None,
        fewshot_run=fewshot if fewshot and (fewshot / "head.npz").is_file() else None,
        export=export if export and export.is_file() else None,
    )


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


# -- orderings ------------------------------------------------------------------------------------------------------
def nearest(emb: np.ndarray, row: int, k: int | None = None) -> np.ndarray:
    """Rows of ``emb`` by decreasing cosine similarity to row ``row`` (itself first), at most ``k``."""
    x = np.asarray(emb, dtype=np.float32)
    q = x[row] / (np.linalg.norm(x[row]) + 1e-12)
    sim = x @ q / (np.linalg.norm(x, axis=1) + 1e-12)
    sim[row] = np.inf
    if k is not None and k < len(sim):
        top = np.argpartition(-sim, k)[:k]
        return top[np.argsort(-sim[top], kind="stable")]
    return np.argsort(-sim, kind="stable")


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Plain k-means (k-means++ seeding) on rows of ``x``; returns ``(assignment, centres)``."""
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    sq = (x * x).sum(1)
    centres = [x[rng.integers(n)]]
    d2 = sq - 2 * x @ centres[0] + centres[0] @ centres[0]
    for _ in range(1, k):
        p = np.clip(d2, 0, None)
        c = x[rng.choice(n, p=p / p.sum())] if p.sum() > 0 else x[rng.integers(n)]
        centres.append(c)
        d2 = np.minimum(d2, sq - 2 * x @ c + c @ c)
    cen = np.stack(centres)
    assign = np.zeros(n, np.int64)
    for it in range(iters):
        dist = sq[:, None] - 2 * x @ cen.T + (cen * cen).sum(1)[None]
        new = dist.argmin(1)
        if it > 0 and np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if len(members):
                cen[j] = members.mean(0)
    return assign, cen


def cluster_order(emb: np.ndarray, k: int = 12, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by k-means cluster (largest first), each cluster's representative (closest to centre) first.

    Returns:
        ``(rows, cluster_of_row)``: the ordering and the cluster index of each row of ``emb``.
    """
    x = np.asarray(emb, dtype=np.float32)
    assign, cen = kmeans(x, k, seed=seed)
    dist = ((x - cen[assign]) ** 2).sum(1)
    sizes = np.bincount(assign, minlength=len(cen))
    rank = np.argsort(-sizes, kind="stable")
    cluster_rank = np.empty_like(rank)
    cluster_rank[rank] = np.arange(len(rank))
    return np.lexsort((dist, cluster_rank[assign])), assign


def order_ids(
    ids: np.ndarray,
    key: SortKey,
    analysis: Analysis | None = None,
    *,
    ref_id: int | None = None,
    clusters: int = 12,
) -> np.ndarray:
    """The image ids of the grid in the order ``key`` asks for.

    ``file`` keeps ``ids`` as given; ``unusual`` sorts by anomaly score (highest first); ``uncertain`` by the
    classifier's confidence (lowest first); ``cluster`` groups by k-means cluster; ``similar`` sorts by cosine
    similarity to ``ref_id``. Ids the analysis does not cover go last, in their given order.

    Raises:
        DataError: if ``key`` needs an analysis (or ``ref_id``) that is missing.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if key == "file":
        return ids
    if analysis is None:
        raise DataError(f"sorting by {key!r} needs a trained model (train once; labels are optional)")
    rows = analysis.rows_of(ids)
    have, missing = ids[rows >= 0], ids[rows < 0]
    r = rows[rows >= 0]
    if key == "unusual":
        order = np.argsort(-analysis.anomaly[r], kind="stable")
    elif key == "uncertain":
        order = np.argsort(analysis.confidence[r], kind="stable")
    elif key == "cluster":
        order, _ = cluster_order(np.asarray(analysis.embeddings()[r]), clusters)
    elif key == "similar":
        if ref_id is None or ref_id not in set(have.tolist()):
            raise DataError("choose an image first to sort by similarity")
        emb = np.asarray(analysis.embeddings()[r])
        order = nearest(emb, int(np.flatnonzero(have == ref_id)[0]))
    else:
        raise DataError(f"unknown sort order {key!r}; one of {', '.join(SORT_KEYS)}")
    return np.concatenate([have[order], missing])


def project_2d(emb: np.ndarray, *, chunk: int = 16384) -> np.ndarray:
    """PCA of ``(N, D)`` rows to 2-D via the ``D×D`` covariance (streams over rows; fine for N = 100,000)."""
    n, d = emb.shape
    mean = np.zeros(d, np.float64)
    for s in range(0, n, chunk):
        mean += np.asarray(emb[s : s + chunk], np.float64).sum(0)
    mean /= max(n, 1)
    cov = np.zeros((d, d), np.float64)
    for s in range(0, n, chunk):
        xc = np.asarray(emb[s : s + chunk], np.float64) - mean
        cov += xc.T @ xc
    vals, vecs = np.linalg.eigh(cov)
    comps = vecs[:, np.argsort(vals)[::-1][:2]]
    comps *= np.sign(comps[np.abs(comps).argmax(0), [0, 1]])  # deterministic signs
    out = np.empty((n, 2), np.float32)
    for s in range(0, n, chunk):
        out[s : s + chunk] = (np.asarray(emb[s : s + chunk], np.float64) - mean) @ comps
    return out


# -- curves ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Curves:
    """ROC and precision/recall of a score against binary truth; arrays share the threshold axis."""

    thresholds: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    precision: np.ndarray
    auroc: float


def score_curves(scores: np.ndarray, positive: np.ndarray) -> Curves:
    """ROC/PR of ``scores`` (higher = more likely positive) over every distinct threshold.

    Raises:
        DataError: unless there is at least one positive and one negative.
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(positive, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        raise DataError("curves need labelled defects and labelled good images (label both)")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    tpr, fpr = np.r_[0.0, tp / n_pos], np.r_[0.0, fp / n_neg]
    precision = np.r_[1.0, tp / np.maximum(tp + fp, 1)]
    auroc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return Curves(np.r_[np.inf, s[last]], fpr, tpr, precision, auroc)


@dataclass(frozen=True, slots=True)
class ThresholdEffect:
    """What a threshold does: share of all images flagged, and rates on the labelled images."""

    threshold: float
    flagged: float
    recall: float | None
    false_alarms: float | None


def threshold_effect(
    scores: np.ndarray, threshold: float, labels: list[str | None] | tuple[str | None, ...]
) -> ThresholdEffect:
    """Flagged share of ``scores`` at ``threshold``, recall on labelled defects, false alarms on labelled good."""
    s = np.asarray(scores, np.float64)
    flagged = s >= threshold
    lab = np.array([x if x is not None else "" for x in labels], dtype=object)
    bad = (lab != "") & (lab != GOOD)
    good = lab == GOOD
    return ThresholdEffect(
        threshold=float(threshold),
        flagged=float(flagged.mean()) if len(s) else 0.0,
        recall=float(flagged[bad].mean()) if bad.any() else None,
        false_alarms=float(flagged[good].mean()) if good.any() else None,
    )


# -- classes --------------------------------------------------------------------------------------------------------
def set_class_color(project: Project, name: str, color: str) -> None:
    """Give class ``name`` the colour ``#rrggbb``.

    Raises:
        ProjectError: for an unknown class or a malformed colour.
    """
    if not _COLOR_RE.match(color):
        raise ProjectError(f"invalid colour {color!r}: use #rrggbb")
    if name not in project.classes:
        raise ProjectError(f"unknown class {name!r}")

    def _set(d: dict[str, Any]) -> None:
        for c in d["classes"]:
            if c["name"] == name:
                c["color"] = color.lower()

    project.update(_set)


def label_list(ids: np.ndarray, labels: Mapping[int, str]) -> list[str | None]:
    """The label of each id (None when unlabelled)."""
    return [labels.get(int(i)) for i in ids]


def existing_cache(project: Project, min_size: int = 64) -> tuple[np.ndarray, dict[int, int], int] | None:
    """The smallest decoded-image cache of at least ``min_size`` px already on disk (never builds one).

    Returns:
        ``(images, row_of_id, size)`` with ``images`` memory-mapped read-only, or None when there is none.
    """
    from sslinspect.data.cache import cached_sizes, open_cache

    for size in cached_sizes(project):  # smallest first
        if size < min_size:
            continue
        cache = open_cache(project, size)
        if cache is not None:
            return cache.images, cache.index_of(), size
    return None
