"""Synthetic defects: the defect-aware self-supervised method. Random crops of the user's frames at native
resolution get synthetic defects painted on them (:mod:`sslinspect.methods.synthesis`), and a feature-pyramid
decoder on the backbone (:class:`~sslinspect.model.segnet.SegDecoder`) learns to outline them. After training,
the decoder's map is the anomaly map (:mod:`sslinspect.fewshot.segmap`): it finds local irregularities of the
texture that global SSL methods average away.

- [0] Zavrtanik et al., DRAEM, 2021, https://arxiv.org/abs/2108.07610 (discriminative segmentation, focal loss)
- [1] Schlüter et al., NSA, 2022, https://arxiv.org/abs/2109.15222 (soft targets)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.config import AugmentConfig, PretrainConfig
from sslinspect.defects.describe import KIND_FILLS, KIND_SHAPES
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput
from sslinspect.methods.synthesis import synthesize
from sslinspect.model.segnet import SegDecoder, feature_pyramid, pyramid_channels
from sslinspect.preprocess import normalize, to_unit_nchw

#: Focal loss focusing parameter (DRAEM uses 2): easy background pixels, the vast majority, weigh little.
FOCAL_GAMMA = 2.0
#: Weight of the soft Dice term, which keeps small defects from vanishing in the pixel average.
DICE_WEIGHT = 1.0
#: Weight of the kind term: which shape (:data:`KIND_SHAPES`) and which fill (:data:`KIND_FILLS`) each synthetic
#: defect has, told apart per pixel where the defect is. The kind head reads the decoder's features detached, so
#: this trains the head alone and never the map; the pooled kind probabilities describe a located defect.
KIND_WEIGHT = 0.5
#: Kind head outputs: the shape logits, then the fill logits.
KINDS = len(KIND_SHAPES) + len(KIND_FILLS)


def crop_size(cfg: PretrainConfig) -> int:
    """Side of the training crops: ``cfg.crop_size``, or half the frame (at least 64 px, at most the frame)."""
    if cfg.crop_size:
        return min(cfg.crop_size, cfg.image_size)
    return min(cfg.image_size, max(64, cfg.image_size // 2))


class NativeCrops:
    """One view: random ``crop × crop`` windows of the cached frames at native scale (no resizing, so a 1 px
    scratch stays 1 px), random flips and 90° turns, gentle brightness/contrast jitter; ``[0, 1]`` floats."""

    def __init__(self, cfg: AugmentConfig, image_size: int, crop: int) -> None:
        """Cut ``crop`` px windows out of ``image_size`` px frames."""
        self.cfg, self.image_size, self.crop = cfg, image_size, crop

    def __call__(self, images_u8: torch.Tensor) -> list[torch.Tensor]:
        """``[crops (N, 3, crop, crop)]`` in [0, 1] (normalisation happens after the synthesis)."""
        n, s, c = images_u8.shape[0], images_u8.shape[1], self.crop
        dev = images_u8.device
        top = torch.randint(0, s - c + 1, (n, 1, 1), device=dev)
        left = torch.randint(0, s - c + 1, (n, 1, 1), device=dev)
        r = torch.arange(c, device=dev)
        rows = (top + r.view(1, c, 1)).expand(n, c, c)
        cols = (left + r.view(1, 1, c)).expand(n, c, c)
        batch = torch.arange(n, device=dev).view(n, 1, 1).expand(n, c, c)
        x = to_unit_nchw(images_u8[batch, rows, cols])
        if self.cfg.flip:
            flip = torch.rand(n, 1, 1, 1, device=dev) < 0.5
            x = torch.where(flip, x.flip(3), x)
        if self.cfg.rot90:
            x = torch.where(torch.rand(n, 1, 1, 1, device=dev) < 0.5, x.transpose(2, 3), x)
        gain = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * self.cfg.brightness * 0.5
        mean = x.mean((1, 2, 3), keepdim=True)
        contrast = 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * self.cfg.contrast * 0.5
        return [(((x - mean) * contrast + mean) * gain).clamp(0, 1)]


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Binary focal loss with soft targets, mean over pixels.

    - [0] Lin et al., Focal Loss, 2017, https://arxiv.org/abs/1708.02002

    Examples:
        >>> t = torch.tensor([[0.0, 1.0]])
        >>> bool(focal_loss(torch.tensor([[-5.0, 5.0]]), t) < focal_loss(torch.tensor([[5.0, -5.0]]), t))
        True
    """
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_true = p * target + (1 - p) * (1 - target)
    return ((1 - p_true).pow(gamma) * bce).mean()


def kind_loss(logits: torch.Tensor, kinds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the shape and of the fill, per pixel of the kind ``logits`` ``(N, KINDS, h, w)``, weighted
    by the soft ``target`` brought to their size (clean samples, ``kinds`` -1, weigh nothing)."""
    size = (int(logits.shape[-2]), int(logits.shape[-1]))
    w = F.adaptive_avg_pool2d(target.float(), size)[:, 0] * (kinds[:, :1, None] >= 0)
    ns = len(KIND_SHAPES)
    total = logits.new_zeros(())
    for part, idx in ((logits[:, :ns], kinds[:, 0]), (logits[:, ns:], kinds[:, 1])):
        ce = F.cross_entropy(part.float(), idx.clamp(min=0)[:, None, None].expand_as(w), reduction="none")
        total = total + (ce * w).sum()
    return total / w.sum().clamp(min=1.0)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − soft Dice over the whole batch (pooled, so clean samples do not divide by zero)."""
    p = torch.sigmoid(logits.float())
    inter = (p * target).sum()
    return 1 - (2 * inter + 1) / (p.sum() + target.sum() + 1)


class SynthDefect(SSLModel):
    """Backbone + :class:`SegDecoder` trained to segment synthetic defects (focal + Dice on soft targets)."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the decoder for the backbone's pyramid."""
        super().__init__(backbone)
        self.decoder = SegDecoder(pyramid_channels(backbone), kinds=KINDS)

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Paint defects on the crops, segment them, return the loss and the pooled deepest features."""
        synth = synthesize(views[0])
        x = normalize(synth.images)
        if views[0].is_contiguous(memory_format=torch.channels_last):  # keep the loop's memory format (CUDA)
            x = x.contiguous(memory_format=torch.channels_last)
        maps = feature_pyramid(self.backbone, x)
        size = (int(synth.images.shape[-2]), int(synth.images.shape[-1]))
        logits, kind_logits = self.decoder.forward_kinds(maps, size)
        loss = focal_loss(logits, synth.target) + DICE_WEIGHT * soft_dice_loss(logits, synth.target)
        loss = loss + KIND_WEIGHT * kind_loss(kind_logits, synth.kinds, synth.target)
        feats = F.adaptive_avg_pool2d(maps[-1], 1).flatten(1)
        return StepOutput(loss, feats.detach())


def _make_views(cfg: PretrainConfig) -> NativeCrops:
    return NativeCrops(cfg.augment, cfg.image_size, crop_size(cfg))


SPEC = MethodSpec(
    name="synthdefect",
    make_model=SynthDefect,
    make_views=_make_views,
    optimizer="adamw",
    base_lr=8e-3,  # AdamW at 1e-3 for a batch of 32 (the base is per 256 images, scaled linearly)
    weight_decay=1e-4,
    normal_only=True,
)

__all__ = ["KINDS", "SPEC", "NativeCrops", "SynthDefect", "crop_size", "focal_loss", "kind_loss", "soft_dice_loss"]
