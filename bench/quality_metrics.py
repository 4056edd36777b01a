"""Metrics and simple floors of the quality benchmark (numpy + OpenCV only).

Metrics: AUROC (Mann-Whitney, ties counted half), balanced accuracy, pixel AUROC of anomaly maps against masks.
Floors, fitted on the same unlabeled training images the model sees and scored on the same test images:

- ``raw_knn``: mean distance to the 5 nearest training images, raw pixels at 32×32 (grey, per-image standardised);
- ``texture_hist``: the same k-NN over a texture histogram (grey levels of the high-passed frame, gradient
  magnitudes and orientations, at two scales);
- ``patch_knn``: 8×8 mean-removed grey patches (stride 4) of the frame at 128 px against a bank of training patches;
  image score = the largest patch distance; the patch distances, averaged over the patches covering each 4×4 block,
  form an anomaly map aligned with the frame (so the floor has a pixel AUROC too).
"""

from __future__ import annotations

from collections.abc import Sequence

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
    maps = [_to_mask_size(m, k) for m, k in zip(maps, masks, strict=True)]  # once, not once per family
    out: dict[str, float] = {}
    for fam in sorted({lab for lab in labels if lab != good}):
        idx = [i for i, lab in enumerate(labels) if lab in (fam, good)]
        out[fam] = pixel_auroc([maps[i] for i in idx], [masks[i] for i in idx])
    return out


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
