"""Fit a :class:`~sslinspect.defects.typing_head.TypingHead` from a few labelled region descriptors.

Standardise (mean and standard deviation of the labelled rows), cross-validate the candidate kinds (stratified
folds, balanced accuracy; ties go to the simpler kind, in ``KINDS`` order), fit the winner on every label,
calibrate the open-set radii on leave-one-out distances, and the confidence cut (from which a name is *sure*) on the
winner's out-of-fold predictions. scikit-learn is imported only inside the functions that
need it, so importing this module stays light; inference never needs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as _replace
from typing import Any

import numpy as np

from sslinspect.defects.typing_head import KINDS, LEVELS_KIND, NEVER_SURE, TypingHead, members_agree

#: A class's open-set radius is this margin times the largest leave-one-out distance of its labelled regions.
RADIUS_MARGIN = 1.3
#: The within-class variance of the distance metric is shrunk this far towards the overall variance (1).
METRIC_SHRINK = 0.1
#: Trees in the ensemble, and their depth limit (small: 5 labels per type).
N_TREES = 64
TREE_DEPTH = 4
#: A descriptor entry whose spread over the labelled regions is below this is taken as constant (left unscaled):
#: every entry is a share, a log ratio or a /100 colour difference, where 1e-4 is rounding, not information (the
#: colour entries of a grey camera's frames vary by ~1e-5, float rounding in the RGB → CIELAB conversion; scaled to
#: unit spread, that noise weighed as much as a real entry).
STD_FLOOR = 1e-4
#: Inverse regularisation of the logistic regression.
LOGISTIC_C = 1.0
#: A name is *sure* from the confidence (top probability) at which the out-of-fold names were right this often...
#: (0.85 since the typing heads learn from views of the labelled defects, which make them surer of every name, of a
#: never-labelled family's too: on the benchmark's development set, 0.85 with views reported that family unknown or
#: unsure as often as 0.8 did without them, 0.69 against 0.70, with more sure names, 0.34 against 0.29, right more
#: often, 0.87 against 0.85; 0.8 with views: 0.61. bench/RESULTS.md)
SURE_PRECISION = 0.85
#: ...over at least this many out-of-fold predictions (fewer say too little about the precision).
SURE_MIN_SUPPORT = 5


@dataclass(frozen=True, slots=True)
class TypingFit:
    """A fitted head with the evidence for it.

    Attributes:
        head: The head, fitted on every labelled row.
        cv: Cross-validated balanced accuracy per kind tried (NaN: not run).
        y: Class index (into ``head.classes``) of every labelled row.
        oof: Out-of-fold class index of every row under the chosen kind (None: too few rows to cross-validate).
        oof_confidence: Out-of-fold top probability of every row under the chosen kind (None with ``oof``).
        oof_proba: Out-of-fold class probabilities ``(N, C)`` under the chosen kind (None with ``oof``).
    """

    head: TypingHead
    cv: dict[str, float]
    y: np.ndarray | None = None
    oof: np.ndarray | None = None
    oof_confidence: np.ndarray | None = None
    oof_proba: np.ndarray | None = None

    def selective(self) -> tuple[float, float]:
        """``(coverage, accuracy)`` of the out-of-fold names at the head's cut: the share of labelled regions named
        sure, and the share of those named right (NaN: no out-of-fold predictions, or none sure)."""
        if self.oof is None or self.oof_confidence is None or self.y is None:
            return float("nan"), float("nan")
        return selective_accuracy(self.oof_confidence, self.oof == self.y, self.head.sure_cut)


@dataclass(frozen=True, slots=True)
class Views:
    """Descriptors of extra views of the labelled rows (their regions in flipped or re-exposed copies of the image):
    rows to train on, never to score. Cross-validation keeps a view in the fold of the row it was made from, and the
    open-set radius leaves a row out with its views.

    Attributes:
        x: ``(V, D)`` raw descriptors.
        of: ``(V,)`` index of the labelled row each view was made from.
    """

    x: np.ndarray
    of: np.ndarray

    def train_rows(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``x[rows]`` and ``y[rows]`` with the views of those rows appended, and each row's group (the labelled
        row it is or was made from)."""
        v = np.flatnonzero(np.isin(self.of, rows))
        return (
            np.concatenate([x[rows], np.asarray(self.x, np.float64)[v]]),
            np.concatenate([y[rows], y[self.of[v]]]),
            np.concatenate([rows, self.of[v]]),
        )


