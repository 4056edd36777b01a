"""Deterministic renderer of synthetic production-line images: machined metal and woven fabric parts.

Every image is a function of the caller's ``np.random.Generator`` only; defects live in ``defects.py``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from sslinspect.demo.defects import DEFECTS, paint_defect, smooth_noise
from sslinspect.errors import ConfigError

__all__ = ["DEFECTS", "PRODUCTS", "render", "render_float"]

FloatImage = npt.NDArray[np.float32]

PRODUCTS: tuple[str, ...] = ("metal", "fabric")
COLOR_PRODUCTS: frozenset[str] = frozenset({"fabric"})

MIN_SIZE = 32
_MARGIN = 0.12  # canvas margin per side, as a fraction of the output size: room for the pose warp


def render(product: str, defect: str | None, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """Render one image of ``product``, with ``defect`` painted on it or a good part when ``defect`` is None.

    Args:
        product: One of ``PRODUCTS``.
        defect: One of ``DEFECTS``, or None for a good part.
        rng: Source of all randomness. Two generators in the same state give the same image; a good and a
            defective render from the same state differ only around the defect.
        size: Side of the square output in pixels.

    Returns:
        ``uint8`` array, ``(size, size)`` for grayscale products (metal) or ``(size, size, 3)`` RGB for colour
        products (fabric).

    Raises:
        ConfigError: if the product, the defect or the size is not valid.
    """
    img = render_float(product, defect, rng, size)
    return np.asarray(np.rint(img * 255.0), dtype=np.uint8)


def render_float(product: str, defect: str | None, rng: np.random.Generator, size: int = 128) -> FloatImage:
    """Like `render`, but return the float32 image in [0, 1] before quantisation (used for 16-bit files).

    Args:
        product: One of ``PRODUCTS``.
        defect: One of ``DEFECTS``, or None for a good part.
        rng: Source of all randomness.
        size: Side of the square output in pixels.

    Returns:
        float32 array in [0, 1] with the same shape as `render` returns.

    Raises:
        ConfigError: if the product, the defect or the size is not valid.
    """
    if product not in PRODUCTS:
        raise ConfigError(f"demo product must be one of {', '.join(PRODUCTS)}, got {product!r}")
    if defect is not None and defect not in DEFECTS:
        raise ConfigError(f"demo defect must be None or one of {', '.join(DEFECTS)}, got {defect!r}")
    if size < MIN_SIZE:
        raise ConfigError(f"demo image size must be ≥ {MIN_SIZE}, got {size}")
    # Three independent streams, so the part, its pose/lighting and the sensor noise do not depend on
    # whether (or which) defect is painted: a defect changes the image only where it is.
    part_seed, defect_seed, camera_seed = (int(s) for s in rng.integers(0, 2**63 - 1, size=3))
    part_rng = np.random.default_rng(part_seed)
    canvas = size + 2 * math.ceil(_MARGIN * size)
    scale = size / 128.0
    surface = _metal(part_rng, canvas, scale) if product == "metal" else _fabric(part_rng, canvas, scale)
    if defect is not None:
        paint_defect(surface, defect, np.random.default_rng(defect_seed), size, scale, product)
    return _camera(surface, product, np.random.default_rng(camera_seed), size)


def _grid(n: int) -> tuple[FloatImage, FloatImage]:
    """Return (x, y) pixel-coordinate grids of an ``n`` x ``n`` canvas."""
    ax = np.arange(n, dtype=np.float32)
    return ax[None, :].repeat(n, axis=0), ax[:, None].repeat(n, axis=1)


def _metal(rng: np.random.Generator, n: int, scale: float) -> FloatImage:
    """Face-turned steel: concentric tool marks around an off-image spindle axis, streaks, mottling."""
    x, y = _grid(n)
    cx, cy = -rng.uniform(0.7, 1.1) * n, rng.uniform(0.25, 0.75) * n
    r = np.hypot(x - cx, y - cy)
    theta = np.arctan2(y - cy, x - cx)
    # 1. turning marks: an asymmetric groove profile at the feed pitch, with slow chatter in the phase
    pitch = 3.0 * scale * rng.uniform(0.94, 1.06)
    chatter = 1.2 * smooth_noise(rng, (n, n), cells=3)
    phase = 2.0 * np.pi * r / pitch + chatter
    marks = np.sin(phase) + 0.35 * np.sin(2.0 * phase + rng.uniform(0, 2 * np.pi))
    # 2. circumferential streaks: noise that is white across radius and long along the cut direction
    r0, dr = float(r.min()), 0.45 * scale
    t0, t1 = float(theta.min()), float(theta.max())
    n_r, n_t = int((float(r.max()) - r0) / dr) + 2, 64
    table = rng.standard_normal((n_r, n_t)).astype(np.float32)
    table = np.asarray(cv2.GaussianBlur(table, (0, 0), sigmaX=n_t / 5.0, sigmaY=0.5), np.float32)
    table /= float(table.std()) + 1e-6
    map_x = ((theta - t0) / (t1 - t0 + 1e-6) * (n_t - 1)).astype(np.float32)
    map_y = ((r - r0) / dr).astype(np.float32)
    streaks = cv2.remap(table, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # 3. large-scale mottling (material, coolant residue) and a slight polish variation across the part
    mottle = smooth_noise(rng, (n, n), cells=4)
    base = rng.uniform(0.46, 0.56)
    img = base + 0.030 * marks + 0.045 * streaks + 0.025 * mottle
    # 4. a specular streak across the tool marks, where the light hits the grooves at the mirror angle
    if rng.random() < 0.55:
        centre, width = rng.uniform(t0, t1), rng.uniform(0.03, 0.09) * (t1 - t0)
        band = np.exp(-(((theta - centre) / width) ** 2))
        img += rng.uniform(0.08, 0.22) * band * (1.0 + 0.25 * streaks)
    return np.asarray(img, dtype=np.float32)


def _fabric(rng: np.random.Generator, n: int, scale: float) -> FloatImage:
    """2/1 twill (workwear drill): khaki warp over a darker weft, slubby threads with round shading."""
    x, y = _grid(n)
    pitch = 4.0 * scale * rng.uniform(0.97, 1.03)
    # threads wander a little and are not equally thick or dyed
    u = x / pitch + 0.10 * smooth_noise(rng, (n, n), cells=3)
    v = y / pitch + 0.10 * smooth_noise(rng, (n, n), cells=3)
    i, j = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = (u - i).astype(np.float32), (v - j).astype(np.float32)
    k = (i + j) % 3
    warp_up = k != 0
    n_threads = int(n / pitch) + 8
    warp_slub = 1.0 + 0.09 * smooth_noise(rng, (n_threads, n), cells=(n_threads, 6))
    weft_slub = 1.0 + 0.06 * smooth_noise(rng, (n_threads, n), cells=(n_threads, 6))
    iy, ix = y.astype(np.int64), x.astype(np.int64)
    gain_warp = warp_slub[i % n_threads, iy]
    gain_weft = weft_slub[j % n_threads, ix]
    # round threads: bright along the crown, dark in the gaps; a float dips where it goes under the weft
    pos = (np.maximum(k - 1, 0) + fv) / 2.0
    warp_shade = (0.45 + 0.55 * np.sin(np.pi * fu) ** 0.7) * (0.70 + 0.30 * np.sin(np.pi * pos) ** 0.5)
    weft_shade = (0.45 + 0.55 * np.sin(np.pi * fv) ** 0.7) * (0.75 + 0.25 * np.sin(np.pi * fu) ** 0.5)
    # line-to-line dye-lot variation: a small hue/brightness shift of the base colour
    lot = (1.0 + rng.normal(0.0, 0.02, 3)).astype(np.float32)
    warp_col = np.array([0.66, 0.58, 0.40], np.float32) * lot
    weft_col = np.array([0.50, 0.45, 0.33], np.float32) * lot
    shade = np.where(warp_up, warp_shade * gain_warp, weft_shade * gain_weft)[..., None]
    img = shade * np.where(warp_up[..., None], warp_col, weft_col)
    # fibre fuzz
    img += 0.02 * rng.standard_normal((n, n, 1)).astype(np.float32)
    return np.asarray(cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.45 * scale), dtype=np.float32)


def _camera(surface: FloatImage, product: str, rng: np.random.Generator, size: int) -> FloatImage:
    """Place the part under the camera: pose, lighting, focus and sensor noise; crop to ``size``."""
    n = surface.shape[0]
    # 1. pose: the part is never placed exactly the same way twice
    angle = rng.uniform(-4.0, 4.0)
    shift = rng.uniform(-0.04, 0.04, 2) * size
    centre = (n / 2.0 + float(shift[0]), n / 2.0 + float(shift[1]))
    m = cv2.getRotationMatrix2D(centre, angle, rng.uniform(0.97, 1.03))
    m[:, 2] += (size / 2.0 - centre[0], size / 2.0 - centre[1])
    img = cv2.warpAffine(surface, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # 2. lighting: gain/offset, a tilted gradient and vignetting
    x, y = _grid(size)
    xn, yn = (x - size / 2.0) / size, (y - size / 2.0) / size
    direction = rng.uniform(0.0, 2.0 * np.pi)
    gradient = rng.uniform(0.0, 0.25) * (np.cos(direction) * xn + np.sin(direction) * yn)
    vignette = rng.uniform(0.05, 0.30) * (xn**2 + yn**2)
    light = rng.uniform(0.82, 1.18) * (1.0 + gradient - vignette)
    offset = rng.uniform(-0.05, 0.05)
    if product in COLOR_PRODUCTS:
        # colour products also see a slightly different white balance from shift to shift
        light = light[..., None] * (1.0 + rng.normal(0.0, 0.01, 3)).astype(np.float32)
    img = img * light + offset
    # 3. focus: now and then slightly soft
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.1) * size / 128.0)
    # 4. sensor: read noise plus a little shot noise
    sigma = rng.uniform(0.004, 0.014)
    noise = rng.standard_normal(img.shape).astype(np.float32)
    img = img + noise * (sigma + 0.012 * np.sqrt(np.clip(img, 0.0, 1.0)))
    return np.asarray(np.clip(img, 0.0, 1.0), dtype=np.float32)
