"""MoCo v3: query encoder with a predictor against a momentum key encoder, in-batch negatives, no queue.

- [0] MoCo v3, 2021, https://arxiv.org/abs/2104.02057
"""

from __future__ import annotations

import torch
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, ema_step, mlp, momentum_copy
from sslinspect.methods.losses import MoCoLoss


class MoCoV3(SSLModel):
    """Backbone → 3-layer projector → 2-layer predictor; momentum backbone + projector give the keys."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build heads and the momentum encoder from ``cfg``."""
        super().__init__(backbone)
        self.projection = mlp(self.feature_dim, cfg.hidden_dim, cfg.proj_dim, layers=3, last_bn=True)
        self.prediction = mlp(cfg.proj_dim, cfg.hidden_dim, cfg.proj_dim)
        self.key_backbone = momentum_copy(backbone)
        self.key_projection = momentum_copy(self.projection)
        self.base_momentum = cfg.ema_momentum
        self.criterion = MoCoLoss(cfg.temperature, scale=2 * cfg.temperature)

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """``ctr(q1, k2) + ctr(q2, k1)`` as in the paper."""
        n = views[0].shape[0]
        x = torch.cat(views[:2])
        h = self.backbone(x)
        q = self.prediction(self.projection(h))
        with torch.no_grad():
            k = self.key_projection(self.key_backbone(x))
        loss = self.criterion(q[:n], k[n:], self.gather) + self.criterion(q[n:], k[:n], self.gather)
        return StepOutput(loss, h[:n].detach(), h[n : 2 * n].detach())

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """EMA-update the momentum encoder (cosine schedule to 1)."""
        pairs = [(self.key_backbone, self.backbone), (self.key_projection, self.projection)]
        ema_step(pairs, self.base_momentum, progress)


SPEC = MethodSpec(name="mocov3", make_model=MoCoV3, optimizer="adamw", base_lr=2e-3)