def confidence_cut(
    confidence: np.ndarray,
    correct: np.ndarray,
    precision: float = SURE_PRECISION,
    min_support: int = SURE_MIN_SUPPORT,
) -> float:
    """The smallest confidence ``c`` such that the predictions with confidence ≥ ``c`` number at least
    ``min_support`` and are right at least ``precision`` of the time; :data:`NEVER_SURE` (above 1) when none is.

    Only observed confidences are candidates (between two of them the selected set does not change), and equal
    confidences are kept or dropped together.

    Args:
        confidence: ``(N,)`` top probability of each (out-of-fold) prediction.
        correct: ``(N,)`` whether each was right.
        precision: Wanted share right among the predictions kept.
        min_support: Fewest predictions a cut may keep.

    Examples:
        >>> confidence_cut(np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), np.array([1, 1, 1, 1, 0, 0]), 0.8, 2)
        0.5
    """
    conf = np.asarray(confidence, np.float64).ravel()
    ok = np.asarray(correct, bool).ravel()
    if conf.shape != ok.shape:
        raise ValueError(f"{conf.size} confidences but {ok.size} outcomes")
    values = np.unique(conf)  # ascending: the first that qualifies is the smallest
    for c in values:
        kept = conf >= c
        if kept.sum() >= min_support and ok[kept].mean() >= precision:
            return float(c)
    return NEVER_SURE


def selective_accuracy(confidence: np.ndarray, correct: np.ndarray, cut: float) -> tuple[float, float]:
    """``(coverage, accuracy)``: the share of predictions with confidence ≥ ``cut``, and the share right among
    them (NaN when there are no predictions, or none reaches the cut)."""
    conf = np.asarray(confidence, np.float64).ravel()
    ok = np.asarray(correct, bool).ravel()
    if not conf.size:
        return float("nan"), float("nan")
    kept = conf >= cut
    return float(kept.mean()), float(ok[kept].mean()) if kept.any() else float("nan")


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Mean per-class recall over the classes present in ``y`` (a prediction of -1 is always wrong)."""
    recalls = [float((pred[y == c] == c).mean()) for c in range(n_classes) if (y == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, scale (the std; 1 for an entry that is only rounding noise) and which entries are that noise."""
    mean, std = x.mean(0), x.std(0)
    noise = std <= STD_FLOOR
    return mean, np.where(noise, 1.0, std), noise


