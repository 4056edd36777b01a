"""The defect-aware anomaly map at inference: backbone + segmentation decoder trained by the ``synthdefect``
method, run on the whole native frame (fully convolutional, no tiling, no resize).

The raw map is the decoder's defect probability, box-averaged over a small window so a single noisy pixel cannot
decide a part; the image score is the map's maximum. Like the patch model's distances, the map is normalised
against good images (:class:`~sslinspect.fewshot.anomaly.AnomalyModel`), never per image. Fitting
(``fewshot.head``) and the exported graph (``export.module``) run this same module.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.model.segnet import SegDecoder, decoder_state, feature_pyramid, pyramid_channels
from sslinspect.preprocess import normalize_u8


def score_window(size: int) -> int:
    """Side of the averaging window of the raw map: an odd number ≈ 1/48 of the frame side, at least 3 px."""
    k = max(3, round(size / 48))
    return k if k % 2 else k + 1


class SegmentationNet(nn.Module):
    """``uint8 (N, S, S, 3)`` RGB → global features ``(N, D)`` (unit length) and the raw defect map ``(N, S, S)``."""

    def __init__(self, backbone: nn.Module, decoder: SegDecoder, input_size: int) -> None:
        """Wrap the trained ``backbone`` and ``decoder`` (kept in eval mode)."""
        super().__init__()
        self.backbone = backbone.eval()
        self.decoder = decoder.eval()
        self.input_size = int(input_size)
        self.window = score_window(self.input_size)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(global (N, D), raw map (N, H, W))`` for a uint8 NHWC batch."""
        x = normalize_u8(images)
        maps = feature_pyramid(self.backbone, x)
        prob = torch.sigmoid(self.decoder(maps, (x.shape[-2], x.shape[-1])).float())
        raw = F.avg_pool2d(prob, self.window, stride=1, padding=self.window // 2, count_include_pad=False)[:, 0]
        g = F.normalize(F.adaptive_avg_pool2d(maps[-1], 1).flatten(1).float(), dim=1)
        return g, raw


def has_decoder(ckpt: dict[str, Any]) -> bool:
    """Whether a pretraining checkpoint holds a trained segmentation decoder (the ``synthdefect`` method)."""
    state = ckpt.get("model_state")
    return isinstance(state, dict) and any(str(k).startswith("decoder.") for k in state)


def decoder_from_checkpoint(ckpt: dict[str, Any], backbone: nn.Module) -> SegDecoder:
    """Rebuild the trained decoder of ``ckpt`` for ``backbone`` (eval mode, CPU).

    Raises:
        KeyError: if the checkpoint has no decoder (check :func:`has_decoder` first).
    """
    state = decoder_state(ckpt["model_state"])
    if not state:
        raise KeyError("decoder")
    decoder = SegDecoder(pyramid_channels(backbone))
    decoder.load_state_dict(state)
    return decoder.eval()
