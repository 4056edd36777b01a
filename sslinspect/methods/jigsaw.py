"""Jigsaw puzzles: shuffle 3×3 tiles by one of a fixed set of permutations and predict which.

- [0] Jigsaw, 2016, https://arxiv.org/abs/1603.09246
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.data.views import GridTiles
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, mlp
from sslinspect.methods.heads import tile_head

PERMUTATIONS = 100
TILES = 9
TILE_DIM = 256


def jigsaw_permutations(count: int = PERMUTATIONS, tiles: int = TILES, seed: int = 0, pool: int = 5000) -> np.ndarray:
    """``count`` permutations of ``tiles`` chosen greedily for maximal minimum Hamming distance (as in [0]) from a
    seeded random pool; deterministic, so every run and checkpoint uses the same classes."""
    rng = np.random.default_rng(seed)
    cands = np.stack([rng.permutation(tiles) for _ in range(pool)])
    chosen = [0]
    dist = (cands != cands[0]).sum(1)
    for _ in range(count - 1):
        best = int(dist.argmax())
        chosen.append(best)
        dist = np.minimum(dist, (cands != cands[best]).sum(1))
    return cands[chosen]


class Jigsaw(SSLModel):
    """Shared backbone on each tile → per-tile layer → concatenation in shuffled order → permutation classifier."""

    perms: torch.Tensor

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the tile layer and the classifier over :data:`PERMUTATIONS` permutations."""
        super().__init__(backbone)
        self.register_buffer("perms", torch.from_numpy(jigsaw_permutations()).long())
        self.tile_head = tile_head(self.feature_dim, TILE_DIM)
        self.classifier = mlp(TILES * TILE_DIM, cfg.hidden_dim, PERMUTATIONS)

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Cross entropy of the permutation index; tiles ``(N, 9, 3, t, t)`` come from the view maker."""
        tiles = views[0]
        n = tiles.shape[0]
        label = torch.randint(0, self.perms.shape[0], (n,), device=tiles.device)
        shuffled = tiles[torch.arange(n, device=tiles.device).unsqueeze(1), self.perms[label]]
        h = self.backbone(shuffled.flatten(0, 1))
        logits = self.classifier(self.tile_head(h).view(n, -1))
        return StepOutput(F.cross_entropy(logits.float(), label), h.view(n, TILES, -1).mean(1).detach())


SPEC = MethodSpec(
    name="jigsaw",
    make_model=Jigsaw,
    make_views=lambda cfg: GridTiles(cfg.augment, cfg.image_size),
    optimizer="adamw",
    base_lr=2e-3,
)
