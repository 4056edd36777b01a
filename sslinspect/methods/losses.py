"""Self-supervised losses, one class each, with their papers. Each has a runnable example."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class NTXentLoss(nn.Module):
    """Normalised-temperature cross entropy (InfoNCE over the batch).

    Each of the 2N embeddings must pick its partner view among the other 2N−1.

    - [0] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    Examples:
        >>> loss = NTXentLoss(temperature=0.5)
        >>> z0, z1 = torch.randn(8, 16), torch.randn(8, 16)
        >>> float(loss(z0, z1)) > 0
        True
    """

    def __init__(self, temperature: float = 0.2, gather: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Set the softmax temperature; ``gather`` (set by the engine under DDP) collects all ranks' batches."""
        super().__init__()
        self.temperature = temperature
        self.gather = gather

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        """Symmetric loss for two ``(N, D)`` batches of projections."""
        if self.gather is not None:  # negatives from every rank: the loss of the global batch
            z0, z1 = self.gather(z0), self.gather(z1)
        n = z0.shape[0]
        z = F.normalize(torch.cat([z0, z1]), dim=1)
        sim = z @ z.T / self.temperature
        sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return F.cross_entropy(sim.float(), target)


class NegativeCosineLoss(nn.Module):
    """Negative cosine similarity between predictions and (stop-gradient) targets, symmetrised by the caller.

    Returns ``2 − 2·cos`` averaged, which is BYOL's normalised MSE.

    - [0] BYOL, 2020, https://arxiv.org/abs/2006.07733

    Examples:
        >>> p = torch.randn(4, 8)
        >>> round(float(NegativeCosineLoss()(p, p)), 4)
        0.0
    """

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Loss for predictions ``p`` against targets ``z`` (gradients do not flow into ``z``)."""
        return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()


class BarlowTwinsLoss(nn.Module):
    """Cross-correlation of the two views' standardised embeddings pushed to the identity.

    - [0] Barlow Twins, 2021, https://arxiv.org/abs/2103.03230

    Examples:
        >>> z = torch.randn(32, 8)
        >>> float(BarlowTwinsLoss()(z, z)) < float(BarlowTwinsLoss()(z, torch.randn(32, 8)))
        True
    """

    def __init__(self, lambda_offdiag: float | None = None) -> None:
        """``lambda_offdiag`` weighs redundancy reduction (default ``1/D``)."""
        super().__init__()
        self.lambda_offdiag = lambda_offdiag

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        """Loss for two ``(N, D)`` batches."""
        n, d = z0.shape
        z0 = (z0 - z0.mean(0)) / (z0.std(0) + 1e-5)
        z1 = (z1 - z1.mean(0)) / (z1.std(0) + 1e-5)
        c = (z0.T.float() @ z1.float()) / n
        on = (torch.diagonal(c) - 1).pow(2).sum()
        off = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
        lam = self.lambda_offdiag if self.lambda_offdiag is not None else 1.0 / d
        return on + lam * off
