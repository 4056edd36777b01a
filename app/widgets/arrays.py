"""Qt-free array helpers of the plots: a growing series buffer and a vectorised point-in-polygon test."""

from __future__ import annotations

import numpy as np


class SeriesBuffer:
    """An append-only ``(x, y)`` buffer that doubles its capacity when full (O(1) amortised appends)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._x = np.empty(capacity, np.float64)
        self._y = np.empty(capacity, np.float64)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        """Add one point."""
        if self.n == len(self._x):
            self._x = np.concatenate([self._x, np.empty_like(self._x)])
            self._y = np.concatenate([self._y, np.empty_like(self._y)])
        self._x[self.n] = x
        self._y[self.n] = y
        self.n += 1

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` points."""
        self.n = max(0, min(n, self.n))

    @property
    def x(self) -> np.ndarray:
        """The x values so far (a view)."""
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        """The y values so far (a view)."""
        return self._y[: self.n]


def points_in_polygon(xy: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``xy`` inside polygon ``poly`` (even-odd rule, vectorised over edges)."""
    inside = np.zeros(len(xy), bool)
    if len(poly) < 3:
        return inside
    lo, hi = poly.min(0), poly.max(0)
    cand = np.flatnonzero(np.all((xy >= lo) & (xy <= hi), axis=1))
    x, y = xy[cand, 0], xy[cand, 1]
    res = np.zeros(len(cand), bool)
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        res ^= crosses & (x < xc)
    inside[cand] = res
    return inside
