"""Few-shot classifiers on L2-normalised embeddings, both expressed as one linear layer + softmax:

- nearest prototype (cosine to the class means, times a scale) — the default, robust with 5 shots;
- logistic regression (class-balanced).

``select_classifier`` cross-validates both on the labels and keeps the better (ties go to prototypes).
:class:`LinearHead` is numpy only; scikit-learn is imported by the fitting functions alone, so reading a head
(the GUI's heatmaps, the report) never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# scikit-learn is imported where a head is fitted, not at import: a stored head (``LinearHead``) is numpy only, so
# ``threshold`` and ``report`` work on an install without the train extra.

PROTOTYPE_SCALE = 16.0


@dataclass(frozen=True, slots=True)
class LinearHead:
    """``logits = x @ weight.T + bias`` on L2-normalised features; ``kind`` says how it was fitted."""

    kind: str
    classes: tuple[str, ...]
    weight: np.ndarray  # (C, D) float32
    bias: np.ndarray  # (C,) float32

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(N, C)``."""
        logits = x @ self.weight.T + self.bias
        logits -= logits.max(1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class CVReport:
    """Cross-validated metrics of one classifier on the labelled images (out-of-fold predictions)."""

    kind: str
    folds: int
    balanced_accuracy: float
    accuracy: float
    confusion: list[list[int]]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    oof_pred: list[int] = field(default_factory=list)
    oof_proba: list[list[float]] = field(default_factory=list)


def fit_prototype(x: np.ndarray, y: np.ndarray, classes: tuple[str, ...]) -> LinearHead:
    """Class means of ``x`` (renormalised) as a cosine classifier."""
    protos = np.stack([x[y == c].mean(0) for c in range(len(classes))])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True) + 1e-12
    return LinearHead(
        "prototype", classes, (PROTOTYPE_SCALE * protos).astype(np.float32), np.zeros(len(classes), np.float32)
    )


def fit_logistic(x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], seed: int = 0) -> LinearHead:
    """Class-balanced multinomial logistic regression (two classes are expanded to two rows)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced", random_state=seed)
    clf.fit(x, y)
    w, b = clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32)
    if len(classes) == 2:  # sklearn keeps one row for binary problems
        w, b = np.concatenate([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])
    return LinearHead("logistic", classes, w, b)


def fit(kind: str, x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], seed: int = 0) -> LinearHead:
    """Fit a head of ``kind`` (``prototype`` or ``logistic``)."""
    return fit_prototype(x, y, classes) if kind == "prototype" else fit_logistic(x, y, classes, seed)


def cross_validate(
    kind: str, x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], folds: int, seed: int = 0
) -> CVReport:
    """Stratified k-fold CV (k capped by the smallest class) with pooled out-of-fold predictions."""
    from sklearn.model_selection import StratifiedKFold

    k = int(min(folds, np.bincount(y, minlength=len(classes)).min()))
    if k < 2:
        raise ValueError("cross-validation needs at least 2 labelled images per class")
    oof = np.zeros((len(y), len(classes)), np.float32)
    for tr, te in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y):
        oof[te] = fit(kind, x[tr], y[tr], classes, seed).predict_proba(x[te])
    return cv_report(kind, k, y, oof.argmax(1), classes, oof)


def cv_report(
    kind: str, folds: int, y: np.ndarray, pred: np.ndarray, classes: tuple[str, ...], proba: np.ndarray | None = None
) -> CVReport:
    """The report of out-of-fold class indices ``pred`` (and probabilities ``proba``) against the labels ``y``."""
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(classes)))
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_class = {
        c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(sup[i])}
        for i, c in enumerate(classes)
    }
    return CVReport(
        kind=kind,
        folds=folds,
        balanced_accuracy=float(balanced_accuracy_score(y, pred)),
        accuracy=float((pred == y).mean()),
        confusion=confusion_matrix(y, pred, labels=labels).tolist(),
        per_class=per_class,
        oof_pred=pred.tolist(),
        oof_proba=[] if proba is None else proba.round(5).tolist(),
    )


def select_classifier(
    choice: str, x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], folds: int, seed: int = 0
) -> tuple[LinearHead, CVReport, dict[str, float]]:
    """Cross-validate the candidate(s), fit the chosen kind on all labels.

    Returns:
        The fitted head, its CV report, and the balanced accuracy of every candidate tried.
    """
    kinds = ["prototype", "logistic"] if choice == "auto" else [choice]
    reports = {kind: cross_validate(kind, x, y, classes, folds, seed) for kind in kinds}
    best = max(kinds, key=lambda kd: (reports[kd].balanced_accuracy, kd == "prototype"))
    return fit(best, x, y, classes, seed), reports[best], {kd: r.balanced_accuracy for kd, r in reports.items()}
