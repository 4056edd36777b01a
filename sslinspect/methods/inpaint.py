"""Context encoder: hide a random square of the image, encode the rest, reconstruct the image from the feature.

The loss is weighted towards the hidden square (the context part only keeps the decoder honest). The paper's
adversarial term is left out: it sharpens the inpainting, not the features.

- [0] Context Encoders, 2016, https://arxiv.org/abs/1604.07379
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.data.views import OneView
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput
from sslinspect.methods.heads import ImageDecoder

HOLE = 0.5  # side of the hidden square as a share of the image side (a quarter of the area, as in [0])
HOLE_WEIGHT = 0.9
RECON_SIZE = 32


def random_square_mask(n: int, size: int, side: int, device: torch.device) -> torch.Tensor:
    """``(N, 1, size, size)`` masks, 1 inside one randomly placed ``side × side`` square per image."""
    top = torch.randint(0, size - side + 1, (n, 1, 1, 1), device=device)
    left = torch.randint(0, size - side + 1, (n, 1, 1, 1), device=device)
    r = torch.arange(size, device=device)
    inside_y = (r.view(1, 1, -1, 1) >= top) & (r.view(1, 1, -1, 1) < top + side)
    inside_x = (r.view(1, 1, 1, -1) >= left) & (r.view(1, 1, 1, -1) < left + side)
    return (inside_y & inside_x).float()


class Inpaint(SSLModel):
    """Backbone on the masked image (hole filled with the mean, 0 after normalisation) → pooled feature →
    :class:`~sslinspect.methods.heads.ImageDecoder` → 32×32 reconstruction compared with the downscaled view."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the decoder."""
        super().__init__(backbone)
        self.decoder = ImageDecoder(self.feature_dim)

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Weighted MSE of the reconstruction, mostly inside the hole."""
        x = views[0]
        n, size = x.shape[0], x.shape[-1]
        mask = random_square_mask(n, size, round(size * HOLE), x.device)
        h = self.backbone(x * (1 - mask))
        recon = self.decoder(h).float()
        target = F.adaptive_avg_pool2d(x.float(), RECON_SIZE)
        m = F.adaptive_avg_pool2d(mask, RECON_SIZE)
        err = (recon - target).pow(2).mean(1, keepdim=True)
        hole = (err * m).sum() / m.sum().clamp(min=1.0)
        context = (err * (1 - m)).sum() / (1 - m).sum().clamp(min=1.0)
        return StepOutput(HOLE_WEIGHT * hole + (1 - HOLE_WEIGHT) * context, h.detach())


SPEC = MethodSpec(
    name="inpaint",
    make_model=Inpaint,
    make_views=lambda cfg: OneView(cfg.augment, cfg.image_size),
    optimizer="adamw",
    base_lr=2e-3,
)
