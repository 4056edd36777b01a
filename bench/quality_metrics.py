"""Metrics and simple floors of the quality benchmark (numpy + OpenCV only).

Metrics: AUROC (Mann-Whitney, ties counted half), balanced accuracy, pixel AUROC of anomaly maps against masks, and
the per-region overlap (AUPRO, MVTec AD's map metric: every defect region counts the same, whatever its area).
Floors, fitted on the same unlabeled training images the model sees and scored on the same test images:

- ``raw_knn``: mean distance to the 5 nearest training images, raw pixels at 32×32 (grey, per-image standardised);
- ``texture_hist``: the same k-NN over a texture histogram (grey levels of the high-passed frame, gradient
  magnitudes and orientations, at two scales);
- ``patch_knn``: 8×8 mean-removed grey patches (stride 4) of the frame at 128 px against a bank of training patches;
  image score = the largest patch distance; the patch distances, averaged over the patches covering each 4×4 block,
  form an anomaly map aligned with the frame (so the floor has a pixel AUROC too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def auroc(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the positives in ``labels`` (NaN when a class is missing)."""
    y = np.asarray(labels, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), np.float64)
    # average ranks over ties
    edges = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(s)]])
    avg = (starts + ends + 1) / 2.0  # 1-based mean rank of each tie group
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def per_family_auroc(
    truth: Sequence[str], score: np.ndarray, families: Sequence[str], good: str = "good"
) -> dict[str, float]:
    """Image AUROC of each of ``families``: that family's images against every ``good`` one (``truth`` per image)."""
    is_good = np.array([t == good for t in truth])
    out = {}
    for f in families:
        sel = np.array([t == f for t in truth])
        out[f] = auroc(np.r_[np.ones(sel.sum()), np.zeros(is_good.sum())], np.r_[score[sel], score[is_good]])
    return out


def recall(truth: Sequence[object], pred: Sequence[object], cls: object) -> float:
    """The share of ``truth``'s ``cls`` samples that ``pred`` calls ``cls`` (NaN when there are none)."""
    hits = [pi == cls for ti, pi in zip(truth, pred, strict=True) if ti == cls]
    return float(np.mean(hits)) if hits else float("nan")


def balanced_accuracy(truth: Sequence[str] | Sequence[bool], pred: Sequence[str] | Sequence[bool]) -> float:
    """Mean recall over the classes present in ``truth`` (NaN for no samples)."""
    t, p = list(truth), list(pred)
    classes = sorted(set(t), key=str)
    if not classes:
        return float("nan")
    return float(np.mean([recall(t, p, c) for c in classes]))


def _to_mask_size(m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Map ``m`` resized (bilinear) to mask ``k``'s size, as float32."""
    h, w = k.shape
    if m.shape == (h, w):
        return np.asarray(m, np.float32)
    return np.asarray(cv2.resize(np.asarray(m, np.float32), (w, h), interpolation=cv2.INTER_LINEAR), np.float32)


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """AUROC over all pixels of all images: each map is resized (bilinear) to its mask's size first."""
    scores = [_to_mask_size(m, k).ravel() for m, k in zip(maps, masks, strict=True)]
    return auroc(np.concatenate([np.asarray(k, bool).ravel() for k in masks]), np.concatenate(scores))


def pixel_auroc_per_family(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], labels: Sequence[str], good: str = "good"
) -> dict[str, float]:
    """Per defect family, :func:`pixel_auroc` over that family's images and every good image: which family the
    pooled figure loses on. A family with large masks weighs most in the pooled figure (a warp's mask is several
    times a scratch's)."""
    return _per_family(pixel_auroc, maps, masks, labels, good)


