"""Heads shared by several methods: cosine prototypes (DINO, SwAV) and a small image decoder (inpainting)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.methods.base import full_precision


class CosinePrototypes(nn.Module):
    """``K`` learnable prototypes on the unit sphere; the scores of an embedding are its cosines to them.

    This is DINO's weight-normalised last layer with the norm fixed to 1, and SwAV's normalised prototypes.
    While ``frozen`` (the first epoch, as both papers do) the prototypes get zero gradient.

    Examples:
        >>> head = CosinePrototypes(8, 5)
        >>> head(torch.randn(3, 8)).shape
        torch.Size([3, 5])
    """

    def __init__(self, dim: int, k: int) -> None:
        """Make ``k`` prototypes of dimension ``dim``."""
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, dim) / dim**0.5)
        self.frozen = False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Cosine scores ``(N, K)`` of ``(N, dim)`` embeddings, in fp32 (autocast is switched off inside)."""
        # `0 * weight` keeps the parameter in the graph with a zero gradient (DDP expects every parameter to get one)
        w = self.weight.detach() + 0 * self.weight if self.frozen else self.weight
        with full_precision(z):
            return F.normalize(z.float(), dim=1) @ F.normalize(w.float(), dim=1).T


class ImageDecoder(nn.Module):
    """Global feature ``(N, D)`` → image ``(N, 3, 32, 32)``: a linear layer to a 4×4 map, then three
    upsample-conv-BN-ReLU stages (the context encoder's decoder, reading from the pooled feature)."""

    def __init__(self, in_dim: int, width: int = 128) -> None:
        """Decode ``in_dim`` features with ``width`` channels at 4×4."""
        super().__init__()
        self.width = width
        self.fc = nn.Linear(in_dim, width * 16)

        def up(cin: int, cout: int) -> nn.Module:
            return nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        self.up = nn.Sequential(up(width, width), up(width, width // 2), up(width // 2, width // 4))
        self.out = nn.Conv2d(width // 4, 3, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Decode features to a 32×32 image in normalised pixel units."""
        x = F.relu(self.fc(h)).view(h.shape[0], self.width, 4, 4)
        return self.out(self.up(x))


def tile_head(in_dim: int, out_dim: int = 256) -> nn.Sequential:
    """The per-tile layer of jigsaw and relative-position models, shared by every tile (siamese)."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(inplace=True))
