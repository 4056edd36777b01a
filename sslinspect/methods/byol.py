"""BYOL: an online network with a predictor regresses a momentum (EMA) target network's projection.

- [0] BYOL, 2020, https://arxiv.org/abs/2006.07733
"""

from __future__ import annotations

import torch
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, ema_step, mlp, momentum_copy
from sslinspect.methods.losses import NegativeCosineLoss


class BYOL(SSLModel):
    """Online backbone+projector+predictor; target backbone+projector updated by EMA."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build heads and the momentum target from ``cfg``."""
        super().__init__(backbone)
        self.projection = mlp(self.feature_dim, cfg.hidden_dim, cfg.proj_dim)
        self.prediction = mlp(cfg.proj_dim, cfg.hidden_dim, cfg.proj_dim)
        self.target_backbone = momentum_copy(backbone)
        self.target_projection = momentum_copy(self.projection)
        self.base_momentum = cfg.ema_momentum
        self.criterion = NegativeCosineLoss()

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Symmetrised loss: each view's prediction against the other view's target."""
        n = views[0].shape[0]
        x = torch.cat(views[:2])
        h = self.backbone(x)
        p = self.prediction(self.projection(h))
        with torch.no_grad():
            t = self.target_projection(self.target_backbone(x))
        loss = 0.5 * (self.criterion(p[:n], t[n:]) + self.criterion(p[n:], t[:n]))
        return StepOutput(loss, h[:n].detach(), h[n:].detach())

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """EMA-update the target with BYOL's cosine momentum schedule."""
        pairs = [(self.target_backbone, self.backbone), (self.target_projection, self.projection)]
        ema_step(pairs, self.base_momentum, progress)


SPEC = MethodSpec(name="byol", make_model=BYOL, optimizer="adamw", base_lr=2e-3)
