"""SimCLR: a projection head and NT-Xent over two augmented views.

- [0] SimCLR, 2020, https://arxiv.org/abs/2002.05709
"""

from __future__ import annotations

import torch
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, mlp
from sslinspect.methods.losses import NTXentLoss


class SimCLR(SSLModel):
    """Backbone → 2-layer projection → NT-Xent."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the projection head sized from ``cfg``."""
        super().__init__(backbone)
        self.projection = mlp(self.feature_dim, cfg.hidden_dim, cfg.proj_dim)
        self.criterion = NTXentLoss(cfg.temperature)

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Loss over the first two views."""
        n = views[0].shape[0]
        h = self.backbone(torch.cat(views[:2]))  # one pass: BatchNorm sees both views
        z = self.projection(h)
        return StepOutput(self.criterion(z[:n], z[n:], self.gather), h[:n].detach(), h[n:].detach())


SPEC = MethodSpec(name="simclr", make_model=SimCLR, optimizer="adamw", base_lr=2e-3)
