"""Batched, on-device view augmentation: one affine ``grid_sample`` for crop/flip/rotation, then photometric
jitter, blur and noise as tensor ops. No per-sample Python work, so a GPU never waits for a CPU.

Presets suit industrial parts: no hue jitter by default (colour can be the defect), gentle rotations, optional
flips/90° turns when orientation does not matter.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from sslinspect.config import AugmentConfig
from sslinspect.preprocess import device_constant, normalize, to_unit_nchw

GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights
TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
FROM_YIQ = tuple(tuple(float(v) for v in row) for row in torch.linalg.inv(torch.tensor(TO_YIQ, dtype=torch.float64)))


def _uniform(n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (hi - lo) + lo


def random_resized_affine(
    x: torch.Tensor, cfg: AugmentConfig, out_size: int, *, min_scale: float | None = None, max_scale: float = 1.0
) -> torch.Tensor:
    """Random resized crop + flips + rotation of a ``[0,1]`` batch ``(N, 3, H, W)`` → ``(N, 3, out, out)``."""
    n, dev = x.shape[0], x.device
    lo = cfg.crop_min_scale if min_scale is None else min_scale
    area = _uniform(n, lo, max_scale, dev)
    # aspect ratio in [3/4, 4/3], narrowed so the crop fits without clamping (area 1 → the whole image, unstretched)
    r_lo = torch.clamp(torch.log(area), min=math.log(3 / 4))
    r_hi = torch.clamp(-torch.log(area), max=math.log(4 / 3))
    ratio = torch.exp(r_lo + torch.rand(n, device=dev) * (r_hi - r_lo))
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(n, device=dev) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, device=dev) * 2 - 1) * (1 - h)
    angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(cfg.rotate_deg)
    if cfg.rot90:
        angle = angle + torch.randint(0, 4, (n,), device=dev).float() * (math.pi / 2)
    fx = torch.ones(n, device=dev)
    fy = torch.ones(n, device=dev)
    if cfg.flip:
        fx = torch.where(torch.rand(n, device=dev) < 0.5, -fx, fx)
        fy = torch.where(torch.rand(n, device=dev) < 0.5, -fy, fy)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos * w * fx, -sin * h * fy, cx], 1), torch.stack([sin * w * fx, cos * h * fy, cy], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.dtype), [n, 3, out_size, out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color_jitter(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Brightness, contrast, saturation and hue jitter with per-sample random factors."""
    n, dev = x.shape[0], x.device
    if cfg.brightness > 0:
        x = x * _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, dev).view(n, 1, 1, 1)
    gray_w = device_constant("views.grey", GREY, dev, x.dtype).view(1, 3, 1, 1)
    if cfg.contrast > 0:
        mean = (x * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        x = (x - mean) * _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, dev).view(n, 1, 1, 1) + mean
    if cfg.saturation > 0:
        gray = (x * gray_w).sum(1, keepdim=True)
        x = (x - gray) * _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, dev).view(n, 1, 1, 1) + gray
    if cfg.hue > 0:
        x = _rotate_hue(x, _uniform(n, -cfg.hue, cfg.hue, dev) * 2 * math.pi)
    return x


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate chroma in YIQ space by ``angle`` radians per sample."""
    to_yiq = device_constant("views.to_yiq", TO_YIQ, x.device, x.dtype)
    from_yiq = device_constant("views.from_yiq", FROM_YIQ, x.device, x.dtype)  # inverted once on the host
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rot = torch.stack(
        [torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1), torch.stack([zero, sin, cos], 1)], 1
    )
    m = from_yiq @ rot @ to_yiq  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", m, x)


def gaussian_blur(x: torch.Tensor, prob: float, max_sigma: float) -> torch.Tensor:
    """Blur a random share ``prob`` of the batch with per-sample sigma in ``[0.1, max_sigma]`` px."""
    n = x.shape[0]
    if prob <= 0 or max_sigma <= 0:
        return x
    sigma = _uniform(n, 0.1, max_sigma, x.device)
    chosen = torch.rand(n, device=x.device) < prob
    radius = max(1, math.ceil(3 * max_sigma))
    if x.device.type == "cpu":  # blur only the chosen images (on a GPU one sync-free pass over all is cheaper)
        idx = chosen.nonzero().flatten()
        out = x.clone()
        if len(idx):
            out[idx] = _separable_blur(x[idx], sigma[idx], radius)
        return out
    return _separable_blur(x, torch.where(chosen, sigma, torch.zeros_like(sigma)), radius)


def _separable_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Per-sample Gaussian blur with std ``sigma`` (0 = unchanged) and kernel radius ``radius``."""
    n, c, h, w = x.shape
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.clamp(min=1e-3).view(-1, 1) ** 2))
    k = torch.where(sigma.view(-1, 1) > 0, k, (t.view(1, -1) == 0).to(x.dtype))  # identity kernel when not blurred
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, K)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def augment_unit(
    x: torch.Tensor, cfg: AugmentConfig, out_size: int, *, min_scale: float | None = None, max_scale: float = 1.0
) -> torch.Tensor:
    """One augmented, normalised view ``(N, 3, out, out)`` of a ``[0, 1]`` float batch ``(N, 3, H, W)``."""
    x = random_resized_affine(x, cfg, out_size, min_scale=min_scale, max_scale=max_scale)
    x = color_jitter(x, cfg)
    x = gaussian_blur(x, cfg.blur_prob, max_sigma=1.5 * out_size / 224 + 0.5)
    if cfg.noise_std > 0:
        x = x + torch.randn_like(x) * (cfg.noise_std * torch.rand(x.shape[0], 1, 1, 1, device=x.device))
    return normalize(x.clamp(0.0, 1.0))


