"""The one definition of model-input normalisation, used by training, embedding, preview and the ONNX graph.

Images reach a model as ``uint8`` RGB ``(N, S, S, 3)``: decoded and resized by :mod:`sslinspect.imageio` (numpy
and OpenCV only, shared with the line-side predictor). This module turns that into the normalised float
``(N, 3, S, S)`` batch; the exported ONNX graph contains exactly this computation.
"""

from __future__ import annotations

import torch

#: Per-channel mean/std on [0, 1] pixels (ImageNet statistics: a neutral choice that also suits imported weights).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def to_unit_nchw(images_u8: torch.Tensor) -> torch.Tensor:
    """``uint8 (N, H, W, 3)`` → ``float32 (N, 3, H, W)`` in [0, 1]."""
    return images_u8.permute(0, 3, 1, 2).to(torch.float32) / 255.0


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Standardise a ``[0, 1]`` float ``(N, 3, H, W)`` batch with :data:`MEAN`/:data:`STD`."""
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def normalize_u8(images_u8: torch.Tensor) -> torch.Tensor:
    """``uint8 (N, H, W, 3)`` → normalised float ``(N, 3, H, W)``: what every backbone consumes."""
    return normalize(to_unit_nchw(images_u8))