def _per_family(
    metric: Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], float],
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    labels: Sequence[str],
    good: str,
) -> dict[str, float]:
    """``metric`` per defect family over that family's images and every ``good`` one."""
    maps = [_to_mask_size(m, k) for m, k in zip(maps, masks, strict=True)]  # once, not once per family
    out: dict[str, float] = {}
    for fam in sorted({lab for lab in labels if lab != good}):
        idx = [i for i, lab in enumerate(labels) if lab in (fam, good)]
        out[fam] = metric([maps[i] for i in idx], [masks[i] for i in idx])
    return out


#: Integration limit of :func:`aupro` on the false-positive rate (MVTec AD's: 30 % of the defect-free pixels).
PRO_FPR_LIMIT = 0.3
#: Thresholds :func:`aupro` evaluates (evenly spaced in false-positive rate up to the limit).
PRO_STEPS = 300


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = PRO_FPR_LIMIT) -> float:
    """Area under the per-region overlap curve up to ``fpr_limit`` false-positive rate, divided by ``fpr_limit``
    (1 is perfect; a map of noise scores about ``fpr_limit / 2``). At each threshold, a defect region's overlap is the
    share of its pixels above it, and PRO is the mean over the regions (8-connected components of every mask); the
    false-positive rate is the share of the pixels outside every mask above it. Unlike pixel AUROC, a 20-pixel
    scratch weighs as much as a 5,000-pixel warp. Each map is resized (bilinear) to its mask's size first; NaN when
    there is no region or no defect-free pixel.

    - [0] Bergmann et al., The MVTec Anomaly Detection Dataset, IJCV 2021, https://doi.org/10.1007/s11263-020-01400-4
    """
    negatives: list[np.ndarray] = []
    regions: list[np.ndarray] = []
    for m, k in zip(maps, masks, strict=True):
        v, on = _to_mask_size(m, k), np.asarray(k, bool)
        negatives.append(v[~on])
        if on.any():
            n, comp = cv2.connectedComponents(on.astype(np.uint8), connectivity=8)
            regions.extend(np.sort(v[comp == i]) for i in range(1, n))
    neg = np.sort(np.concatenate(negatives))
    if not regions or neg.size == 0:
        return float("nan")
    # thresholds at the negatives' quantiles: false-positive rates 0 .. fpr_limit, evenly spaced
    want = np.linspace(0.0, fpr_limit, PRO_STEPS + 1)
    idx = np.clip(np.ceil((1.0 - want) * neg.size).astype(np.int64) - 1, 0, neg.size - 1)
    thresholds = neg[idx]
    fpr = 1.0 - np.searchsorted(neg, thresholds, side="right") / neg.size
    pro = np.mean([1.0 - np.searchsorted(r, thresholds, side="right") / r.size for r in regions], axis=0)
    # every threshold's rate is at most its target, so the curve is closed flat at exactly fpr_limit (ties can leave
    # the last step short of it)
    fpr, pro = np.r_[fpr, fpr_limit], np.r_[pro, pro[-1]]
    return float(np.trapezoid(pro, fpr) / fpr_limit)


def aupro_per_family(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], labels: Sequence[str], good: str = "good"
) -> dict[str, float]:
    """Per defect family, :func:`aupro` over that family's images and every good image."""
    return _per_family(aupro, maps, masks, labels, good)


# -- floors -----------------------------------------------------------------------------------------------------------
def _grey(img: np.ndarray) -> npt.NDArray[np.float32]:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    return np.asarray(g, np.float32) / 255.0


def _knn_score(train: np.ndarray, test: np.ndarray, k: int = 5) -> Array:
    """Mean Euclidean distance of each test row to its ``k`` nearest training rows."""
    ref_t = np.ascontiguousarray(np.asarray(train, np.float32).T * np.float32(-2.0))
    tt = (np.asarray(train, np.float32) ** 2).sum(1)
    k = min(k, len(train))
    out = []
    for i in range(0, len(test), 1024):
        q = np.asarray(test[i : i + 1024], np.float32)
        d2 = q @ ref_t  # ‖q‖² + ‖r‖² - 2 q·r, with ‖q‖² added after the selection
        d2 += tt[None, :]
        near = d2.min(1, keepdims=True) if k == 1 else np.partition(d2, k - 1, axis=1)[:, :k]
        out.append(np.sqrt(np.clip(near + (q**2).sum(1, keepdims=True), 0.0, None)).mean(1))
    return np.concatenate(out).astype(np.float64)


