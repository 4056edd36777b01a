"""SimSiam: two views, a predictor and a stop-gradient; no negatives and no momentum encoder.

- [0] SimSiam, 2020, https://arxiv.org/abs/2011.10566
"""

from __future__ import annotations

import torch
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, mlp
from sslinspect.methods.losses import NegativeCosineLoss


class SimSiam(SSLModel):
    """Backbone → 3-layer projector (BN on its output) → bottleneck predictor; symmetrised negative cosine."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the projector (``hidden_dim`` wide) and the predictor (a quarter as wide inside)."""
        super().__init__(backbone)
        self.projection = mlp(self.feature_dim, cfg.hidden_dim, cfg.hidden_dim, layers=3, last_bn=True)
        self.prediction = mlp(cfg.hidden_dim, max(8, cfg.hidden_dim // 4), cfg.hidden_dim)
        self.criterion = NegativeCosineLoss()

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Each view's prediction against the other view's (stopped) projection."""
        n = views[0].shape[0]
        h = self.backbone(torch.cat(views[:2]))
        z = self.projection(h)
        p = self.prediction(z)
        loss = 0.5 * (self.criterion(p[:n], z[n:]) + self.criterion(p[n:], z[:n]))
        return StepOutput(loss, h[:n].detach(), h[n : 2 * n].detach())


SPEC = MethodSpec(name="simsiam", make_model=SimSiam, optimizer="sgd", base_lr=0.05, weight_decay=1e-4)
