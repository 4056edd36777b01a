"""PatchCore-style patch-level anomaly model: locally aware patch features from the backbone's intermediate maps,
a memory bank of good patches thinned by greedy coreset selection, and nearest-neighbour distance maps.

- [0] Roth et al., Towards Total Recall in Industrial Anomaly Detection (PatchCore), 2022,
  https://arxiv.org/abs/2106.08265

Every function here is plain torch on tensors, so fitting (``fewshot.fit``) and the exported graph
(``export.module``) run the same code.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.model.backbones import FeatureMaps
from sslinspect.preprocess import normalize_u8

#: Bank rows compared per matrix product: bounds the ``(patches × chunk)`` similarity block in memory.
BANK_CHUNK = 2048
#: Gaussian smoothing of the distance map, in feature-map cells (PatchCore: σ = 4 px at stride 8).
MAP_SIGMA = 0.5


def has_feature_maps(backbone: nn.Module) -> bool:
    """Whether ``backbone`` exposes intermediate maps (our CNNs and ViTs do; an imported plain module may not)."""
    return callable(getattr(backbone, "feature_maps", None))


def patch_embed(maps: list[torch.Tensor]) -> torch.Tensor:
    """Locally aware patch features ``(N, Dp, h, w)`` at the finest map's resolution.

    Each map is 3×3 average-pooled (every patch sees its neighbourhood), brought to the finest resolution
    (bilinear), L2-normalised per location so that layers weigh the same, and the layers are concatenated and
    scaled back to unit length.
    """
    h, w = maps[0].shape[-2:]
    parts = []
    for m in maps:
        m = F.avg_pool2d(m.float(), 3, stride=1, padding=1, count_include_pad=False)
        if m.shape[-2:] != (h, w):
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        parts.append(F.normalize(m, dim=1))
    return torch.cat(parts, 1) / math.sqrt(len(parts))


class FeatureNet(nn.Module):
    """``uint8 (N, T·S, T·S, 3)`` RGB → global features ``(N, Dg)`` and patch features ``(N, Dp, T·h, T·w)``.

    With ``tiles`` = T > 1 the input is cut into T×T tiles of the backbone's own size S, each tile goes through the
    backbone on its own, and the tiles' patch maps are stitched back: small defects on large images keep their
    pixels. The global feature is the renormalised mean of the tiles' features. Backbones without intermediate
    maps give ``patches`` of shape ``(N, 0, T, T)``.
    """

    def __init__(self, backbone: nn.Module, tile_size: int, tiles: int = 1) -> None:
        """Wrap ``backbone`` (kept in eval mode)."""
        super().__init__()
        self.backbone = backbone.eval()
        self.tile_size = int(tile_size)
        self.tiles = int(tiles)
        self.maps = has_feature_maps(backbone)

    @property
    def input_size(self) -> int:
        """Side of the square uint8 input."""
        return self.tile_size * self.tiles

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(global (N, Dg), patches (N, Dp, H, W))`` for a uint8 NHWC batch."""
        x = normalize_u8(images)
        n, t, s = x.shape[0], self.tiles, self.tile_size
        if t > 1:  # (N, 3, T·S, T·S) → (N·T·T, 3, S, S), tiles in row-major order
            x = x.reshape(n, 3, t, s, t, s).permute(0, 2, 4, 1, 3, 5).reshape(n * t * t, 3, s, s)
        g = F.normalize(self.backbone(x).float(), dim=1)
        g = F.normalize(g.reshape(n, t * t, -1).mean(1), dim=1)
        if not self.maps:
            return g, g.new_zeros((n, 0, t, t))
        p = patch_embed(cast(FeatureMaps, self.backbone).feature_maps(x))
        if t > 1:  # stitch (N·T·T, D, h, w) back into (N, D, T·h, T·w)
            d, h, w = p.shape[1:]
            p = p.reshape(n, t, t, d, h, w).permute(0, 3, 1, 4, 2, 5).reshape(n, d, t * h, t * w)
        return g, p


