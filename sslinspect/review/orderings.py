"""Grid orderings (most unusual, most uncertain, by cluster, by similarity) and a 2-D map of the embeddings."""

from __future__ import annotations

from typing import Literal

import numpy as np

from sslinspect.errors import DataError
from sslinspect.review.analysis import Analysis

SortKey = Literal["file", "unusual", "uncertain", "cluster", "similar"]
SORT_KEYS: tuple[SortKey, ...] = ("file", "unusual", "uncertain", "cluster", "similar")


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