def _centroids(z: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.stack([z[y == c].mean(0) for c in range(n_classes)])


def within_class_metric(z: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse pooled within-class variance of standardised rows, shrunk by ``METRIC_SHRINK`` towards 1."""
    resid = z - _centroids(z, y, n_classes)[y]
    within = (resid**2).sum(0) / max(len(y) - n_classes, 1)
    return 1.0 / np.maximum((1 - METRIC_SHRINK) * within + METRIC_SHRINK * z.var(0), 1e-6)


def open_set_radius(
    z: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    metric: np.ndarray,
    margin: float = RADIUS_MARGIN,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Per class: ``margin`` × the largest distance (under ``metric``) of a labelled row to the mean of the
    class's other rows (with ``groups``, rows of other groups: a row's views leave with it).

    A class with a single row (group) borrows the median radius of the others (or, alone, the mean distance of all
    rows to their class means).
    """
    radius = np.full(n_classes, np.nan)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    for c in range(n_classes):
        rows, grp = z[y == c], groups[y == c]
        names = np.unique(grp)
        if len(names) < 2:
            continue
        total, far = rows.sum(0), 0.0
        for g in names:
            inside = grp == g
            loo = (total - rows[inside].sum(0)) / (len(rows) - int(inside.sum()))
            far = max(far, float(np.sqrt((((rows[inside] - loo) ** 2) * metric).sum(1)).max()))
        radius[c] = far
    if np.isnan(radius).all():
        cents = _centroids(z, y, n_classes)
        radius[:] = float(np.sqrt((((z - cents[y]) ** 2) * metric).sum(1)).mean()) or 1.0
    radius[np.isnan(radius)] = float(np.nanmedian(radius))
    return margin * np.maximum(radius, 1e-6)


def flatten_trees(clf: Any, n_classes: int) -> dict[str, np.ndarray]:
    """A fitted scikit-learn forest as flat node arrays (see ``typing_head.tree_proba``)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "left", "right", "value")}
    roots, offset = [], 0
    for est in clf.estimators_:
        t = est.tree_
        inner = t.children_left >= 0
        value = np.zeros((t.node_count, n_classes))
        counts = t.value[:, 0, :]
        value[:, clf.classes_] = counts / np.maximum(counts.sum(1, keepdims=True), 1e-12)
        parts["feature"].append(np.where(inner, t.feature, -1).astype(np.int32))
        parts["threshold"].append(t.threshold.astype(np.float64))
        parts["left"].append(np.where(inner, t.children_left + offset, -1).astype(np.int32))
        parts["right"].append(np.where(inner, t.children_right + offset, -1).astype(np.int32))
        parts["value"].append(value)
        roots.append(offset)
        offset += t.node_count
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["roots"] = np.asarray(roots, np.int32)
    return out


def _trees(z: np.ndarray, y: np.ndarray, n_classes: int, seed: int) -> dict[str, np.ndarray]:
    """A small extremely-randomised tree ensemble, flattened."""
    from sklearn.ensemble import ExtraTreesClassifier

    clf = ExtraTreesClassifier(
        n_estimators=N_TREES, max_depth=TREE_DEPTH, class_weight="balanced", random_state=seed, n_jobs=1
    )
    clf.fit(z, y)
    return flatten_trees(clf, n_classes)


def _fit_kind(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    names: tuple[str, ...],
    seed: int,
    margin: float = RADIUS_MARGIN,
    groups: np.ndarray | None = None,
) -> TypingHead:
    n_classes, dim = len(classes), x.shape[1]
    mean, scale, noise = _standardiser(x)
    z = (x - mean) / scale
    cents = _centroids(z, y, n_classes)
    metric = within_class_metric(z, y, n_classes)
    if kind not in KINDS:
        raise ValueError(f"unknown typing head kind {kind!r}; expected one of {KINDS}")
    weight, bias = np.zeros((n_classes, dim)), np.zeros(n_classes)
    trees: dict[str, np.ndarray] = {}
    tau = max(float((((z - cents[y]) ** 2) * metric).sum(1).mean()) / 2, 1e-6)  # half the spread
    if kind == "prototype":
        bias[0] = tau
    if kind in ("logistic", "ensemble"):
        weight, bias = _logistic(z, y, n_classes, seed)
    if kind in ("trees", "ensemble"):
        trees = _trees(np.where(noise, 0.0, z), y, n_classes, seed)  # trees are blind to scale: noise is constant
    radius = open_set_radius(z, y, n_classes, metric, margin, groups)
    return TypingHead(
        kind,
        classes,
        names,
        mean,
        scale,
        cents,
        metric,
        radius,
        weight,
        bias,
        trees,
        tau=tau if kind == "ensemble" else 0.0,
    )


def _logistic(z: np.ndarray, y: np.ndarray, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(C, D)`` and biases ``(C,)`` of a balanced L2 logistic regression (zero for absent classes)."""
    from sklearn.linear_model import LogisticRegression

    weight, bias = np.zeros((n_classes, z.shape[1])), np.zeros(n_classes)
    clf = LogisticRegression(C=LOGISTIC_C, max_iter=5000, class_weight="balanced", random_state=seed)
    clf.fit(z, y)
    w, b = clf.coef_, clf.intercept_
    if w.shape[0] == 1:  # binary: sklearn keeps one row
        w, b = np.concatenate([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])
    weight[clf.classes_], bias[clf.classes_] = w, b
    return weight, bias


def oof_proba(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    folds: int = 5,
    seed: int = 0,
    views: Views | None = None,
) -> np.ndarray | None:
    """Out-of-fold class probabilities ``(N, C)`` of every row under ``kind`` (stratified folds, at most the
    smallest class's size; a class missing from a fold's training rows gets 0); None when a class has fewer than
    two rows. ``views`` of a training row train with it; the views of a held-out row stay out."""
    from sklearn.model_selection import StratifiedKFold

    k = int(min(folds, np.bincount(y, minlength=len(classes)).min()))
    if k < 2:
        return None
    proba = np.zeros((len(y), len(classes)))
    names = tuple(f"f{i}" for i in range(x.shape[1]))
    for tr, te in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y):
        x_tr, y_tr, g_tr = views.train_rows(x, y, tr) if views is not None else (x[tr], y[tr], tr)
        present = np.unique(y_tr)
        remap = np.searchsorted(present, y_tr)
        head = _fit_kind(kind, x_tr, remap, tuple(classes[i] for i in present), names, seed, groups=g_tr)
        proba[np.ix_(te, present)] = head.predict_proba(x[te])
    return proba


def oof_predictions(
    kind: str, x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], folds: int = 5, seed: int = 0
) -> np.ndarray | None:
    """Out-of-fold class index of every row under ``kind`` (see :func:`oof_proba`); None when a class has fewer
    than two rows."""
    proba = oof_proba(kind, x, y, classes, folds, seed)
    return None if proba is None else proba.argmax(1)


