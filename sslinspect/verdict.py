"""Plain-language verdicts for the few-shot fit, label minimums before a fit, and the one AUROC function.

The verdict rule (documented for users in docs/gui.md, section "How the verdict is decided"):

* **Finds defects** is read from the anomaly score's AUROC on the labelled images (held-out scores: no image is
  compared with itself): *good* at ≥ 0.90, *fair* at ≥ 0.75, *poor* below; *unknown* until both good parts and
  defects are labelled.
* **Defect types** are *reliable* when the type classifier's cross-validated balanced accuracy is ≥ 0.80 and every
  defect class has a cross-validated recall ≥ 0.60; otherwise *not yet*, naming the defect class with the lowest
  recall, how many more labels it needs to reach ``TARGET_LABELS`` (at least ``MIN_MORE``) and, when the
  out-of-fold confusion shows it, the type it is most often taken for ("label 5 more 'crack' to separate it from
  'scratch'"). The type classifier is the region typing head (``metrics.json``'s ``typing``: what ``predict``
  names parts with) when the fit made one, else the whole-image classifier (``cv``). With fewer than two classes
  kept there is nothing to type: *not yet*, naming the class that needs labels.

Numbers only come from the cross-validated (out-of-fold) figures of ``metrics.json``; nothing is re-measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sslinspect.project import GOOD

FINDS_GOOD = 0.90
FINDS_FAIR = 0.75
TYPES_BALANCED_ACCURACY = 0.80
TYPES_RECALL = 0.60
TARGET_LABELS = 10
MIN_MORE = 5


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` (higher = more likely positive); ties count one half.

    The one AUROC of the app and the review views (equal to scikit-learn's ``roc_auc_score``). None unless both
    classes occur.

    Examples:
        >>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
        0.75
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(positive, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def labelled_auroc(scores: np.ndarray, labels: Sequence[str | None]) -> float | None:
    """:func:`auroc` of ``scores`` on the labelled rows (``good`` against every defect class): what every page shows."""
    lab = np.array([x if x is not None else "" for x in labels], dtype=object)
    sel = lab != ""
    return auroc(np.asarray(scores, np.float64)[sel], lab[sel] != GOOD)


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A class with too few labels: ``have`` of ``need``."""

    label: str
    have: int
    need: int

    @property
    def more(self) -> int:
        """How many more labels it needs."""
        return max(0, self.need - self.have)

    def describe(self) -> str:
        """E.g. "label 1 more 'good'"."""
        return f"label {self.more} more {self.label!r}"


def fit_shortfalls(counts: Mapping[str, int], min_shots: int) -> list[Shortfall]:
    """What keeps a fit from using every labelled class: ``good`` needs ``min_shots`` labels, and so does every
    defect class that has any label (a class below it would be left out of the model).

    Examples:
        >>> [s.describe() for s in fit_shortfalls({"good": 1, "scratch": 3}, 2)]
        ["label 1 more 'good'"]
    """
    need = max(1, int(min_shots))
    out = [Shortfall(GOOD, int(counts.get(GOOD, 0)), need)] if counts.get(GOOD, 0) < need else []
    out += [Shortfall(c, int(n), need) for c, n in sorted(counts.items()) if c != GOOD and 0 < n < need]
    return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """The fit in words: how well it finds defects, whether its defect types can be trusted, and why."""

    finds: str  # good | fair | poor | unknown
    types: str  # reliable | not yet
    auroc: float | None
    advice: str  # "" or e.g. "label 5 more 'spot'"

    def describe(self) -> str:
        """One line, e.g. "Finds defects: good; defect types: not yet — label 5 more 'spot'"."""
        types = self.types + (f" — {self.advice}" if self.advice else "")
        return f"Finds defects: {self.finds}; defect types: {types}"


def _finds(value: float | None) -> str:
    if value is None:
        return "unknown"
    return "good" if value >= FINDS_GOOD else "fair" if value >= FINDS_FAIR else "poor"


def fit_verdict(metrics: Mapping[str, Any], anomaly_auroc: float | None = None) -> Verdict:
    """The verdict of a few-shot run from its ``metrics.json`` (see the module docstring for the rule).

    ``anomaly_auroc`` overrides the stored AUROC (the review views pass the one they draw, so both agree).
    """
    value = anomaly_auroc if anomaly_auroc is not None else metrics.get("anomaly_auroc_labelled")
    finds = _finds(None if value is None else float(value))
    cv = metrics.get("typing") or metrics.get("cv") or {}
    classes = [str(c) for c in metrics.get("classes") or []]
    defects = [c for c in classes if c != GOOD]
    dropped = {str(c): int(n) for c, n in (metrics.get("dropped_classes") or {}).items()}
    if not cv or not defects:
        if dropped:
            worst = sorted(dropped)[0]
            return Verdict(
                finds, "not yet", value, f"label {max(MIN_MORE, TARGET_LABELS - dropped[worst])} more {worst!r}"
            )
        return Verdict(finds, "not yet", value, f"label {MIN_MORE} images of each defect type")
    per = cv.get("per_class") or {}
    recalls = {c: float(per.get(c, {}).get("recall", 0.0)) for c in defects}
    worst = min(recalls, key=lambda c: (recalls[c], c))
    reliable = float(cv.get("balanced_accuracy", 0.0)) >= TYPES_BALANCED_ACCURACY and all(
        r >= TYPES_RECALL for r in recalls.values()
    )
    if reliable and not dropped:
        return Verdict(finds, "reliable", value, "")
    if dropped:
        worst = sorted(dropped)[0]
    have = int(per.get(worst, {}).get("support", dropped.get(worst, 0)))
    advice = f"label {max(MIN_MORE, TARGET_LABELS - have)} more {worst!r}"
    rival = _taken_for(cv, worst)
    return Verdict(finds, "not yet", value, advice + (f" to separate it from {rival!r}" if rival else ""))


def _taken_for(cv: Mapping[str, Any], name: str) -> str | None:
    """The class ``name``'s labels are most often predicted as, out of fold (None: never confused, or unknown)."""
    names = [str(c) for c in cv.get("classes") or []] or list(cv.get("per_class") or {})
    confusion = np.asarray(cv.get("confusion") or [], dtype=float)
    if name not in names or confusion.ndim != 2 or confusion.shape[0] != len(names):
        return None
    row = confusion[names.index(name)].copy()
    row[names.index(name)] = 0
    return names[int(row.argmax())] if row.max() > 0 else None
