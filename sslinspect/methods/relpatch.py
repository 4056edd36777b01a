"""Relative patch position: given the centre tile of a 3×3 grid and one neighbour, predict which of the eight
neighbour positions it came from.

- [0] Doersch, Gupta & Efros, 2015, https://arxiv.org/abs/1505.05192
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.data.views import GridTiles
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, mlp
from sslinspect.methods.heads import tile_head

CENTER = 4
NEIGHBOURS = (0, 1, 2, 3, 5, 6, 7, 8)  # every tile but the centre, in order
TILE_DIM = 256


class RelPatch(SSLModel):
    """Shared backbone on each tile → per-tile layer → (centre, neighbour) pair classifier; all eight pairs of every
    image are used in each step."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the tile layer and the 8-way pair classifier."""
        super().__init__(backbone)
        self.tile_head = tile_head(self.feature_dim, TILE_DIM)
        self.classifier = mlp(2 * TILE_DIM, cfg.hidden_dim, len(NEIGHBOURS))

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Cross entropy over neighbour positions; tiles ``(N, 9, 3, t, t)`` come from the view maker."""
        tiles = views[0]
        n = tiles.shape[0]
        h = self.backbone(tiles.flatten(0, 1))
        f = self.tile_head(h).view(n, tiles.shape[1], -1)
        neighbours = torch.cat([f[:, :CENTER], f[:, CENTER + 1 :]], dim=1)  # slices: no index tensor to upload
        pairs = torch.cat([f[:, CENTER : CENTER + 1].expand_as(neighbours), neighbours], dim=-1)
        logits = self.classifier(pairs.flatten(0, 1))
        labels = torch.arange(len(NEIGHBOURS), device=h.device).repeat(n)
        return StepOutput(F.cross_entropy(logits.float(), labels), h.view(n, tiles.shape[1], -1)[:, CENTER].detach())


SPEC = MethodSpec(
    name="relpatch",
    make_model=RelPatch,
    make_views=lambda cfg: GridTiles(cfg.augment, cfg.image_size),
    optimizer="adamw",
    base_lr=2e-3,
)
