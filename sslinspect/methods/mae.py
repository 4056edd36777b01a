"""MAE: masked autoencoder; a ViT encodes a random 25 % of the patches and a light decoder reconstructs the rest.

The backbone stays a plain feature extractor: ``backbone(x)`` on the whole, unmasked image gives ``(B, D)`` (the
mean of its patch tokens).

- [0] MAE, 2021, https://arxiv.org/abs/2111.06377
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vision_transformer import EncoderBlock

from sslinspect.config import PretrainConfig
from sslinspect.data.views import OneView
from sslinspect.errors import ConfigError
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput

DECODER_DIM = 128
DECODER_DEPTH = 2
DECODER_HEADS = 4


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``(N, C, H, W)`` → ``(N, L, p·p·C)`` patches in row-major order (the order of the ViT's tokens)."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)


def random_masking(n: int, length: int, keep: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample random subsets: indices of the ``keep`` visible tokens ``(N, keep)`` and the mask ``(N, L)``
    (1 = hidden), by argsort of uniform noise."""
    ids = torch.rand(n, length, device=device).argsort(dim=1)
    mask = torch.ones(n, length, device=device)
    mask.scatter_(1, ids[:, :keep], 0.0)
    return ids[:, :keep], mask


class MAE(SSLModel):
    """ViT encoder on visible patches; decoder (mask tokens, position embeddings, 2 blocks) predicts the pixels of
    the hidden patches; loss = MSE on hidden patches against per-patch normalised pixels."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the decoder for ``cfg.image_size`` images.

        Raises:
            ConfigError: if the backbone is not a ViT.
        """
        super().__init__(backbone)
        if not hasattr(backbone, "patch_tokens"):
            raise ConfigError(f"pretrain.backbone: mae needs a ViT backbone (vit_tiny, vit_small); got {cfg.backbone}")
        self.patch = int(backbone.patch_size)  # type: ignore[arg-type]
        self.length = (cfg.image_size // self.patch) ** 2
        self.keep = max(1, round(self.length * (1 - cfg.mask_ratio)))
        self.decoder_embed = nn.Linear(self.feature_dim, DECODER_DIM)
        self.mask_token = nn.Parameter(torch.randn(1, 1, DECODER_DIM) * 0.02)
        self.decoder_pos = nn.Parameter(torch.randn(1, 1 + self.length, DECODER_DIM) * 0.02)
        self.decoder = nn.Sequential(
            *[EncoderBlock(DECODER_HEADS, DECODER_DIM, 4 * DECODER_DIM, 0.0, 0.0) for _ in range(DECODER_DEPTH)]
        )
        self.decoder_norm = nn.LayerNorm(DECODER_DIM)
        self.decoder_pred = nn.Linear(DECODER_DIM, self.patch * self.patch * 3)

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Reconstruction loss of one masked view."""
        x = views[0]
        n = x.shape[0]
        tokens = self.backbone.patch_tokens(x)  # type: ignore[operator]
        keep_ids, mask = random_masking(n, tokens.shape[1], self.keep, x.device)
        visible = tokens.gather(1, keep_ids.unsqueeze(-1).expand(-1, -1, tokens.shape[2]))
        enc = self.backbone.encode(visible)  # type: ignore[operator]
        dec = self.decoder_embed(enc)
        # scatter the visible tokens back to their places; mask tokens everywhere else
        full = self.mask_token.to(dec.dtype).expand(n, self.length, -1).clone()  # dec is bf16 under autocast
        full = full.scatter(1, keep_ids.unsqueeze(-1).expand(-1, -1, DECODER_DIM), dec[:, 1:])
        full = torch.cat([dec[:, :1], full], dim=1) + self.decoder_pos
        pred = self.decoder_pred(self.decoder_norm(self.decoder(full)))[:, 1:]
        target = patchify(x, self.patch)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        err = (pred.float() - target.float()).pow(2).mean(-1)
        loss = (err * mask).sum() / mask.sum()
        return StepOutput(loss, enc[:, 1:].mean(1).detach())  # the backbone's feature: mean of patch tokens


SPEC = MethodSpec(
    name="mae",
    make_model=MAE,
    make_views=lambda cfg: OneView(cfg.augment, cfg.image_size),
    optimizer="adamw",
    base_lr=1.5e-3,
    weight_decay=0.05,
)
