"""Small charts drawn with OpenCV and numpy (no plotting library), returned as PNG bytes for inline embedding."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import cv2
import numpy as np

W, H, M = 420, 320, 48  # canvas and margin in px
INK, GRID, BLUE, RED, GREEN = (40, 40, 40), (225, 225, 225), (200, 110, 30), (40, 40, 210), (60, 160, 60)


def png_data_uri(bgr: np.ndarray) -> str:
    """``data:image/png;base64,...`` of a BGR uint8 image."""
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:  # pragma: no cover - encoding uint8 BGR does not fail
        raise ValueError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _text(
    img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.4, color: tuple[int, int, int] = INK
) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def _axes(title: str, xlabel: str, ylabel: str, xr: tuple[float, float], yr: tuple[float, float]) -> np.ndarray:
    img = np.full((H, W, 3), 255, np.uint8)
    for k in range(6):
        fx = M + k * (W - 2 * M) // 5
        fy = H - M - k * (H - 2 * M) // 5
        cv2.line(img, (fx, M), (fx, H - M), GRID, 1)
        cv2.line(img, (M, fy), (W - M, fy), GRID, 1)
        _text(img, f"{xr[0] + k * (xr[1] - xr[0]) / 5:.2g}", (fx - 10, H - M + 15), 0.33)
        _text(img, f"{yr[0] + k * (yr[1] - yr[0]) / 5:.2g}", (4, fy + 4), 0.33)
    cv2.rectangle(img, (M, M), (W - M, H - M), INK, 1)
    _text(img, title, (M, 28), 0.5)
    _text(img, xlabel, (W // 2 - 30, H - 10))
    _text(img, ylabel, (4, M - 10))
    return img


def _to_px(x: np.ndarray, y: np.ndarray, xr: tuple[float, float], yr: tuple[float, float]) -> np.ndarray:
    px = M + (np.asarray(x, float) - xr[0]) / max(xr[1] - xr[0], 1e-12) * (W - 2 * M)
    py = H - M - (np.asarray(y, float) - yr[0]) / max(yr[1] - yr[0], 1e-12) * (H - 2 * M)
    return np.stack([px, py], 1).round().astype(np.int32)


def curve_chart(
    title: str,
    xlabel: str,
    ylabel: str,
    x: Sequence[float],
    y: Sequence[float],
    *,
    marker: tuple[float, float] | None = None,
    diagonal: bool = False,
) -> np.ndarray:
    """A line chart on [0, 1]² (ROC or PR), with an optional marker (the chosen threshold's point)."""
    img = _axes(title, xlabel, ylabel, (0.0, 1.0), (0.0, 1.0))
    if diagonal:
        cv2.line(img, (M, H - M), (W - M, M), GRID, 1, cv2.LINE_AA)
    if len(x):
        cv2.polylines(img, [_to_px(np.asarray(x), np.asarray(y), (0, 1), (0, 1))], False, BLUE, 2, cv2.LINE_AA)
    if marker is not None:
        p = _to_px(np.array([marker[0]]), np.array([marker[1]]), (0, 1), (0, 1))[0]
        cv2.circle(img, (int(p[0]), int(p[1])), 5, RED, -1, cv2.LINE_AA)
    return img


def histogram_chart(
    edges: Sequence[float], series: dict[str, Sequence[int]], thresholds: dict[str, float]
) -> np.ndarray:
    """Score histograms (one outline per series, each scaled to its own peak) with vertical threshold lines."""
    e = np.asarray(edges, float)
    xr = (float(e[0]), float(e[-1]))
    img = _axes("anomaly score distribution", "anomaly score", "share of peak", xr, (0.0, 1.0))
    colours = [GREEN, RED, BLUE]
    for k, (name, counts) in enumerate(series.items()):
        c = np.asarray(counts, float)
        if c.sum() == 0:
            continue
        c = c / c.max()
        xs = np.repeat(e, 2)[1:-1]
        ys = np.repeat(c, 2)
        cv2.polylines(img, [_to_px(xs, ys, xr, (0, 1))], False, colours[k % 3], 2, cv2.LINE_AA)
        _text(img, name, (M + 6, M + 16 + 14 * k), 0.38, colours[k % 3])
    for k, (name, t) in enumerate(thresholds.items()):
        p = _to_px(np.array([t]), np.array([0.0]), xr, (0, 1))[0]
        cv2.line(img, (int(p[0]), M), (int(p[0]), H - M), INK, 1, cv2.LINE_AA)
        _text(img, name, (int(p[0]) + 3, H - M - 6 - 12 * k), 0.33)
    return img
