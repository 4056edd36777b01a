"""The one definition of model-input normalisation, used by training, embedding, preview and the ONNX graph.

Images reach a model as ``uint8`` RGB ``(N, S, S, 3)``: decoded and resized by :mod:`sslinspect.imageio` (numpy
and OpenCV only, shared with the line-side predictor). This module turns that into the normalised float
``(N, 3, S, S)`` batch; the exported ONNX graph contains exactly this computation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Per-channel mean/std on [0, 1] pixels (ImageNet statistics: a neutral choice that also suits imported weights).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


_CONSTANTS: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}


def device_constant(
    name: str, values: Sequence[float] | Sequence[Sequence[float]], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The constant ``values`` as a tensor on ``device``: one host→device copy on first use, cached after.

    ``torch.tensor(list, device=cuda)`` copies from the host and waits for the GPU each time: in the training
    step's augmentation that was a hidden synchronisation per call. ``name`` identifies the constant; the caller
    must always pass the same values under the same name. While a graph is traced or compiled (ONNX export,
    ``torch.compile``) a fresh tensor is made instead, so the graph holds the constant itself.
    """
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
        return torch.tensor(values, dtype=dtype, device=device)
    key = (name, device, dtype)
    cached = _CONSTANTS.get(key)
    if cached is None:
        with torch.inference_mode(False), torch.no_grad():  # a normal tensor even if first made in inference mode
            cached = torch.tensor(values, dtype=dtype, device=device)
        _CONSTANTS[key] = cached
    return cached


def to_unit_nchw(images_u8: torch.Tensor) -> torch.Tensor:
    """``uint8 (N, H, W, 3)`` → ``float32 (N, 3, H, W)`` in [0, 1]."""
    return images_u8.permute(0, 3, 1, 2).to(torch.float32) / 255.0


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Standardise a ``[0, 1]`` float ``(N, 3, H, W)`` batch with :data:`MEAN`/:data:`STD`."""
    mean = device_constant("normalize.mean", MEAN, x.device, x.dtype).view(1, 3, 1, 1)
    std = device_constant("normalize.std", STD, x.device, x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def normalize_u8(images_u8: torch.Tensor) -> torch.Tensor:
    """``uint8 (N, H, W, 3)`` → normalised float ``(N, 3, H, W)``: what every backbone consumes."""
    return normalize(to_unit_nchw(images_u8))
