"""Self-supervised losses, one class each, with their papers. Each has a runnable example.

Losses that compare against the rest of the batch take a ``gather`` (see :mod:`sslinspect.methods.base` for the
multi-process contract); the default is one process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.methods.base import LOCAL, Gather, full_precision


class NTXentLoss(nn.Module):
    """Normalised-temperature cross entropy (InfoNCE over the batch).

    Each of the 2N embeddings must pick its partner view among the other 2N−1 (2WN−1 with W processes).

    - [0] SimCLR, 2020, https://arxiv.org/abs/2002.05709

    Examples:
        >>> loss = NTXentLoss(temperature=0.5)
        >>> z0, z1 = torch.randn(8, 16), torch.randn(8, 16)
        >>> float(loss(z0, z1)) > 0
        True
    """

    def __init__(self, temperature: float = 0.2) -> None:
        """Set the softmax temperature."""
        super().__init__()
        self.temperature = temperature

    def forward(self, z0: torch.Tensor, z1: torch.Tensor, gather: Gather = LOCAL) -> torch.Tensor:
        """Symmetric loss for two ``(N, D)`` batches of projections (row i of each is one image); fp32 inside."""
        with full_precision(z0):
            z = F.normalize(torch.cat([gather(z0.float()), gather(z1.float())]), dim=1)  # (2M, D), M = W·N
            m = z.shape[0] // 2
            logits = (z @ z.T / self.temperature).fill_diagonal_(float("-inf"))
            idx = torch.arange(m, device=z.device)
            return F.cross_entropy(logits, torch.cat([idx + m, idx]))


class MoCoLoss(nn.Module):
    """InfoNCE of queries against momentum keys: the key of the same image is the positive, the keys of the other
    images of the (gathered) batch and an optional queue of past keys are the negatives.

    MoCo v2 uses it with a queue; MoCo v3 without, scaled by ``2τ`` as in its paper.

    - [0] MoCo v2, 2020, https://arxiv.org/abs/2003.04297
    - [1] MoCo v3, 2021, https://arxiv.org/abs/2104.02057

    Examples:
        >>> q, k = torch.randn(8, 16), torch.randn(8, 16)
        >>> float(MoCoLoss(0.2)(q, k, queue=torch.randn(32, 16))) > 0
        True
    """

    def __init__(self, temperature: float = 0.2, *, scale: float = 1.0) -> None:
        """Set the temperature and a constant factor on the loss (MoCo v3: ``2τ``)."""
        super().__init__()
        self.temperature = temperature
        self.scale = scale

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        gather: Gather = LOCAL,
        queue: torch.Tensor | None = None,
        queue_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss for queries ``q`` and keys ``k`` ``(N, D)`` (keys get no gradient); fp32 inside.

        ``queue`` is ``(K, D)``; ``queue_valid`` (bool ``(K,)``, optional) marks the entries filled so far, the
        others are left out (a fixed shape whatever the fill: no recompilation under ``torch.compile``).
        """
        with full_precision(q):
            q = F.normalize(gather(q.float()), dim=1)
            keys = F.normalize(gather(k.detach().float()), dim=1)
            logits = q @ keys.T / self.temperature
            if queue is not None and queue.shape[0]:
                neg = q @ F.normalize(queue.float(), dim=1).T / self.temperature
                if queue_valid is not None:
                    neg = neg.masked_fill(~queue_valid, float("-inf"))
                logits = torch.cat([logits, neg], dim=1)
            return self.scale * F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))


class NegativeCosineLoss(nn.Module):
    """Negative cosine similarity between predictions and (stop-gradient) targets, symmetrised by the caller.

    Returns ``2 − 2·cos`` averaged, which is BYOL's normalised MSE.

    - [0] BYOL, 2020, https://arxiv.org/abs/2006.07733

    Examples:
        >>> p = torch.randn(4, 8)
        >>> abs(round(float(NegativeCosineLoss()(p, p)), 4))
        0.0
    """

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Loss for predictions ``p`` against targets ``z`` (gradients do not flow into ``z``); fp32 inside."""
        with full_precision(p):
            return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=-1)).mean()


class BarlowTwinsLoss(nn.Module):
    """Cross-correlation of the two views' standardised embeddings pushed to the identity.

    With several processes the statistics are taken over the gathered batch; every process then computes the same
    global loss (the gradient contract of :mod:`sslinspect.methods.base` still holds).

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

    def forward(self, z0: torch.Tensor, z1: torch.Tensor, gather: Gather = LOCAL) -> torch.Tensor:
        """Loss for two ``(N, D)`` batches; fp32 inside."""
        with full_precision(z0):
            z0, z1 = gather(z0.float()), gather(z1.float())
            n, d = z0.shape
            # standardise each dimension over the batch as the paper's affine-free BatchNorm does (biased variance)
            z0 = (z0 - z0.mean(0)) / (z0.var(0, unbiased=False) + 1e-5).sqrt()
            z1 = (z1 - z1.mean(0)) / (z1.var(0, unbiased=False) + 1e-5).sqrt()
            c = (z0.T @ z1) / n
            on = (torch.diagonal(c) - 1).pow(2).sum()
            off = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
            lam = self.lambda_offdiag if self.lambda_offdiag is not None else 1.0 / d
            return on + lam * off


