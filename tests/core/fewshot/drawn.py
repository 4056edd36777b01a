"""Drawn defects on a noise texture, with their true masks: the typing tests' and ``bench/defect_typing.py``'s data.

Six labelled types (``TYPES``) and one never labelled (``NOVEL``, a local warp of the texture). Everything is a
function of the seed.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

TYPES = ("scratch", "crack", "stain_light", "stain_dark", "pits", "hole")
NOVEL = "warp"
ALL = (*TYPES, NOVEL)


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Float RGB ``(h, w, 3)`` in [0, 1]: tinted, smoothed noise with slow shading."""
    base = rng.uniform(0.35, 0.6) + 0.08 * rng.standard_normal(3)
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), rng.uniform(0.8, 2.0))
    noise = noise / (noise.std() + 1e-6) * rng.uniform(0.03, 0.06)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = 0.05 * np.sin(xx / w * rng.uniform(1, 3) + yy / h * rng.uniform(1, 3) + rng.uniform(0, 6))
    img = base[None, None, :] + (noise + shade)[:, :, None]
    return np.clip(img, 0, 1).astype(np.float32)


def _point(rng: np.random.Generator, h: int, w: int, margin: float = 0.2) -> np.ndarray:
    return np.array([rng.uniform(margin, 1 - margin) * w, rng.uniform(margin, 1 - margin) * h])


def _scratch(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, float]:
    """Thin, straight, bright line."""
    m = np.zeros((h, w), np.uint8)
    c, ang = _point(rng, h, w), rng.uniform(0, np.pi)
    half = rng.uniform(0.2, 0.35) * min(h, w)
    d = np.array([np.cos(ang), np.sin(ang)]) * half
    p0, p1 = tuple((c - d).round().astype(int).tolist()), tuple((c + d).round().astype(int).tolist())
    cv2.line(m, p0, p1, 1, max(1, round(min(h, w) / 150)), cv2.LINE_8)
    return m.astype(np.float32), rng.uniform(0.2, 0.3)


def _crack(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, float]:
    """Dark, jagged polyline with one or two branches."""
    m = np.zeros((h, w), np.uint8)
    thick = max(1, round(min(h, w) / 120))
    p, ang = _point(rng, h, w, 0.3), rng.uniform(0, 2 * np.pi)
    pts = [p]
    step = min(h, w) * 0.035
    for _ in range(14):
        ang += rng.normal(0, 0.6)
        pts.append(pts[-1] + step * np.array([np.cos(ang), np.sin(ang)]))
    poly = np.array(pts).round().astype(np.int32)
    cv2.polylines(m, [poly], False, 1, thick)
    for _ in range(int(rng.integers(1, 3))):
        q, a = pts[int(rng.integers(3, 11))], ang + rng.choice([-1, 1]) * rng.uniform(0.7, 1.4)
        br = [q]
        for _ in range(5):
            a += rng.normal(0, 0.5)
            br.append(br[-1] + step * np.array([np.cos(a), np.sin(a)]))
        cv2.polylines(m, [np.array(br).round().astype(np.int32)], False, 1, thick)
    return m.astype(np.float32), -rng.uniform(0.25, 0.35)


def _blob(rng: np.random.Generator, h: int, w: int, soft: float) -> np.ndarray:
    c, r = _point(rng, h, w), rng.uniform(0.08, 0.16) * min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = np.arctan2(yy - c[1], xx - c[0])
    wobble = 1 + 0.15 * np.sin(3 * ang + rng.uniform(0, 6)) + 0.08 * np.sin(5 * ang + rng.uniform(0, 6))
    dist = np.hypot(xx - c[0], yy - c[1]) / (r * wobble)
    return np.clip((1 - dist) / soft + 0.5, 0, 1).astype(np.float32)


def _stain_light(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, float]:
    return _blob(rng, h, w, rng.uniform(0.4, 0.7)), rng.uniform(0.12, 0.2)


def _stain_dark(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, float]:
    return _blob(rng, h, w, rng.uniform(0.4, 0.7)), -rng.uniform(0.12, 0.2)


def _pits(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, float]:
    """A cluster of small dark dots."""
    m = np.zeros((h, w), np.uint8)
    c, spread = _point(rng, h, w, 0.3), rng.uniform(0.04, 0.07) * min(h, w)
    for _ in range(int(rng.integers(6, 14))):
        p = (c + rng.normal(0, spread, 2)).round().astype(int)
        cv2.circle(m, (int(p[0]), int(p[1])), max(1, round(rng.uniform(0.006, 0.012) * min(h, w))), 1, -1)
    return m.astype(np.float32), -rng.uniform(0.25, 0.35)


def _hole(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, float]:
    """A round, sharp-edged, near-black disk."""
    m = np.zeros((h, w), np.uint8)
    c, r = _point(rng, h, w), rng.uniform(0.03, 0.06) * min(h, w)
    cv2.circle(m, (round(c[0]), round(c[1])), max(2, round(r)), 1, -1)
    return m.astype(np.float32), -0.6


DRAW: dict[str, Callable[[np.random.Generator, int, int], tuple[np.ndarray, float]]] = {
    "scratch": _scratch,
    "crack": _crack,
    "stain_light": _stain_light,
    "stain_dark": _stain_dark,
    "pits": _pits,
    "hole": _hole,
}


def _warp(rng: np.random.Generator, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A local swirl of the texture (no change in brightness): the never-labelled family."""
    h, w = img.shape[:2]
    c, r = _point(rng, h, w), rng.uniform(0.1, 0.15) * min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - c[0], yy - c[1]
    dist = np.hypot(dx, dy)
    turn = rng.choice([-1, 1]) * rng.uniform(1.5, 2.5) * np.clip(1 - dist / r, 0, 1) ** 2
    cos, sin = np.cos(turn), np.sin(turn)
    mx, my = (c[0] + cos * dx - sin * dy).astype(np.float32), (c[1] + sin * dx + cos * dy).astype(np.float32)
    out = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out, dist < 0.8 * r


def draw(kind: str, seed: int, size: tuple[int, int] = (192, 256)) -> tuple[np.ndarray, np.ndarray]:
    """One frame with one defect of ``kind`` (a ``TYPES`` name or ``NOVEL``): uint8 RGB image and bool mask."""
    rng = np.random.default_rng([seed, ALL.index(kind)])
    h, w = size
    img = texture(rng, h, w)
    if kind == NOVEL:
        out, mask = _warp(rng, img)
    else:
        alpha, delta = DRAW[kind](rng, h, w)
        if kind in ("crack", "scratch", "pits", "hole"):
            alpha = cv2.GaussianBlur(alpha, (0, 0), 0.6)
        out = img + (delta * alpha)[:, :, None]
        if kind == "stain_light":
            out[:, :, 2] -= 0.08 * alpha  # a yellowish tint
        mask = alpha >= (0.5 if kind.startswith("stain") else 0.25)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8), mask


def dataset(n_per_type: int, seed: int = 0, *, novel: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """``n_per_type`` frames of every type (then ``novel`` warps): images, masks, type names."""
    images, masks, kinds = [], [], []
    for kind in ALL:
        for i in range(novel if kind == NOVEL else n_per_type):
            img, mask = draw(kind, seed * 100_003 + i)
            images.append(img)
            masks.append(mask)
            kinds.append(kind)
    return images, masks, kinds