def augment(images_u8: torch.Tensor, cfg: AugmentConfig, out_size: int, **crop: float) -> torch.Tensor:
    """One augmented, normalised view ``(N, 3, out, out)`` of a ``uint8 (N, S, S, 3)`` batch (same device)."""
    return augment_unit(to_unit_nchw(images_u8), cfg, out_size, **crop)


class TwoViews:
    """The standard two-view maker of SimCLR/BYOL/Barlow Twins/MoCo/SimSiam."""

    def __init__(self, cfg: AugmentConfig, out_size: int) -> None:
        """Make views of ``out_size`` px with augmentations ``cfg``."""
        self.cfg, self.out_size = cfg, out_size

    def __call__(self, images_u8: torch.Tensor) -> list[torch.Tensor]:
        """Two independently augmented views of the batch."""
        return [augment(images_u8, self.cfg, self.out_size), augment(images_u8, self.cfg, self.out_size)]


class OneView(TwoViews):
    """A single augmented view (MAE, inpainting, DeepCluster)."""

    def __call__(self, images_u8: torch.Tensor) -> list[torch.Tensor]:
        """One augmented view of the batch."""
        return [augment(images_u8, self.cfg, self.out_size)]


def local_crop_size(image_size: int) -> int:
    """Side of DINO/SwAV local crops: 96/224 of the image as in the papers, a multiple of 16 (ViT patches)."""
    return max(16, round(image_size * 96 / 224 / 16) * 16)


class MultiCrop:
    """DINO/SwAV multi-crop: two global views (area ≥ ``crop_min_scale``) then ``n_local`` small local views
    (area between ``local_min_scale`` and ``crop_min_scale``) at :func:`local_crop_size`."""

    def __init__(self, cfg: AugmentConfig, out_size: int, n_local: int) -> None:
        """Make 2 global views of ``out_size`` px and ``n_local`` local views."""
        self.cfg, self.out_size, self.n_local = cfg, out_size, n_local
        self.local_size = local_crop_size(out_size)

    def __call__(self, images_u8: torch.Tensor) -> list[torch.Tensor]:
        """Global views first, then local views."""
        x = to_unit_nchw(images_u8)
        views = [augment_unit(x, self.cfg, self.out_size) for _ in range(2)]
        lo, hi = self.cfg.local_min_scale, max(self.cfg.local_min_scale, self.cfg.crop_min_scale)
        views += [augment_unit(x, self.cfg, self.local_size, min_scale=lo, max_scale=hi) for _ in range(self.n_local)]
        return views


