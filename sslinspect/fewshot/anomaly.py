"""k-NN anomaly score: mean cosine distance from an image's embedding to its k nearest neighbours in a memory
bank of (presumed good) unlabeled images. Held-out scores of the bank itself (leave-self-out) set the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, slots=True)
class KnnAnomaly:
    """A memory bank, ``k`` and the decision threshold on the score."""

    bank: np.ndarray  # (M, D) float32, L2-normalised
    k: int
    threshold: float

    def score(self, x: np.ndarray, *, exclude_self: bool = False) -> np.ndarray:
        """Anomaly scores of L2-normalised ``x``; ``exclude_self`` when ``x`` is the bank itself (leave-self-out)."""
        return knn_scores(x, self.bank, self.k, exclude_self=exclude_self)


def knn_scores(x: np.ndarray, bank: np.ndarray, k: int, *, exclude_self: bool = False, chunk: int = 2048) -> np.ndarray:
    """``1 − mean of the top-k cosine similarities`` of each row of ``x`` against ``bank`` (chunked: bounded memory)."""
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
