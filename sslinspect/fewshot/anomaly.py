"""The anomaly model's numbers: memory bank, thresholds and heatmap normalisation, plus calibration helpers.

Two kinds share one description:

- ``patch``: PatchCore-style bank of patch features (see :mod:`sslinspect.fewshot.patchcore`); the image score is
  the largest smoothed nearest-neighbour distance of its patches, and the map is the per-patch distance.
- ``segment``: the defect-aware segmentation map (:mod:`sslinspect.fewshot.segmap`); the image score is the
  map's maximum; no bank (the decoder's weights travel with the pretraining checkpoint).
- ``knn``: mean cosine distance of an image's global embedding to its k nearest neighbours in a bank of
  (presumed good) images; used for backbones without intermediate feature maps. Its map is uniform.

Thresholds come from held-out scores of presumed-good images (a high percentile), never from an F1 fitted on
good-only data. The heatmap is normalised against the same good images, never per image: 0 is a typical good
patch and 1 the calibrated image threshold, so a good part looks calm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANOMALY_KINDS = ("patch", "knn", "segment")


@dataclass(frozen=True, slots=True)
class AnomalyModel:
    """A memory bank, how it scores, the decision thresholds and the map normalisation."""

    kind: str  # "patch" | "knn" | "segment"
    bank: np.ndarray  # (M, D) float32, rows L2-normalised
    k: int  # neighbours averaged (knn); 1 for patch
    threshold: float  # score above this → NG
    review_threshold: float  # score above this (and ≤ threshold) → review; equal to ``threshold`` when off
    map_low: float  # raw patch score of a typical good patch (→ 0 on the normalised map)
    map_high: float  # raw score normalised to 1 (the calibrated threshold at fit time)
    spread: int = 0  # segment map: 1 spread over the defect's neighbourhood (fewshot.segmap), 0 as fitted before
    # segment map: the sharp map's (before spreading) typical good value and calibrated threshold; both 0 (heads
    # before 2026-12-05, the sixth session, and every other kind): no sharp map
    sharp_low: float = 0.0
    sharp_high: float = 0.0
    # segment map with a sharp map: how many kinds of defect the decoder tells apart (its ``defect_kinds`` output,
    # whose probabilities describe a located defect); 0: none (heads before 2026-12-06's thirteenth session)
    kinds: int = 0

    @property
    def has_kinds(self) -> bool:
        """Whether the model gives the kind probabilities (``defect_kinds``) besides its maps."""
        return self.has_sharp and self.kinds > 0

    @property
    def has_sharp(self) -> bool:
        """Whether the model gives a sharp map (``anomaly_map_sharp``) besides the anomaly map."""
        return self.kind == "segment" and bool(self.spread) and self.sharp_high > self.sharp_low

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Raw distance map or score → the normalised scale (0 typical good, 1 calibrated threshold)."""
        return ((np.asarray(raw, np.float32) - self.map_low) / max(self.map_high - self.map_low, 1e-6)).astype(
            np.float32
        )


def knn_scores(x: np.ndarray, bank: np.ndarray, k: int, *, exclude_self: bool = False, chunk: int = 2048) -> np.ndarray:
    """``1 − mean of the top-k cosine similarities`` of each row of ``x`` against ``bank`` (chunked: bounded memory)."""
    import torch

    b = torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))
    k_eff = min(k + int(exclude_self), b.shape[0])
    out = np.empty(len(x), np.float32)
    for s in range(0, len(x), chunk):
        sims = torch.from_numpy(np.ascontiguousarray(x[s : s + chunk], dtype=np.float32)) @ b.T
        top = sims.topk(k_eff, dim=1).values
        if exclude_self:
            top = top[:, 1:]  # the best match of a bank image is itself
        out[s : s + chunk] = (1.0 - top.mean(1)).numpy()
    return out


def subsample_bank(x: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``size`` rows: a random, seeded subset (bounds memory for 100,000-image projects)."""
    if len(x) <= size:
        return np.arange(len(x))
    return np.sort(np.random.default_rng(seed).choice(len(x), size, replace=False))


def calibrate_threshold(good_scores: np.ndarray, percentile: float) -> float:
    """The ``percentile`` of held-out scores of presumed-good images (never an F1 fitted on good data alone)."""
    return float(np.percentile(good_scores, percentile))


def score_curves(is_defect: np.ndarray, scores: np.ndarray, max_points: int = 200) -> dict[str, dict[str, list[float]]]:
    """ROC and precision/recall curves of held-out ``scores`` against labels, with the threshold of each point.

    The GUI draws them and lets the engineer pick a threshold on them; at most ``max_points`` per curve.
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, t_roc = roc_curve(is_defect, scores)
    prec, rec, t_pr = precision_recall_curve(is_defect, scores)
    t_roc = np.where(np.isfinite(t_roc), t_roc, float(scores.max()) + 1e-6)

    def thin(*cols: np.ndarray) -> list[list[float]]:
        keep = np.unique(np.linspace(0, len(cols[0]) - 1, min(max_points, len(cols[0]))).round().astype(int))
        return [np.round(c[keep].astype(float), 6).tolist() for c in cols]

    f, t, tr = thin(fpr, tpr, t_roc)
    p, r, tp = thin(prec[:-1], rec[:-1], t_pr)  # the last PR point has no threshold
    return {"roc": {"fpr": f, "tpr": t, "threshold": tr}, "pr": {"precision": p, "recall": r, "threshold": tp}}


def histogram(scores: np.ndarray, edges: np.ndarray) -> list[int]:
    """Counts of ``scores`` in ``edges`` (values beyond the ends go to the end bins)."""
    clipped = np.clip(scores, edges[0], edges[-1])
    return np.histogram(clipped, bins=edges)[0].astype(int).tolist()
