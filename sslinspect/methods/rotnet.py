"""RotNet: predict which of four 90° rotations an image was turned by.

Only meaningful when the parts have a fixed orientation in the images (see docs/methods.md); the augmentation's
flips and 90° turns are switched off because they would make the answer ambiguous.

- [0] RotNet, 2018, https://arxiv.org/abs/1803.07728
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.data.views import Rotations
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, mlp


class RotNet(SSLModel):
    """Backbone → 2-layer MLP → 4 rotation classes; all four rotations of every image in the same batch."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the rotation classifier."""
        super().__init__(backbone)
        self.classifier = mlp(self.feature_dim, cfg.hidden_dim, 4)

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Cross entropy over the rotations; view ``k`` is rotated by ``k·90°``."""
        n = views[0].shape[0]
        h = self.backbone(torch.cat(views))
        labels = torch.arange(len(views), device=h.device).repeat_interleave(n)
        return StepOutput(F.cross_entropy(self.classifier(h).float(), labels), h[:n].detach())


SPEC = MethodSpec(
    name="rotnet",
    make_model=RotNet,
    make_views=lambda cfg: Rotations(cfg.augment, cfg.image_size),
    optimizer="adamw",
    base_lr=2e-3,
)