def nn_distance(
    patches: torch.Tensor,
    bank: torch.Tensor,
    *,
    owners: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance of each unit-length patch to its nearest bank row, and that row's index.

    Args:
        patches: ``(N, P, D)`` unit-length patch features.
        bank: ``(M, D)`` unit-length memory bank.
        owners: ``(M,)`` image index each bank row came from (only with ``exclude``).
        exclude: ``(N,)`` image index of each input: its own bank rows are ignored (a held-out score).

    Returns:
        ``(distance (N, P), index (N, P))``.
    """
    best_sim: torch.Tensor | None = None
    best_idx: torch.Tensor | None = None
    for start in range(0, bank.shape[0], BANK_CHUNK):
        chunk = bank[start : start + BANK_CHUNK]
        sims = patches @ chunk.T  # (N, P, m)
        if owners is not None and exclude is not None:
            own = owners[start : start + BANK_CHUNK][None, None, :] == exclude[:, None, None]
            sims = sims.masked_fill(own, -2.0)
        sim, idx = sims.max(2)
        idx = idx + start
        if best_sim is None or best_idx is None:
            best_sim, best_idx = sim, idx
        else:
            better = sim > best_sim
            best_sim = torch.where(better, sim, best_sim)
            best_idx = torch.where(better, idx, best_idx)
    assert best_sim is not None and best_idx is not None, "empty memory bank"
    # The distance is taken from the difference itself, not from 2 − 2·a·b: near a match that form loses every
    # digit to cancellation, and PyTorch and ONNX Runtime would disagree.
    nearest = bank.index_select(0, best_idx.reshape(-1)).reshape(patches.shape)
    return torch.linalg.vector_norm(patches - nearest, dim=-1), best_idx


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 2-D Gaussian ``(1, 1, k, k)`` with ``k = 2·ceil(2σ) + 1``."""
    r = max(1, math.ceil(2 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return (k / k.sum())[None, None]


def smooth_map(dist: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Gaussian-smooth a ``(N, h, w)`` distance map (replicate padding: borders are not pulled down)."""
    r = kernel.shape[-1] // 2
    x = F.pad(dist[:, None], (r, r, r, r), mode="replicate")
    return F.conv2d(x, kernel)[:, 0]


def score_patches(
    patches: torch.Tensor,
    bank: torch.Tensor,
    kernel: torch.Tensor,
    *,
    owners: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed distance map ``(N, H, W)`` of patch features ``(N, D, H, W)`` and each patch's nearest bank row
    ``(N, H·W)``. The image score is the map's maximum (the map is what the heatmap shows)."""
    n, d, h, w = patches.shape
    dist, idx = nn_distance(patches.permute(0, 2, 3, 1).reshape(n, h * w, d), bank, owners=owners, exclude=exclude)
    return smooth_map(dist.reshape(n, h, w), kernel), idx


def defect_descriptor(
    global_feats: torch.Tensor, patches: torch.Tensor, smoothed: torch.Tensor, bank: torch.Tensor, idx: torch.Tensor
) -> torch.Tensor:
    """Defect-centric classifier input: ``[global, patch, patch − nearest good patch]`` at the most anomalous
    location, each part L2-normalised, scaled to unit length.

    A global average pool dilutes a small defect among thousands of good pixels; the patch at the anomaly peak and
    its difference from the closest good patch describe the defect itself.
    """
    n, d, h, w = patches.shape
    flat = patches.permute(0, 2, 3, 1).reshape(n, h * w, d)
    at = smoothed.reshape(n, h * w).argmax(1, keepdim=True)  # (N, 1); gather keeps the batch size symbolic
    local = torch.gather(flat, 1, at[:, :, None].expand(n, 1, d))[:, 0]
    residual = local - bank.index_select(0, torch.gather(idx, 1, at)[:, 0])
    parts = [F.normalize(global_feats, dim=1), F.normalize(local, dim=1), F.normalize(residual, dim=1)]
    return torch.cat(parts, 1) / math.sqrt(3.0)


def greedy_coreset(
    feats: torch.Tensor, n: int, *, proj_dim: int = 128, seed: int = 0, chunk: int = 65536
) -> torch.Tensor:
    """Indices of ``n`` rows chosen by greedy k-center selection (PatchCore's coreset), on a random projection.

    Each step adds the row farthest from everything chosen so far, so the selection covers the feature space
    (rare patches included) with far fewer rows. Runs on ``feats``' device.
    """
    m = feats.shape[0]
    if n >= m:
        return torch.arange(m, device=feats.device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if feats.shape[1] > proj_dim:
        proj = torch.randn(feats.shape[1], proj_dim, generator=gen) / math.sqrt(proj_dim)
        z = torch.cat([feats[s : s + chunk] @ proj.to(feats.device) for s in range(0, m, chunk)])
    else:
        z = feats
    sq = (z * z).sum(1)
    chosen = torch.empty(n, dtype=torch.long, device=feats.device)
    cur = int(torch.randint(m, (1,), generator=gen))
    min_d = torch.full((m,), float("inf"), device=feats.device)
    # Thousands of small sequential steps: on CPU, thread hand-offs cost more than the work (10–1000x when cores
    # are shared), so the loop runs single-threaded.
    threads = torch.get_num_threads()
    if feats.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        for i in range(n):
            chosen[i] = cur
            d = sq - 2.0 * (z @ z[cur]) + sq[cur]
            torch.minimum(min_d, d, out=min_d)
            cur = int(min_d.argmax())
    finally:
        torch.set_num_threads(threads)
    return chosen
