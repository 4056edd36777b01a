"""Barlow Twins: decorrelate embedding dimensions while making the two views agree.

- [0] Barlow Twins, 2021, https://arxiv.org/abs/2103.03230
"""

from __future__ import annotations

import torch
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, mlp
from sslinspect.methods.losses import BarlowTwinsLoss


class BarlowTwins(SSLModel):
    """Backbone → 3-layer projector → cross-correlation loss."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the projector (its output is ``hidden_dim`` wide, as in the paper)."""
        super().__init__(backbone)
        self.projection = mlp(self.feature_dim, cfg.hidden_dim, cfg.hidden_dim, layers=3)
        self.criterion = BarlowTwinsLoss()

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Loss over the first two views."""
        n = views[0].shape[0]
        h = self.backbone(torch.cat(views[:2]))
        z = self.projection(h)
        return StepOutput(self.criterion(z[:n], z[n:], self.gather), h[:n].detach(), h[n:].detach())


SPEC = MethodSpec(name="barlowtwins", make_model=BarlowTwins, optimizer="adamw", base_lr=2e-3)
