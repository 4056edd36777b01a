"""Defects painted onto a synthetic part: scratch, spot (pit or dent), crack and contamination.

Sizes are given for a 128 px image and scaled with the output size; all randomness comes from the caller.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

FloatImage = npt.NDArray[np.float32]
Point = npt.NDArray[np.float64]

DEFECTS: tuple[str, ...] = ("scratch", "spot", "crack", "contamination")

# stain tints for coloured products (RGB multipliers): oil, rust, coffee, grease
_STAINS = np.array([[0.55, 0.50, 0.32], [0.85, 0.45, 0.25], [0.70, 0.52, 0.35], [0.45, 0.45, 0.42]], dtype=np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int | tuple[int, int]) -> FloatImage:
    """Return smooth, roughly unit-variance noise of ``shape``: a ``cells`` lattice upsampled bicubically."""
    cy, cx = (cells, cells) if isinstance(cells, int) else cells
    lattice = rng.standard_normal((cy + 1, cx + 1)).astype(np.float32)
    return np.asarray(cv2.resize(lattice, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC), np.float32)


def paint_defect(img: FloatImage, defect: str, rng: np.random.Generator, size: int, scale: float, product: str) -> None:
    """Paint ``defect`` in place on the canvas ``img`` (float32 in [0, 1], HxW or HxWx3).

    Args:
        img: The part's canvas, larger than the output image; modified in place.
        defect: One of ``DEFECTS``.
        rng: Source of randomness for position, size, orientation and contrast.
        size: Side of the output image: the defect is placed so that it stays inside it.
        scale: ``size / 128``; defect dimensions are defined at 128 px.
        product: The product name; colour products get coloured stains, metal gets dents.
    """
    n = img.shape[0]
    centre = n / 2.0 + rng.uniform(-0.32, 0.32, 2) * size
    if defect == "scratch":
        _scratch(img, rng, centre, size, scale)
    elif defect == "spot":
        _spot(img, rng, centre, scale, dent=product == "metal" and rng.random() < 0.5)
    elif defect == "crack":
        _crack(img, rng, centre, size, scale)
    else:
        _contamination(img, rng, centre, scale, coloured=img.ndim == 3)


def _apply(img: FloatImage, mask: FloatImage, add: float = 0.0, mul: float = 0.0) -> None:
    """Blend a defect: ``img * (1 - mul * mask) + add * mask`` (broadcast over colour channels)."""
    m = mask[..., None] if img.ndim == 3 else mask
    if mul:
        img *= 1.0 - mul * m
    if add:
        img += add * m


def _window(n: int, c: Point, half: int) -> tuple[tuple[slice, slice], FloatImage, FloatImage]:
    """Return the canvas slices of a square window around ``c`` (clipped to the canvas) and its x/y grids."""
    y0, x0 = max(0, int(c[1]) - half), max(0, int(c[0]) - half)
    y1, x1 = min(n, int(c[1]) + half), min(n, int(c[0]) + half)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), xx, yy


def _lines_mask(n: int, polylines: list[npt.NDArray[np.float64]], width: int) -> FloatImage:
    """Rasterise anti-aliased polylines (sub-pixel accurate) into a float mask in [0, 1]."""
    mask = np.zeros((n, n), np.uint8)
    pts = [np.round(p * 16.0).astype(np.int32).reshape(-1, 1, 2) for p in polylines]
    cv2.polylines(mask, pts, False, 255, thickness=width, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


def _scratch(img: FloatImage, rng: np.random.Generator, c: Point, size: int, scale: float) -> None:
    """A long thin line, straight or gently curved, dark (groove) or bright (burnished), with gaps."""
    n = img.shape[0]
    length = rng.uniform(0.25, 0.65) * size
    a = rng.uniform(0.0, np.pi)
    d, normal = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    bend = rng.uniform(-0.12, 0.12) * length
    t = np.linspace(0.0, 1.0, 48)[:, None]
    p0, p2 = c - d * length / 2.0, c + d * length / 2.0
    p1 = c + normal * bend
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    width = max(1, round(rng.choice([1, 1, 2, 2, 3]) * scale))
    mask = _lines_mask(n, [curve], width)
    # the tool skipped in places: modulate the strength along the line
    mask *= np.clip(0.85 + 0.5 * smooth_noise(rng, (n, n), cells=6), 0.35, 1.0)
    strength = rng.uniform(0.10, 0.32)
    if rng.random() < 0.6:
        _apply(img, mask, mul=strength * 1.6)
    else:
        _apply(img, mask, add=strength)


def _spot(img: FloatImage, rng: np.random.Generator, c: Point, scale: float, dent: bool) -> None:
    """A roundish blob 5-15 px: a dark pit/stain, or (``dent``) a shaded dent lit from one side."""
    diameter = rng.uniform(5.0, 15.0) * scale
    win, xx, yy = _window(img.shape[0], c, int(diameter) + 4)
    a = rng.uniform(0.0, np.pi)
    ca, sa = np.cos(a), np.sin(a)
    du, dv = (xx - c[0]) * ca + (yy - c[1]) * sa, -(xx - c[0]) * sa + (yy - c[1]) * ca
    ry = diameter / 2.0 * rng.uniform(0.65, 1.0)
    rho = np.sqrt((du / (diameter / 2.0)) ** 2 + (dv / ry) ** 2)
    # ragged rim
    rho *= 1.0 + 0.12 * smooth_noise(rng, rho.shape, cells=4)
    blob = np.clip((1.15 - rho) / 0.5, 0.0, 1.0).astype(np.float32)
    blob = blob * blob * (3.0 - 2.0 * blob)
    patch = img[win]
    if dent:
        # a dent reflects the light away on one flank and towards the camera on the other
        light = rng.uniform(0.0, 2.0 * np.pi)
        gx = cv2.Sobel(blob, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(blob, cv2.CV_32F, 0, 1, ksize=3)
        relief = np.cos(light) * gx + np.sin(light) * gy
        patch_shade = rng.uniform(0.10, 0.22) * relief / (float(np.abs(relief).max()) + 1e-6)
        patch += patch_shade[..., None] if patch.ndim == 3 else patch_shade
        _apply(patch, blob, mul=rng.uniform(0.10, 0.25))
    else:
        _apply(patch, blob, mul=rng.uniform(0.30, 0.65))


def _crack(img: FloatImage, rng: np.random.Generator, c: Point, size: int, scale: float) -> None:
    """A jagged dark polyline with one to three side branches, thinning towards the tips."""
    n = img.shape[0]

    def walk(start: npt.NDArray[np.float64], heading: float, length: float) -> npt.NDArray[np.float64]:
        steps = max(3, int(length / (3.0 * scale)))
        # a slow drift plus sharp independent kinks: jagged, not wavy
        turns = heading + np.cumsum(rng.normal(0.0, 0.12, steps)) + rng.normal(0.0, 0.35, steps)
        seg = rng.uniform(2.0, 4.0, steps) * scale
        offsets = np.cumsum(np.stack([np.cos(turns) * seg, np.sin(turns) * seg], axis=1), axis=0)
        return np.vstack([start[None, :], start + offsets])

    heading = rng.uniform(0.0, 2.0 * np.pi)
    length = rng.uniform(0.22, 0.45) * size
    trunk = np.vstack([walk(c, heading + np.pi, length / 2.0)[::-1], walk(c, heading, length / 2.0)[1:]])
    width = max(1, round(scale))
    mask = _lines_mask(n, [trunk], width)
    branches = []
    for _ in range(int(rng.integers(1, 4))):
        at = trunk[int(rng.integers(2, len(trunk) - 2))]
        side = heading + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.2)
        branches.append(walk(at, side, length * rng.uniform(0.15, 0.4)))
    mask = np.maximum(mask, 0.7 * _lines_mask(n, branches, 1))
    mask = cv2.GaussianBlur(mask, (0, 0), 0.5 * scale)
    _apply(img, np.asarray(mask, np.float32), mul=rng.uniform(0.35, 0.7))


def _contamination(img: FloatImage, rng: np.random.Generator, c: Point, scale: float, coloured: bool) -> None:
    """An irregular soft-edged smudge: oil or dirt that dulls the texture; a coloured stain on fabric."""
    radius = rng.uniform(7.0, 17.0) * scale
    win, xx, yy = _window(img.shape[0], c, int(radius * 1.8) + 4)
    stretch = rng.uniform(0.55, 1.0)
    a = rng.uniform(0.0, np.pi)
    du = ((xx - c[0]) * np.cos(a) + (yy - c[1]) * np.sin(a)) / radius
    dv = (-(xx - c[0]) * np.sin(a) + (yy - c[1]) * np.cos(a)) / (radius * stretch)
    shape = 1.0 - (du**2 + dv**2) + 0.55 * smooth_noise(rng, du.shape, cells=5)
    mask = np.clip(shape * 2.5, 0.0, 1.0).astype(np.float32)
    mask = np.asarray(cv2.GaussianBlur(mask, (0, 0), max(1.0, radius / 6.0)), np.float32)
    mask *= np.clip(0.75 + 0.35 * smooth_noise(rng, mask.shape, cells=6), 0.3, 1.0)
    patch = img[win]
    m = mask[..., None] if coloured else mask
    # the film fills the fine texture in: blend towards a blurred copy
    soft = cv2.GaussianBlur(patch, (0, 0), 1.6 * scale)
    patch += (soft - patch) * m * rng.uniform(0.5, 0.9)
    if coloured:
        tint = _STAINS[int(rng.integers(len(_STAINS)))] * rng.uniform(0.9, 1.1, 3).astype(np.float32)
        strength = rng.uniform(0.5, 0.9)
        patch *= 1.0 - strength * m * (1.0 - tint)
        # tide line: dried stains are darker at the rim
        _apply(patch, np.asarray(mask * (1.0 - mask) * 4.0, np.float32), mul=0.12 * strength)
    else:
        _apply(patch, mask, mul=rng.uniform(0.15, 0.40))
        grime = 0.05 * rng.standard_normal(mask.shape).astype(np.float32)
        patch += cv2.GaussianBlur(grime, (0, 0), 0.8) * mask
