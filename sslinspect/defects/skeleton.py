"""Skeleton of a binary mask (Zhang–Suen thinning) with its length, end points and branch points.

``cv2.ximgproc.thinning`` lives in opencv-contrib, which ``opencv-python-headless`` does not ship, so the thinning
is done here: each sub-iteration codes every pixel's 8 neighbours as one byte (a ``filter2D`` with powers of two,
exact in 8 bits: the codes are integers up to 255) and looks the byte up in a 256-entry table (``cv2.LUT``), all in
OpenCV's vectorised 8-bit routines. numpy and OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Neighbours P2..P9 clockwise from north, as (dy, dx); bit k of the code is neighbour P(k+2).
_NEIGHBOURS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def _code_kernel() -> np.ndarray:
    k = np.zeros((3, 3), np.float32)
    for bit, (dy, dx) in enumerate(_NEIGHBOURS):
        k[dy + 1, dx + 1] = float(1 << bit)
    return k


_KERNEL = _code_kernel()


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per neighbour code: delete in sub-iteration 1, delete in sub-iteration 2, neighbour count, crossings."""
    first = np.zeros(256, bool)
    second = np.zeros(256, bool)
    count = np.zeros(256, np.int32)
    crossings = np.zeros(256, np.int32)
    for code in range(256):
        p = [(code >> b) & 1 for b in range(8)]  # p[0] = P2 (N), p[2] = P4 (E), p[4] = P6 (S), p[6] = P8 (W)
        b = sum(p)
        a = sum(1 for i in range(8) if p[i] == 0 and p[(i + 1) % 8] == 1)
        count[code], crossings[code] = b, a
        base = 2 <= b <= 6 and a == 1
        first[code] = base and p[0] * p[2] * p[4] == 0 and p[2] * p[4] * p[6] == 0
        second[code] = base and p[0] * p[2] * p[6] == 0 and p[0] * p[4] * p[6] == 0
    return first, second, count, crossings


_FIRST, _SECOND, _COUNT, _CROSSINGS = _tables()
_FIRST_LUT, _SECOND_LUT = _FIRST.astype(np.uint8), _SECOND.astype(np.uint8)


def _codes8(img: np.ndarray) -> np.ndarray:
    """The neighbour code (0..255) of every pixel of a 0/1 uint8 image, as uint8."""
    return cv2.filter2D(img, cv2.CV_8U, _KERNEL, borderType=cv2.BORDER_CONSTANT)


def _codes(img: np.ndarray) -> np.ndarray:
    return _codes8((np.asarray(img) > 0).astype(np.uint8)).astype(np.int32)


def thin(mask: np.ndarray, max_iter: int = 1000) -> np.ndarray:
    """One-pixel-wide skeleton (bool) of a boolean mask, by Zhang–Suen thinning."""
    img: np.ndarray = (np.asarray(mask) > 0).astype(np.uint8)
    for _ in range(max_iter):
        changed = False
        for table in (_FIRST_LUT, _SECOND_LUT):
            kill = cv2.bitwise_and(cv2.LUT(_codes8(img), table), img)
            if cv2.countNonZero(kill):
                img = cv2.subtract(img, kill)
                changed = True
        if not changed:
            break
    return img.astype(bool)


@dataclass(frozen=True, slots=True)
class SkeletonStats:
    """Length in pixels (diagonal steps count √2), end points, and branch points (junction clusters)."""

    length: float
    ends: int
    branches: int


def skeleton_stats(skel: np.ndarray) -> SkeletonStats:
    """Length, end points and branch points of a one-pixel-wide skeleton."""
    s = np.ascontiguousarray(skel, np.uint8)
    if not s.any():
        return SkeletonStats(0.0, 0, 0)
    on = s > 0
    codes = _codes(s)
    ends = int(np.count_nonzero(on & (_COUNT[codes] == 1)))
    junction = (on & (_CROSSINGS[codes] >= 3)).astype(np.uint8)
    branches = cv2.connectedComponents(junction, connectivity=8)[0] - 1 if junction.any() else 0
    p = np.pad(on, 1)
    c = p[1:-1, 1:-1]
    east, south = c & p[1:-1, 2:], c & p[2:, 1:-1]
    # a diagonal step counts only where no orthogonal path already joins the two pixels
    se = c & p[2:, 2:] & ~p[1:-1, 2:] & ~p[2:, 1:-1]
    sw = c & p[2:, :-2] & ~p[1:-1, :-2] & ~p[2:, 1:-1]
    north, west = c & p[:-2, 1:-1], c & p[1:-1, :-2]
    # an L corner (two orthogonal steps round a pixel) is one diagonal step of a staircase: 2 → √2
    corners = (north & east) | (east & south) | (south & west) | (west & north)
    edges = float(east.sum() + south.sum()) + np.sqrt(2.0) * float(se.sum() + sw.sum())
    edges -= (2.0 - np.sqrt(2.0)) * float(corners.sum())
    isolated = int(np.count_nonzero(on & (_COUNT[codes] == 0)))
    return SkeletonStats(max(edges, 0.0) + isolated, ends + 2 * isolated, int(branches))