def cross_validate(
    kind: str, x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], folds: int = 5, seed: int = 0
) -> float:
    """Out-of-fold balanced accuracy of ``kind`` (NaN when a class has fewer than two rows)."""
    pred = oof_predictions(kind, x, y, classes, folds, seed)
    return float("nan") if pred is None else balanced_accuracy(y, pred, len(classes))


def fit_typing(
    x: np.ndarray,
    labels: Sequence[str],
    *,
    names: Sequence[str] | None = None,
    kinds: Sequence[str] = ("prototype", "logistic"),
    folds: int = 5,
    seed: int = 0,
    margin: float = RADIUS_MARGIN,
    views: Views | None = None,
) -> TypingFit:
    """Fit a typing head on descriptors ``x`` ``(N, D)`` with type names ``labels``.

    Args:
        x: Raw descriptors (``describe`` rows).
        labels: Type name per row; every type needs at least one row (two for cross-validation).
        names: Descriptor entry names (default ``f0``, ``f1``, ...).
        kinds: Candidates (``prototype``, ``logistic``, ``trees``); with several, the best out-of-fold balanced
            accuracy wins, ties going to the earlier one.
        folds: Most cross-validation folds.
        seed: Fold shuffling and tree randomness.
        margin: Open-set radius margin (see :func:`open_set_radius`).
        views: Descriptors of extra views of the rows (flipped copies), trained on with their row; the
            out-of-fold figures (``cv``, ``oof``, the sure cut) are of the rows only.

    The head's ``sure_cut`` is :func:`confidence_cut` of the chosen kind's out-of-fold predictions
    (:data:`~sslinspect.defects.typing_head.NEVER_SURE` when they cannot be made).
    """
    x = np.asarray(x, np.float64)
    classes = tuple(sorted(set(labels)))
    if len(classes) < 2:
        raise ValueError("typing needs at least two labelled types")
    y = np.array([classes.index(lab) for lab in labels])
    names_t = tuple(names) if names is not None else tuple(f"f{i}" for i in range(x.shape[1]))
    proba = {k: oof_proba(k, x, y, classes, folds, seed, views) for k in kinds}
    cv = {k: float("nan") if p is None else balanced_accuracy(y, p.argmax(1), len(classes)) for k, p in proba.items()}
    best = max(kinds, key=lambda k: (np.nan_to_num(cv[k], nan=-1.0), -list(kinds).index(k)))
    x_fit, y_fit, groups = views.train_rows(x, y, np.arange(len(y))) if views is not None else (x, y, None)
    head = _fit_kind(best, x_fit, y_fit, classes, names_t, seed, margin, groups)
    p_best = proba[best]
    if p_best is None:
        return TypingFit(_replace(head, sure_cut=NEVER_SURE), cv, y)
    oof, conf = p_best.argmax(1), p_best.max(1)
    return TypingFit(_replace(head, sure_cut=confidence_cut(conf, oof == y)), cv, y, oof, conf, p_best)


def fit_levels(fits: Mapping[Any, TypingFit], shown_level: float, *, sure_agree: bool = False) -> TypingFit:
    """A ``levels`` head of per-cut fits (the same labels, the same folds: the same ``seed``), keyed by cut (each
    member head carries its own level and map).

    Its out-of-fold probabilities are the mean of the members' (each member's fold model ran on the regions cut
    at its level), which give its cross-validated balanced accuracy (``cv["levels"]``) and its confidence cut. With
    ``sure_agree`` a name is sure only where the members' top types agree: the cut is calibrated on those rows, and
    the fit's ``oof_confidence`` is 0 where they disagree (so its sure coverage counts what predict would call sure).
    """
    members = [f.head for f in fits.values()]
    first = next(iter(fits.values()))
    cv = {LEVELS_KIND: float("nan")}
    probas = [f.oof_proba for f in fits.values()]
    if first.y is None or any(p is None for p in probas):
        return TypingFit(TypingHead.of_levels(members, shown_level, NEVER_SURE, sure_agree=sure_agree), cv, first.y)
    stacked = np.stack(probas)  # type: ignore[arg-type]
    proba = stacked.mean(0)
    y, oof, conf = first.y, proba.argmax(1), proba.max(1)
    if sure_agree:
        conf = np.where(members_agree(stacked), conf, 0.0)
    cv[LEVELS_KIND] = balanced_accuracy(y, oof, len(members[0].classes))
    head = TypingHead.of_levels(members, shown_level, confidence_cut(conf, oof == y), sure_agree=sure_agree)
    return TypingFit(head, cv, y, oof, conf, proba)
