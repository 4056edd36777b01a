"""Label-free health signals of a self-supervised run, computed from a batch of backbone features.

- ``emb_std``: mean per-dimension std of L2-normalised features, times √D. About 1 for spread-out features, → 0
  when the representation collapses to a point (the collapse detector, as in SimSiam's paper).
- ``eff_rank``: effective rank (exponential of the entropy of the normalised singular values), RankMe-style;
  a collapse to a few dimensions shows as a drop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

COLLAPSE_STD = 0.05


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


def health_metrics(features: torch.Tensor) -> dict[str, float]:
    """The per-interval health metrics reported next to the loss."""
    return {"emb_std": embedding_std(features), "eff_rank": effective_rank(features)}