class Rotations(TwoViews):
    """RotNet: one augmented view (without flips or 90° turns, which would make the labels ambiguous) in four
    rotations; view ``k`` is turned by ``k·90°``."""

    def __init__(self, cfg: AugmentConfig, out_size: int) -> None:
        """Make views of ``out_size`` px; flips and 90° turns of ``cfg`` are switched off."""
        super().__init__(dataclasses.replace(cfg, flip=False, rot90=False), out_size)

    def __call__(self, images_u8: torch.Tensor) -> list[torch.Tensor]:
        """``[x, x↻90°, x↻180°, x↻270°]``."""
        x = augment(images_u8, self.cfg, self.out_size)
        return [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]


def tile_size(image_size: int, grid: int = 3, fill: float = 0.75) -> int:
    """Side in px of the tiles of :class:`GridTiles`: ``fill`` of a grid cell, at least 16 px."""
    return max(16, round(image_size / grid * fill))


class GridTiles(TwoViews):
    """Jigsaw/relative-position tiles: an augmented view cut into a ``grid × grid`` layout of tiles.

    Each tile covers ``fill`` of its cell at a random offset inside it (the gap and jitter stop the network from
    matching edges), and every tile is standardised on its own to the batch's mean level and contrast, so lighting
    gradients and vignetting do not give the position away. One batched ``grid_sample`` cuts all tiles.
    Returns one tensor ``(N, grid², 3, t, t)``, tiles in row-major order.
    """

    def __init__(self, cfg: AugmentConfig, out_size: int, grid: int = 3, fill: float = 0.75) -> None:
        """Cut ``grid × grid`` tiles from ``out_size`` px views."""
        super().__init__(cfg, out_size)
        self.grid, self.fill = grid, fill
        self.tile = tile_size(out_size, grid, fill)

    def __call__(self, images_u8: torch.Tensor) -> list[torch.Tensor]:
        """``[tiles (N, grid², 3, t, t)]``."""
        x = augment(images_u8, self.cfg, self.out_size)
        n, dev, g, t = x.shape[0], x.device, self.grid, self.tile
        half = self.fill / g  # tile half-width in [-1, 1] coordinates
        centers = -1 + (2 * torch.arange(g, device=dev, dtype=x.dtype) + 1) / g
        jitter = (torch.rand(n, g, g, 2, device=dev, dtype=x.dtype) * 2 - 1) * (1 - self.fill) / g
        u = ((2 * torch.arange(t, device=dev, dtype=x.dtype) + 1) / t - 1) * half  # sample points inside a tile
        cx = centers.view(1, 1, g, 1, 1) + jitter[..., 0].view(n, g, g, 1, 1) + u.view(1, 1, 1, 1, t)
        cy = centers.view(1, g, 1, 1, 1) + jitter[..., 1].view(n, g, g, 1, 1) + u.view(1, 1, 1, t, 1)
        grid_xy = torch.stack(torch.broadcast_tensors(cx, cy), dim=-1)  # (N, g, g, t, t, 2)
        tiles = F.grid_sample(x, grid_xy.reshape(n, g * g * t, t, 2), mode="bilinear", align_corners=False)
        tiles = tiles.view(n, 3, g * g, t, t).transpose(1, 2)  # (N, g², 3, t, t)
        # every tile gets the batch's mean level and contrast: no position cue, and whole images (what the backbone
        # sees after pretraining) have the same statistics on average
        mean = tiles.mean((3, 4), keepdim=True)
        std = tiles.std((2, 3, 4), keepdim=True) + 1e-3
        return [(tiles - mean) / std * std.mean() + mean.mean((0, 1), keepdim=True)]
