"""SwAV: online clustering; the Sinkhorn-balanced prototype code of one view is predicted from the other views.

- [0] SwAV, 2020, https://arxiv.org/abs/2006.09882
"""

from __future__ import annotations

import torch
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.data.views import MultiCrop
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, mlp
from sslinspect.methods.heads import CosinePrototypes
from sslinspect.methods.losses import SwAVLoss


class SwAV(SSLModel):
    """Backbone → 2-layer projector → cosine scores against ``num_prototypes`` prototypes; swapped prediction."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the projector, the prototypes and the loss from ``cfg``."""
        super().__init__(backbone)
        self.projection = mlp(self.feature_dim, cfg.hidden_dim, cfg.proj_dim)
        self.prototypes = CosinePrototypes(cfg.proj_dim, cfg.num_prototypes)
        self.criterion = SwAVLoss(temperature=0.1)

    def on_epoch_start(self, epoch: int, source: BatchSource) -> None:
        """Freeze the prototypes during the first epoch, as in the paper."""
        self.prototypes.frozen = epoch == 0

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Codes from the two global crops, predictions from every crop (local crops optional)."""
        n = views[0].shape[0]
        h = self.backbone(torch.cat(views[:2]))
        global_scores = list(self.prototypes(self.projection(h)).split(n))
        local_scores: list[torch.Tensor] = []
        if len(views) > 2:
            local_scores = list(self.prototypes(self.projection(self.backbone(torch.cat(views[2:])))).split(n))
        loss = self.criterion(global_scores, local_scores, self.gather)
        return StepOutput(loss, h[:n].detach(), h[n : 2 * n].detach())


SPEC = MethodSpec(
    name="swav",
    make_model=SwAV,
    make_views=lambda cfg: MultiCrop(cfg.augment, cfg.image_size, cfg.local_crops),
    optimizer="adamw",
    base_lr=2e-3,
)