def raw_features(img: np.ndarray) -> npt.NDArray[np.float32]:
    """32×32 grey pixels, standardised per image."""
    g = cv2.resize(_grey(img), (32, 32), interpolation=cv2.INTER_AREA).ravel()
    return np.asarray((g - g.mean()) / (g.std() + 1e-6), np.float32)


def texture_features(img: np.ndarray) -> npt.NDArray[np.float32]:
    """Histograms of the high-passed grey levels, gradient magnitudes and orientations, at full and half scale."""
    feats = []
    g = _grey(img)
    for level in range(2):
        if level:
            g = np.asarray(cv2.pyrDown(g), np.float32)
        g = np.asarray((g - g.mean()) / (g.std() + 1e-6), np.float32)
        high = g - cv2.GaussianBlur(g, (0, 0), 4.0)
        gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
        mag, ang = np.hypot(gx, gy), np.arctan2(gy, gx) % np.pi
        feats.append(np.histogram(high, bins=24, range=(-3, 3))[0])
        feats.append(np.histogram(mag, bins=24, range=(0, 8))[0])
        feats.append(np.histogram(ang, bins=12, range=(0, np.pi), weights=mag)[0])
    v = np.concatenate([np.sqrt(f / (f.sum() + 1e-9)) for f in feats])  # Hellinger
    return np.asarray(v, np.float32)


PATCH_SIDE, PATCH_PX, PATCH_STRIDE = 128, 8, 4


def _patches(img: np.ndarray) -> npt.NDArray[np.float32]:
    g = cv2.resize(_grey(img), (PATCH_SIDE, PATCH_SIDE), interpolation=cv2.INTER_AREA)
    g = (g - g.mean()) / (g.std() + 1e-6)
    win = np.lib.stride_tricks.sliding_window_view(g, (PATCH_PX, PATCH_PX))[::PATCH_STRIDE, ::PATCH_STRIDE]
    p = win.reshape(win.shape[0], win.shape[1], -1)
    return np.asarray(p - p.mean(-1, keepdims=True), np.float32)


def patch_knn(
    train: Sequence[np.ndarray], test: Sequence[np.ndarray], *, bank: int = 10_000, seed: int = 0
) -> tuple[Array, list[npt.NDArray[np.float32]]]:
    """Image scores and anomaly maps (patch grid) of the patch k-NN floor."""
    rng = np.random.default_rng(seed)
    all_train = np.concatenate([_patches(im).reshape(-1, PATCH_PX * PATCH_PX) for im in train])
    ref = all_train[rng.choice(len(all_train), size=min(bank, len(all_train)), replace=False)]
    scores, maps = [], []
    for im in test:
        p = _patches(im)
        d = _knn_score(ref, p.reshape(-1, p.shape[-1]), k=1).reshape(p.shape[:2]).astype(np.float32)
        scores.append(float(d.max()))
        # each stride×stride block of the frame is covered by the 2×2 patches around it: their mean is its value
        padded = np.pad(d, 1, mode="edge")
        maps.append((padded[:-1, :-1] + padded[1:, :-1] + padded[:-1, 1:] + padded[1:, 1:]) / 4.0)
    return np.asarray(scores), maps


def floor_scores(train: Sequence[np.ndarray], test: Sequence[np.ndarray]) -> dict[str, Array]:
    """Image scores of the image-level floors (``raw_knn``, ``texture_hist``) for ``test``."""
    out = {}
    for name, fn in (("raw_knn", raw_features), ("texture_hist", texture_features)):
        out[name] = _knn_score(np.stack([fn(im) for im in train]), np.stack([fn(im) for im in test]))
    return out
