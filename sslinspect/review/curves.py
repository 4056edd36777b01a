"""ROC/PR curves of the anomaly score against the labels, and what a threshold does to the labelled images."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sslinspect.errors import DataError
from sslinspect.project import GOOD


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


def label_list(ids: np.ndarray, labels: Mapping[int, str]) -> list[str | None]:
    """The label of each id (None when unlabelled)."""
    return [labels.get(int(i)) for i in ids]
