"""The defect-aware anomaly map at inference: backbone + segmentation decoder trained by the ``synthdefect``
method, run on the whole native frame (fully convolutional, no tiling, no resize).

The raw map is the decoder's defect probability, box-averaged over a small window so a single noisy pixel cannot
decide a part; the image score is the map's maximum. Heads fitted since 2026-12-05 (``AnomalyModel.spread`` 1) then
spread the map over a defect's neighbourhood (a max filter of ~1/16 of the frame, then a Gaussian of σ ~1/32): the
decoder marks a defect's core and edges, rarely its whole extent, and a spread map ranks the pixels of a large
stain or warp with its core (on the benchmark's development set: pixel AUROC 0.71 → 0.82 on brick, 0.70 → 0.90 on
fabric, image AUROC within ±0.01). Like the patch model's distances, the map is normalised
against good images (:class:`~sslinspect.fewshot.anomaly.AnomalyModel`), never per image. Fitting
(``fewshot.head``) and the exported graph (``export.module``) run this same module.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.defects.describe import KIND_SHAPES
from sslinspect.model.segnet import SegDecoder, decoder_state, feature_pyramid, pyramid_channels
from sslinspect.preprocess import normalize_u8


def score_window(size: int) -> int:
    """Side of the averaging window of the raw map: an odd number ≈ 1/48 of the frame side, at least 3 px."""
    k = max(3, round(size / 48))
    return k if k % 2 else k + 1


def spread_window(size: int) -> int:
    """Side of the max filter that spreads the map: an odd number ≈ 1/16 of the frame side, at least 3 px."""
    k = max(3, round(size / 16))
    return k if k % 2 else k + 1


def spread_sigma(size: int) -> float:
    """σ of the Gaussian after the max filter: 1/32 of the frame side, at least 1 px."""
    return max(1.0, size / 32)


def _gaussian_1d(sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(2 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def blur_matrix(n: int, kernel: torch.Tensor) -> torch.Tensor:
    """``(n, n)`` matrix ``B`` with ``B @ v`` = ``v`` convolved with the odd-length ``kernel`` under replicate
    padding (the taps that fall off either end add to the end row's weight)."""
    r = kernel.numel() // 2
    rows = torch.arange(n).view(-1, 1)
    cols = (rows + torch.arange(-r, r + 1).view(1, -1)).clamp(0, n - 1)
    mat = torch.zeros(n, n, dtype=kernel.dtype)
    return mat.scatter_add_(1, cols, kernel.view(1, -1).expand(n, -1).contiguous())


class SegmentationNet(nn.Module):
    """``uint8 (N, S, S, 3)`` RGB → global features ``(N, D)`` (unit length) and the raw defect map ``(N, S, S)``;
    with ``sharp``, the maps ``(N, 2, S, S)``: the (spread) defect map and the sharp map, the same before spreading
    (what defect regions are also cut from to name them, :mod:`sslinspect.defects.naming`)."""

    def __init__(
        self, backbone: nn.Module, decoder: SegDecoder, input_size: int, *, spread: bool = True, sharp: bool = False
    ) -> None:
        """Wrap the trained ``backbone`` and ``decoder`` (kept in eval mode); ``spread`` False gives the map of
        heads fitted before the spreading existed (``AnomalyModel.spread`` 0); ``sharp`` (with ``spread``) adds the
        map before spreading."""
        super().__init__()
        self.backbone = backbone.eval()
        self.decoder = decoder.eval()
        self.input_size = int(input_size)
        self.window = score_window(self.input_size)
        self.spread = bool(spread)
        self.sharp = bool(sharp) and self.spread
        self.spread_k = spread_window(self.input_size)
        self.gauss: torch.Tensor
        self.register_buffer("gauss", _gaussian_1d(spread_sigma(self.input_size)), persistent=False)
        self.blur: torch.Tensor
        self.register_buffer("blur", blur_matrix(self.input_size, self.gauss), persistent=False)

    def _blur(self, n: int) -> torch.Tensor:
        return self.blur if n == self.input_size else blur_matrix(n, self.gauss).to(self.blur.device)

    def _spread(self, m: torch.Tensor) -> torch.Tensor:
        """Max filter, then a separable Gaussian (replicate padding: borders are not pulled down). The k×k max is
        taken as a 1×k then a k×1 max (the same values, 2k comparisons a pixel instead of k²). The Gaussian is two
        matrix products with :func:`blur_matrix` (the same sums as the padded convolution, within float rounding):
        ONNX Runtime runs a one-channel 1×49 convolution at a few GFLOP/s, a matrix product 5× faster (measured,
        bench/RESULTS.md)."""
        k = self.spread_k
        m = F.max_pool2d(m, (1, k), stride=1, padding=(0, k // 2))
        m = F.max_pool2d(m, (k, 1), stride=1, padding=(k // 2, 0))
        m = torch.matmul(m, self._blur(m.shape[-1]).T)
        return torch.matmul(self._blur(m.shape[-2]), m)

    @property
    def has_kinds(self) -> bool:
        """Whether the decoder tells kinds of defect apart (:meth:`forward_kinds`)."""
        return self.decoder.kind is not None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(global (N, D), raw map (N, H, W))`` for a uint8 NHWC batch (with ``sharp``: maps
        ``(N, 2, H, W)``, spread then sharp)."""
        x = normalize_u8(images)
        maps = feature_pyramid(self.backbone, x)
        return self._outputs(maps, self.decoder(maps, (x.shape[-2], x.shape[-1])))

    def forward_kinds(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward`'s outputs and the kind probabilities ``(N, K, H/4, W/4)``: per pixel, the shape
        probabilities (softmax over :data:`~sslinspect.defects.describe.KIND_SHAPES`), then the fill ones.

        Raises:
            ValueError: for a decoder without a kind head (see :attr:`has_kinds`).
        """
        x = normalize_u8(images)
        maps = feature_pyramid(self.backbone, x)
        logit, kind = self.decoder.forward_kinds(maps, (x.shape[-2], x.shape[-1]))
        g, raw = self._outputs(maps, logit)
        ns = len(KIND_SHAPES)
        return g, raw, torch.cat([kind[:, :ns].float().softmax(1), kind[:, ns:].float().softmax(1)], 1)

    def _outputs(self, maps: list[torch.Tensor], logit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prob = torch.sigmoid(logit.float())
        sharp = F.avg_pool2d(prob, self.window, stride=1, padding=self.window // 2, count_include_pad=False)
        raw = self._spread(sharp) if self.spread else sharp
        raw = torch.cat([raw, sharp], 1) if self.sharp else raw[:, 0]
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
    kind = state.get("kind.2.weight")  # the kind head (checkpoints since 2026-12-06, thirteenth session)
    decoder = SegDecoder(pyramid_channels(backbone), kinds=0 if kind is None else int(kind.shape[0]))
    decoder.load_state_dict(state)
    return decoder.eval()
