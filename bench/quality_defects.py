"""Defect families of the quality benchmark, drawn on a frame at "visible to a person, no louder than the texture".

Each painter changes a float32 frame (H×W or H×W×3, values about [0, 1]) in place and returns the defect's pixel
mask (bool, H×W). Contrast is a multiple (about 1–2.5) of the frame's own texture amplitude ``tex`` (the std of the
high-passed frame), so a defect never outshouts the surface it sits on; sizes are given for a 256 px frame and
scaled with ``s = frame / 256``. All randomness comes from the caller's generator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]

FAMILIES: tuple[str, ...] = (
    "scratch",  # thin line, 1-3 px
    "crack",  # branching jagged dark line
    "blob_light",  # soft lighter blob
    "stain",  # soft darker blob (tide line, dulled texture)
    "pits",  # cluster of small dark dots
    "scorch",  # burn: darkened, warm, texture flattened, radial falloff
    "warp",  # local geometric displacement of the texture
    "hole",  # missing material: flat dark patch without texture
    "particle",  # foreign particle: small sharp-edged grain with a shadow
)
DEFAULT_HELD_OUT = "particle"
#: A soft defect's pixels count as defective where its strength reaches this fraction of its peak.
MASK_LEVEL = 0.25


def texture_amplitude(frame: Frame) -> float:
    """The frame's texture amplitude: std of the frame minus its 8 px-blurred self, at least 0.03."""
    grey = frame.mean(axis=2) if frame.ndim == 3 else frame
    high = grey - cv2.GaussianBlur(grey, (0, 0), 8.0)
    return max(0.03, float(high.std()))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> Frame:
    """Smooth unit-ish noise of ``shape``: a ``cells`` lattice upsampled bicubically."""
    lattice = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return np.asarray(cv2.resize(lattice, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC), np.float32)


def _centre(rng: np.random.Generator, n: int, margin: float) -> npt.NDArray[np.float64]:
    return rng.uniform(margin, n - margin, 2)


def _add(frame: Frame, strength: Frame, delta: float | np.floating[Any] | npt.NDArray[np.floating[Any]]) -> None:
    """``frame += delta * strength`` (a per-channel ``delta`` on colour frames)."""
    if frame.ndim == 3:
        frame += strength[..., None] * np.asarray(delta, np.float32)
    else:
        frame += strength * float(np.mean(delta))


def _blend(frame: Frame, other: Frame, strength: Frame) -> None:
    """``frame += (other - frame) * strength``."""
    m = strength[..., None] if frame.ndim == 3 else strength
    frame += (other - frame) * m