def cross_view_entropy(targets: list[torch.Tensor], logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Mean over pairs ``i ≠ j`` of ``−Σ targets[i] · log_softmax(logits[j] / T)``, averaged over samples.

    The swapped-prediction term shared by DINO and SwAV; ``targets[i]`` and ``logits[i]`` are views of the same
    crop, which is why those pairs are skipped. fp32 inside.
    """
    with full_precision(logits[0]):
        log_p = [F.log_softmax(z.float() / temperature, dim=-1) for z in logits]
        total = torch.zeros((), device=logits[0].device)
        pairs = 0
        for i, t in enumerate(targets):
            for j, lp in enumerate(log_p):
                if i != j:
                    total = total - (t.float() * lp).sum(-1).mean()
                    pairs += 1
        return total / pairs


class DINOLoss(nn.Module):
    """Self-distillation: the student's softmax over prototypes matches the teacher's centred, sharpened softmax.

    The teacher sees only the global crops; the centre is an EMA of the teacher's mean output (over the gathered
    batch), which with sharpening prevents collapse.

    - [0] DINO, 2021, https://arxiv.org/abs/2104.14294

    Examples:
        >>> loss = DINOLoss(out_dim=16)
        >>> t = [torch.randn(4, 16), torch.randn(4, 16)]
        >>> s = [torch.randn(4, 16) for _ in range(4)]
        >>> float(loss(s, t, teacher_temp=0.04)) > 0
        True
    """

    center: torch.Tensor

    def __init__(self, out_dim: int, *, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        """Set the output width, the student temperature and the centre's EMA momentum."""
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(
        self, student: list[torch.Tensor], teacher: list[torch.Tensor], teacher_temp: float, gather: Gather = LOCAL
    ) -> torch.Tensor:
        """Loss for student outputs of all crops (global crops first) and teacher outputs of the global crops.

        Updates the centre when the module is in training mode. fp32 inside.
        """
        with full_precision(teacher[0]):
            targets = [F.softmax((t.detach().float() - self.center) / teacher_temp, dim=-1) for t in teacher]
        loss = cross_view_entropy(targets, student, self.student_temp)
        if self.training:
            self.update_center(teacher, gather)
        return loss

    @torch.no_grad()
    def update_center(self, teacher: list[torch.Tensor], gather: Gather = LOCAL) -> None:
        """EMA of the teacher's batch-mean output."""
        batch_center = gather(torch.cat(teacher).float()).mean(0, keepdim=True)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)


@torch.no_grad()
def sinkhorn(
    scores: torch.Tensor, *, epsilon: float = 0.05, iterations: int = 3, gather: Gather = LOCAL
) -> torch.Tensor:
    """Sinkhorn-Knopp: soft codes ``(N, K)`` that spread the (gathered) batch equally over the K prototypes.

    Each row of the result sums to 1. Sums over the batch are taken over all processes. fp32 inside.
    """
    with full_precision(scores):
        return _sinkhorn(scores, epsilon, iterations, gather)


def _sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int, gather: Gather) -> torch.Tensor:
    k = scores.shape[1]
    s = scores.float() / epsilon
    q = torch.exp(s - gather(s.amax().view(1)).amax())  # a common shift for every process: exact after normalising
    b = gather.world_size * q.shape[0]  # global batch size
    q = q / gather(q.sum().view(1)).sum()
    for _ in range(iterations):
        q = q / gather(q).sum(0, keepdim=True) / k  # every prototype gets 1/K of the mass
        q = q / q.sum(1, keepdim=True) / b  # every sample gets 1/B
    return q * b


class SwAVLoss(nn.Module):
    """Swapped prediction: the Sinkhorn code of one global crop is predicted from every other crop.

    - [0] SwAV, 2020, https://arxiv.org/abs/2006.09882

    Examples:
        >>> scores = [torch.randn(8, 10) for _ in range(3)]
        >>> float(SwAVLoss()(scores[:2], scores[2:])) > 0
        True
    """

    def __init__(self, temperature: float = 0.1, *, epsilon: float = 0.05, iterations: int = 3) -> None:
        """Set the prediction temperature and the Sinkhorn parameters."""
        super().__init__()
        self.temperature = temperature
        self.epsilon = epsilon
        self.iterations = iterations

    def forward(
        self, global_scores: list[torch.Tensor], local_scores: list[torch.Tensor] | None = None, gather: Gather = LOCAL
    ) -> torch.Tensor:
        """Loss for prototype scores (cosines) ``(N, K)`` of the global crops and of the optional local crops."""
        codes = [
            sinkhorn(s.detach(), epsilon=self.epsilon, iterations=self.iterations, gather=gather) for s in global_scores
        ]
        return cross_view_entropy(codes, [*global_scores, *(local_scores or [])], self.temperature)
