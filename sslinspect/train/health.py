"""Label-free health signals of a self-supervised run, computed from a batch of backbone features, and the k-NN
monitor that joins them once the project has labels.

- ``emb_std``: mean per-dimension std of L2-normalised features, times √D. About 1 for spread-out features, → 0
  when the representation collapses to a point (the collapse detector, as in SimSiam's paper).
- ``eff_rank``: effective rank (exponential of the entropy of the normalised singular values), RankMe-style;
  a collapse to a few dimensions shows as a drop.
- ``alignment`` / ``uniformity`` (Wang & Isola, 2020): how close two views of one image land (lower is better) and
  how evenly the images spread on the sphere (lower is better); needs the second view's features.
- ``knn_acc``: balanced accuracy of leave-one-out k-NN on the labelled images' embeddings (lightly's
  ``knn_predict`` vote), computed at epoch end when at least two classes have two labels each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.model.embed import embed_images

COLLAPSE_STD = 0.05
KNN_K = 5
KNN_TEMPERATURE = 0.1


@torch.no_grad()
def embedding_std(features: torch.Tensor) -> float:
    """√D · mean std per dimension of L2-normalised ``(N, D)`` features."""
    z = F.normalize(features.float(), dim=1)
    return float(z.std(0).mean()) * math.sqrt(z.shape[1])


@torch.no_grad()
def effective_rank(features: torch.Tensor) -> float:
    """Effective rank of centred ``(N, D)`` features (between 1 and min(N, D))."""
    z = features.float()
    z = z - z.mean(0, keepdim=True)
    s = torch.linalg.svdvals(z)
    p = s / s.sum().clamp(min=1e-12)
    entropy = -(p * torch.log(p.clamp(min=1e-12))).sum()
    return float(torch.exp(entropy))


@torch.no_grad()
def alignment_uniformity(f0: torch.Tensor, f1: torch.Tensor, t: float = 2.0) -> tuple[float, float]:
    """Wang & Isola (2020) alignment (lower = views agree) and uniformity (lower = spread on the sphere)."""
    z0, z1 = F.normalize(f0.float(), dim=1), F.normalize(f1.float(), dim=1)
    align = (z0 - z1).norm(dim=1).pow(2).mean()
    sq = torch.pdist(z0).pow(2)
    uniform = torch.log(torch.exp(-t * sq).mean().clamp(min=1e-12))
    return float(align), float(uniform)


def health_metrics(features: torch.Tensor, features2: torch.Tensor | None = None) -> dict[str, float]:
    """The per-interval health metrics reported next to the loss (at report time only: they synchronise).

    Non-finite features give NaN metrics (``svdvals`` would raise a ``LinAlgError`` that hides the real problem).
    """
    if not bool(torch.isfinite(features).all()) or (
        features2 is not None and not bool(torch.isfinite(features2).all())
    ):
        nan = {"emb_std": math.nan, "eff_rank": math.nan}
        return nan if features2 is None else {**nan, "alignment": math.nan, "uniformity": math.nan}
    out = {"emb_std": embedding_std(features), "eff_rank": effective_rank(features)}
    if features2 is not None and features2.shape == features.shape:
        out["alignment"], out["uniformity"] = alignment_uniformity(features, features2)
    return out


def collapse_message(emb_std: float) -> str:
    """The one-line collapse warning a user sees."""
    return (
        f"possible representation collapse: embedding std {emb_std:.3f} (features are becoming identical; "
        "try a lower learning rate, stronger augmentations or another method)"
    )


# -- k-NN on labels -------------------------------------------------------------------------------------------------
def knn_predict(
    query: np.ndarray,
    bank: np.ndarray,
    bank_labels: np.ndarray,
    n_classes: int,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    exclude_self: bool = False,
) -> np.ndarray:
    """Class scores ``(N, C)`` of L2-normalised ``query`` rows from their k most similar ``bank`` rows.

    Each neighbour votes for its class with weight ``exp(cos / temperature)`` (lightly's ``knn_predict``). With
    ``exclude_self`` the query *is* the bank and a row never votes for itself (leave-one-out).
    """
    sim = query @ bank.T
    if exclude_self:
        np.fill_diagonal(sim, -np.inf)
    k = max(1, min(k, bank.shape[0] - int(exclude_self)))
    idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    weights = np.exp(np.take_along_axis(sim, idx, axis=1) / temperature)
    scores = np.zeros((len(query), n_classes))
    np.add.at(scores, (np.arange(len(query))[:, None], bank_labels[idx]), weights)
    return scores


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y``."""
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


@dataclass(frozen=True, slots=True)
class LabelledSet:
    """The labelled images usable for k-NN: cache rows, class indices and class names."""

    rows: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]


def labelled_set(ids: Sequence[int], labels: Mapping[int, str], *, min_per_class: int = 2) -> LabelledSet | None:
    """Cache rows of labelled images whose class has ``min_per_class`` labels; None unless ≥ 2 such classes."""
    row_of = {int(i): k for k, i in enumerate(ids)}
    pairs = [(row_of[i], lab) for i, lab in labels.items() if i in row_of]
    counts: dict[str, int] = {}
    for _, lab in pairs:
        counts[lab] = counts.get(lab, 0) + 1
    classes = tuple(sorted(c for c, n in counts.items() if n >= min_per_class))
    if len(classes) < 2:
        return None
    kept = sorted((r, classes.index(lab)) for r, lab in pairs if lab in classes)
    return LabelledSet(np.array([r for r, _ in kept]), np.array([c for _, c in kept]), classes)


class KnnMonitor:
    """Leave-one-out k-NN balanced accuracy of the current backbone on the labelled images (epoch-end metric)."""

    def __init__(self, images: np.ndarray, labelled: LabelledSet, *, k: int = KNN_K) -> None:
        """Keep the labelled images (``uint8 (N, S, S, 3)``, copied out of the cache once)."""
        self.images = np.ascontiguousarray(images[labelled.rows])
        self.labelled = labelled
        self.k = k

    def __call__(self, backbone: nn.Module, device: torch.device) -> float:
        """Embed the labelled images (eval mode, training mode restored) and score leave-one-out k-NN."""
        was_training = backbone.training
        try:
            emb = embed_images(backbone, self.images, device=device, batch_size=128)
        finally:
            backbone.train(was_training)
        y = self.labelled.y
        scores = knn_predict(emb, emb, y, len(self.labelled.classes), k=self.k, exclude_self=True)
        return balanced_accuracy(y, scores.argmax(1))