def _lines(n: int, polylines: list[npt.NDArray[np.float64]], width: int) -> Frame:
    """Anti-aliased polylines rasterised into a float mask in [0, 1]."""
    canvas = np.zeros((n, n), np.uint8)
    pts = [np.round(p * 16.0).astype(np.int32).reshape(-1, 1, 2) for p in polylines]
    cv2.polylines(canvas, pts, False, 255, thickness=width, lineType=cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def _blob(rng: np.random.Generator, n: int, c: npt.NDArray[np.float64], radius: float, ragged: float) -> Frame:
    """An irregular soft-edged blob in [0, 1] around ``c``."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    a = rng.uniform(0.0, np.pi)
    stretch = rng.uniform(0.6, 1.0)
    du = ((xx - c[0]) * np.cos(a) + (yy - c[1]) * np.sin(a)) / radius
    dv = (-(xx - c[0]) * np.sin(a) + (yy - c[1]) * np.cos(a)) / (radius * stretch)
    # a ragged rim; the factor is clipped so that the blob stays one piece
    rough = np.clip(1.0 + ragged * smooth_noise(rng, (n, n), max(3, int(n / radius / 2.0))), 0.75, 1.25)
    rho = np.sqrt(du**2 + dv**2) * rough
    b = np.clip((1.1 - rho) / 0.45, 0.0, 1.0)
    return np.asarray(b * b * (3.0 - 2.0 * b), np.float32)


def _mask(strength: Frame) -> Mask:
    peak = float(strength.max())
    return np.asarray(strength >= MASK_LEVEL * peak, bool) if peak > 0 else np.zeros(strength.shape, bool)


def scratch(frame: Frame, rng: np.random.Generator, tex: float, s: float) -> Mask:
    """A thin line (1-3 px), straight or gently curved, darker or lighter, fading in places."""
    n = frame.shape[0]
    c = _centre(rng, n, 0.3 * n)
    length = rng.uniform(0.2, 0.45) * n
    a = rng.uniform(0.0, np.pi)
    d, normal = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    t = np.linspace(0.0, 1.0, 48)[:, None]
    p0, p2, p1 = c - d * length / 2, c + d * length / 2, c + normal * rng.uniform(-0.15, 0.15) * length
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    width = max(1, round(int(rng.integers(1, 4)) * s))
    line = _lines(n, [curve], width)
    sign = -1.0 if rng.random() < 0.6 else 1.0
    _add(frame, line * np.clip(0.85 + 0.4 * smooth_noise(rng, (n, n), 6), 0.5, 1.0), sign * rng.uniform(1.8, 3.0) * tex)
    return line >= 0.5


def crack(frame: Frame, rng: np.random.Generator, tex: float, s: float) -> Mask:
    """A jagged dark line with one to three side branches."""
    n = frame.shape[0]
    c = _centre(rng, n, 0.3 * n)

    def walk(start: npt.NDArray[np.float64], heading: float, length: float) -> npt.NDArray[np.float64]:
        steps = max(3, int(length / (4.0 * s)))
        turns = heading + np.cumsum(rng.normal(0.0, 0.12, steps)) + rng.normal(0.0, 0.35, steps)
        seg = rng.uniform(3.0, 5.0, steps) * s
        return np.vstack(
            [start[None], start + np.cumsum(np.stack([np.cos(turns), np.sin(turns)], 1) * seg[:, None], 0)]
        )

    heading = rng.uniform(0.0, 2.0 * np.pi)
    length = rng.uniform(0.25, 0.45) * n
    trunk = np.vstack([walk(c, heading + np.pi, length / 2)[::-1], walk(c, heading, length / 2)[1:]])
    branches = []
    for _ in range(int(rng.integers(1, 4))):
        at = trunk[int(rng.integers(2, len(trunk) - 2))]
        branches.append(
            walk(at, heading + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.2), length * rng.uniform(0.15, 0.4))
        )
    line = np.maximum(_lines(n, [trunk], max(1, round(2 * s))), 0.8 * _lines(n, branches, max(1, round(s))))
    _add(frame, line, -rng.uniform(1.8, 2.8) * tex)
    return line >= 0.4


def blob_light(frame: Frame, rng: np.random.Generator, tex: float, s: float) -> Mask:
    """A soft lighter patch (residue, bleached spot), 8-22 px radius."""
    n = frame.shape[0]
    b = _blob(rng, n, _centre(rng, n, 0.2 * n), rng.uniform(8.0, 22.0) * s, 0.25)
    _add(frame, b, rng.uniform(1.2, 2.0) * tex)
    return _mask(b)


def stain(frame: Frame, rng: np.random.Generator, tex: float, s: float) -> Mask:
    """A soft darker patch that dulls the texture, with a faint tide line; tinted on colour frames."""
    n = frame.shape[0]
    b = _blob(rng, n, _centre(rng, n, 0.2 * n), rng.uniform(8.0, 22.0) * s, 0.3)
    _blend(frame, np.asarray(cv2.GaussianBlur(frame, (0, 0), 1.5 * s), np.float32), b * rng.uniform(0.3, 0.6))
    tint = np.array([1.0, 0.9, 0.7], np.float32) if frame.ndim == 3 else np.float32(1.0)
    _add(frame, b, -rng.uniform(1.0, 1.8) * tex * tint)
    _add(frame, np.asarray(b * (1.0 - b) * 4.0, np.float32), -0.6 * tex)
    return _mask(b)


def pits(frame: Frame, rng: np.random.Generator, tex: float, s: float) -> Mask:
    """A cluster of 5-14 small dark dots (1-3 px radius) within 8-22 px."""
    n = frame.shape[0]
    c = _centre(rng, n, 0.2 * n)
    spread = rng.uniform(8.0, 22.0) * s
    dots = np.zeros((n, n), np.float32)
    for _ in range(int(rng.integers(5, 15))):
        p = c + rng.normal(0.0, spread / 2.0, 2)
        cv2.circle(dots, (int(p[0] * 16), int(p[1] * 16)), max(16, int(rng.uniform(1.0, 3.0) * s * 16)), 1.0, -1,
                   cv2.LINE_AA, 4)  # fmt: skip
    dots = np.asarray(cv2.GaussianBlur(dots, (0, 0), 0.5 * s), np.float32)
    _add(frame, dots, -rng.uniform(1.8, 2.8) * tex)
    return _mask(dots)


def scorch(frame: Frame, rng: np.random.Generator, tex: float, s: float) -> Mask:
    """A burn mark: darker towards its centre, warm on colour frames, the texture flattened."""
    n = frame.shape[0]
    b = _blob(rng, n, _centre(rng, n, 0.22 * n), rng.uniform(12.0, 28.0) * s, 0.35)
    core = np.asarray(b**2, np.float32)
    _blend(frame, np.asarray(cv2.GaussianBlur(frame, (0, 0), 2.5 * s), np.float32), core * rng.uniform(0.5, 0.8))
    tint = np.array([0.8, 1.0, 1.3], np.float32) if frame.ndim == 3 else np.float32(1.0)
    _add(frame, core, -rng.uniform(1.0, 1.8) * tex * tint)
    _add(frame, b, -0.5 * tex)
    return _mask(b)


def warp(frame: Frame, rng: np.random.Generator, tex: float, s: float) -> Mask:
    """A local geometric displacement (dent, pull): the texture pushed or swirled within 10-24 px."""
    n = frame.shape[0]
    c = _centre(rng, n, 0.22 * n)
    radius = rng.uniform(10.0, 24.0) * s
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    dx, dy = xx - np.float32(c[0]), yy - np.float32(c[1])
    g = np.exp(-(dx**2 + dy**2) / (2.0 * radius**2)).astype(np.float32)
    amp = rng.uniform(0.25, 0.45) * radius
    if rng.random() < 0.5:  # swirl
        ang = rng.choice([-1.0, 1.0]) * amp / radius * g
        ux, uy = dx * np.cos(ang) - dy * np.sin(ang) - dx, dx * np.sin(ang) + dy * np.cos(ang) - dy
    else:  # push (bulge or pinch)
        k = rng.choice([-1.0, 1.0]) * amp / radius
        ux, uy = k * dx * g, k * dy * g
    src = frame.copy()
    map_x, map_y = (xx + ux).astype(np.float32), (yy + uy).astype(np.float32)
    frame[...] = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.asarray(np.hypot(ux, uy) >= 1.0, bool)


def hole(frame: Frame, rng: np.random.Generator, tex: float, s: float) -> Mask:
    """Missing material: a flat, textureless darker patch (4-12 px radius) with a soft lit rim on one side."""
    n = frame.shape[0]
    c = _centre(rng, n, 0.2 * n)
    b = _blob(rng, n, c, rng.uniform(4.0, 12.0) * s, 0.3)
    local = cv2.GaussianBlur(frame, (0, 0), 6.0 * s)
    depth = rng.uniform(1.5, 2.5) * tex
    _blend(frame, local - np.float32(depth), b)
    rim = np.asarray(cv2.GaussianBlur(b, (0, 0), 1.5 * s) - b, np.float32).clip(0.0, None)
    shift = np.array([[1, 0, rng.uniform(-2, 2) * s], [0, 1, rng.uniform(-2, 2) * s]], np.float32)
    _add(frame, np.asarray(cv2.warpAffine(rim, shift, (n, n)), np.float32), 1.5 * tex)
    return _mask(b)


def particle(frame: Frame, rng: np.random.Generator, tex: float, s: float) -> Mask:
    """A foreign grain 4-10 px across: sharp-edged, its own flat tone (lighter or darker), a soft shadow beside it."""
    n = frame.shape[0]
    c = _centre(rng, n, 0.2 * n)
    k = int(rng.integers(5, 9))
    r = rng.uniform(2.0, 5.0) * s * rng.uniform(0.6, 1.0, k)
    ang = np.sort(rng.uniform(0.0, 2.0 * np.pi, k))
    poly = np.stack([c[0] + r * np.cos(ang), c[1] + r * np.sin(ang)], 1)
    grain = np.zeros((n, n), np.float32)
    cv2.fillPoly(grain, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    off = rng.uniform(1.0, 2.5, 2) * s * rng.choice([-1.0, 1.0], 2)
    shadow = cv2.GaussianBlur(
        cv2.warpAffine(grain, np.array([[1, 0, off[0]], [0, 1, off[1]]], np.float32), (n, n)), (0, 0), s
    )
    _add(frame, np.asarray(shadow * (1.0 - grain), np.float32), -1.0 * tex)
    grey = frame.mean(axis=2) if frame.ndim == 3 else frame
    level = float(grey[int(c[1]), int(c[0])]) + rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 2.5) * tex
    colour = np.float32(level) * (rng.uniform(0.8, 1.2, 3).astype(np.float32) if frame.ndim == 3 else np.float32(1))
    _blend(frame, np.broadcast_to(colour, frame.shape).astype(np.float32), grain)
    return np.asarray(grain >= 0.5, bool)


PAINTERS: dict[str, Callable[[Frame, np.random.Generator, float, float], Mask]] = {
    "scratch": scratch,
    "crack": crack,
    "blob_light": blob_light,
    "stain": stain,
    "pits": pits,
    "scorch": scorch,
    "warp": warp,
    "hole": hole,
    "particle": particle,
}
assert tuple(PAINTERS) == FAMILIES


def paint(frame: Frame, family: str, rng: np.random.Generator, s: float) -> Mask:
    """Paint one defect of ``family`` on ``frame`` in place; its pixel mask (never empty)."""
    tex = texture_amplitude(frame)
    for _ in range(20):
        trial = frame.copy()
        mask = PAINTERS[family](trial, rng, tex, s)
        if mask.any():
            frame[...] = trial
            return mask
    raise RuntimeError(f"could not place a {family} defect")  # pragma: no cover - a mask is empty only by rare chance
