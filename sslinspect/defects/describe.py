"""Describe a located defect: a fixed, named vector of shape and photometric statistics of its region.

The vector does not depend on where the defect sits, nor (within resampling error) on the frame's resolution:
sizes are shares of the frame (area) or of its diagonal (lengths, widths), counts and ratios are unitless, and
the photometric statistics are measured on the frame resampled to a canonical long side (``CANON`` px), so an
image and its 2× enlargement give the same numbers. Pooled backbone features may be appended (``extra``).
What every entry means: docs/typing.md. numpy and OpenCV only (the line-side predictor calls it).
"""

from __future__ import annotations

import cv2
import numpy as np

from sslinspect.defects.regions import within
from sslinspect.defects.skeleton import skeleton_stats, thin

#: Photometric statistics are measured with the frame resampled to this long side (px).
CANON = 1024
#: The skeleton is traced on the region's crop shrunk to at most this many pixels a side (speed). 128 made describing
#: 24 % faster and named the development set as well, but moved a drawn scene's descriptor by 0.32 of the spread
#: between families when the frame doubles in size (test_frame_resolution_barely_changes_the_descriptor): kept at 256.
SKELETON_MAX = 256

SHAPE_NAMES = (
    "log_area",  # log10(area / frame area)
    "elongation",  # 1 - sqrt(minor / major second moment): 0 disk, → 1 line
    "orientation_spread",  # 1 - coherence of the mask's boundary orientations: 0 straight, 1 round
    "solidity",  # area / convex hull area
    "rect_fill",  # area / minimum-area rectangle
    "circularity",  # 4π area / perimeter²
    "log_skeleton_length",  # log10(skeleton length / frame diagonal)
    "thinness",  # log(skeleton length² / area): aspect ratio of a curve
    "log_width",  # log10(area / skeleton length / frame diagonal): mean width
    "skeleton_ends",  # log1p(end points)
    "skeleton_branches",  # log1p(branch points)
    "components",  # log1p(connected components)
    "component_spread",  # RMS centroid distance from the region's centre / equivalent radius of the hull
    "component_size_cv",  # std / mean of component areas
)
PHOTO_NAMES = (
    "grey_delta",  # mean grey inside - ring (0..1 scale): < 0 darker
    "grey_z",  # grey_delta / (ring std + 0.01)
    "dark_tail",  # 10th percentile inside - ring
    "bright_tail",  # 90th percentile inside - ring
    "lab_da",  # mean a* inside - ring, / 100
    "lab_db",  # mean b* inside - ring, / 100
    "chroma_delta",  # |(da, db)|
    "edge_contrast",  # log(gradient on the boundary / gradient in the ring)
    "edge_steepness",  # boundary gradient / (|grey_delta| + ring std): sharp edges high
    "texture_ratio",  # log(local std inside / local std in the ring)
    "gradient_ratio",  # log(gradient inside / gradient in the ring)
    "coherence_delta",  # structure-tensor coherence inside - ring (warps and smears change it)
    "orientation_shift",  # sin² of the angle between the dominant texture orientations inside and in the ring
    "inside_orientation_spread",  # 1 - resultant length of the texture orientations inside
    "ridge_dark",  # log(99th pct. of the dark-line (Hessian) response inside / in the ring): a thin dark line
    "ridge_bright",  # the same for a thin bright line
    "spot_dark",  # log(99th pct. of the dark-spot (both Hessian eigenvalues > 0) response inside / in the ring)
    "spot_bright",  # the same for a bright spot
    "line_share",  # share of the inside whose line response exceeds the ring's 99th percentile
    "core_delta",  # median grey of the region's inner third (by depth from its outline) - ring median
    "mid_delta",  # the same for the middle third
    "rim_delta",  # the same for the outer third
)
#: What the defect-aware model is also taught to tell apart in the synthetic defects it trains on: their shape (a
#: stroke with a fork is ``branched``) and their fill (the intensity fill split into darker and lighter). Generic
#: primitives, not defect types.
KIND_SHAPES = ("blob", "stroke", "dots", "branched")
KIND_FILLS = ("donor", "darker", "lighter", "blur", "noise", "warp", "colour")
#: The model's kind probabilities pooled over the region, weighted by the sharp map (log(p + 0.01); zeros where the
#: model has no kind head). On the benchmark's test sets they raised the grey surfaces' type accuracy 0.412 → 0.437
#: (every seed; bench/RESULTS.md, "What the model saw, pooled over the defect").
KIND_NAMES = tuple(f"kind_{k}" for k in KIND_SHAPES + KIND_FILLS)
DESCRIPTOR_NAMES = SHAPE_NAMES + PHOTO_NAMES + KIND_NAMES
#: Floor of the pooled kind probabilities before the log.
KIND_FLOOR = 0.01
EPS = 1e-6
#: Scales (σ, canonical px) of the line and spot filters: a 1-3 px scratch of a 256-px frame is 4-12 canonical px.
FINE_SCALES = (2.0, 4.0)


def descriptor_names(n_extra: int = 0) -> tuple[str, ...]:
    """Names of a descriptor with ``n_extra`` appended backbone features (``backbone_0``, ...)."""
    return DESCRIPTOR_NAMES + tuple(f"backbone_{i}" for i in range(n_extra))


# 4-neighbour cross: the region's one-pixel edge zones grow and shrink by it (not by regions.py's 3 × 3 square,
# which closes gaps; the descriptors were fitted and measured with the cross)
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    hgt, wid = mask.shape
    return max(x - margin, 0), max(y - margin, 0), min(x + w + margin, wid), min(y + h + margin, hgt)


def _as_float(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return np.clip(img.astype(np.float32), 0.0, 1.0)


def _hull_area(points: np.ndarray) -> float:
    """Pixel-count area of the convex hull (polygon through pixel centres + half its perimeter + 1)."""
    hull = cv2.convexHull(points)
    return float(cv2.contourArea(hull) + cv2.arcLength(hull, True) / 2 + 1)


def _rim_points(crop: np.ndarray) -> np.ndarray:
    """``(x, y)`` of the mask's pixels that miss a 4-neighbour. A pixel with both horizontal (or both vertical)
    neighbours lies between them, so it is no vertex of the convex hull: the hull (and the minimum-area rectangle,
    which OpenCV takes from the hull) of these is that of every pixel, from far fewer points."""
    u8 = crop.astype(np.uint8)
    inner = cv2.erode(u8, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    ys, xs = np.nonzero(u8 & ~inner.astype(bool))
    return np.stack([xs, ys], 1).astype(np.int32)


def _orientation_spread(crop: np.ndarray) -> float:
    """1 - length of the mean doubled-angle vector of the blurred mask's gradients (weighted by magnitude)."""
    m = cv2.GaussianBlur(crop.astype(np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(m, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(m, cv2.CV_32F, 0, 1, ksize=3)
    w = gx * gx + gy * gy  # |g|² e^{2iθ} = (gx² - gy²) + i 2 gx gy
    total = float(w.sum())
    if total <= EPS:
        return 0.0
    return float(1.0 - np.hypot(float((gx * gx - gy * gy).sum()), float((2 * gx * gy).sum())) / total)


def _skeleton_crop(crop: np.ndarray) -> tuple[np.ndarray, float]:
    """The crop shrunk to at most ``SKELETON_MAX`` a side and smoothed (a jagged outline grows spurs)."""
    scale = min(1.0, SKELETON_MAX / max(crop.shape))
    size = (max(round(crop.shape[1] * scale), 1), max(round(crop.shape[0] * scale), 1))
    cover = cv2.resize(crop.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    cover = cv2.GaussianBlur(np.pad(cover, 3), (0, 0), 1.0)
    return cover >= min(0.5, 0.5 * float(cover.max())), scale


def _components(crop: np.ndarray, hull_area: float) -> list[float]:
    n, _, stats, cents = cv2.connectedComponentsWithStats(crop.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    if n <= 2:
        return [float(np.log1p(max(n - 1, 1))), 0.0, 0.0]
    c = cents[1:]
    rms = float(np.sqrt(((c - c.mean(0)) ** 2).sum(1).mean()))
    return [float(np.log1p(n - 1)), rms / np.sqrt(hull_area / np.pi), float(areas.std() / areas.mean())]


def _perimeter(crop: np.ndarray) -> float:
    """Outline length of a (canonical-scale) mask, smoothed first: a staircase outline is longer than the shape's."""
    smooth = cv2.GaussianBlur(np.pad(crop, 3).astype(np.float32), (0, 0), 1.5) >= 0.5
    contours, _ = cv2.findContours(smooth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return float(sum(cv2.arcLength(c, True) for c in contours)) + np.pi  # + π: a lone pixel is a small disk


def _resample_mask(crop: np.ndarray, scale: float) -> np.ndarray:
    """A boolean crop resampled by ``scale`` (see :func:`_mask_to_size`)."""
    size = (max(round(crop.shape[1] * scale), 1), max(round(crop.shape[0] * scale), 1))
    return _mask_to_size(crop, size, cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _mask_to_size(crop: np.ndarray, size: tuple[int, int], interp: int = cv2.INTER_AREA) -> np.ndarray:
    """A boolean crop resampled to ``size`` (w, h): coverage at least half, or half the largest where thinner, so a
    thin line keeps its pixels and a non-empty mask stays non-empty."""
    cover = cv2.resize(crop.astype(np.float32), size, interpolation=interp)
    return cover >= min(0.5, 0.5 * float(cover.max()))


def shape_features(mask: np.ndarray, *, canon: int = CANON) -> np.ndarray:
    """The ``SHAPE_NAMES`` statistics of a boolean frame-sized mask (measured at the canonical scale)."""
    m = np.asarray(mask, bool)
    area = float(np.count_nonzero(m))
    if area == 0:
        return np.zeros(len(SHAPE_NAMES), np.float32)
    frame, diag, scale = float(m.size), float(np.hypot(*m.shape)), canon / max(m.shape)
    x0, y0, x1, y1 = _box(m, 2)
    crop = np.pad(_resample_mask(m[y0:y1, x0:x1], scale), 2)
    area_c = float(np.count_nonzero(crop))
    ys, xs = np.nonzero(crop)
    pts = np.stack([xs, ys], 1).astype(np.int32)
    if len(pts) >= 2:
        ev = np.sort(np.linalg.eigvalsh(np.cov(pts.T.astype(np.float64))))
        elongation = 1.0 - float(np.sqrt(max(ev[0], 0) + 1 / 12) / np.sqrt(max(ev[1], 0) + 1 / 12))
    else:
        elongation = 0.0
    rim = _rim_points(crop)  # the hull's vertices are among them: the same hull and rectangle as from every pixel
    hull = _hull_area(rim)
    (_, _), (rw, rh), _ = cv2.minAreaRect(rim)
    perimeter = _perimeter(crop)
    small, sk_scale = _skeleton_crop(crop)
    sk = skeleton_stats(thin(small))
    length = max(sk.length / sk_scale / scale, 1.0)  # native pixels
    feats = [
        np.log10(area / frame),
        elongation,
        _orientation_spread(small),
        min(area_c / hull, 1.0),
        min(area_c / ((rw + 1) * (rh + 1)), 1.0),
        min(4 * np.pi * area_c / perimeter**2, 1.5),
        np.log10(length / diag),
        np.log(length**2 / area),
        np.log10(area / length / diag),
        np.log1p(sk.ends),
        np.log1p(sk.branches),
        *_components(crop, hull),
    ]
    return np.asarray(feats, np.float32)


def _canonical(
    image: np.ndarray, mask: np.ndarray, canon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crop round the region (with room for the ring), resampled so that the frame's long side is ``canon``.

    Returns:
        RGB (or grey) float crop, inside mask, ring mask, boundary mask.
    """
    scale = canon / max(mask.shape)
    area = float(np.count_nonzero(mask))
    ring = min(max(4.0 / scale, 0.5 * np.sqrt(area / np.pi)), 0.1 * float(np.hypot(*mask.shape)))
    x0, y0, x1, y1 = _box(mask, int(np.ceil(ring + 3.0 / scale)) + 1)
    size = (max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(image[y0:y1, x0:x1], size, interpolation=interp)
    inside = _resample_mask(mask[y0:y1, x0:x1], scale)
    u8 = inside.astype(np.uint8)
    ring_c = max(round(ring * scale), 2)
    near = cv2.dilate(u8, _CROSS) > 0
    outer = within(u8, ring_c + 1) & ~near  # a canonical-scale ring can be 100 px wide
    if not outer.any():
        outer = ~inside
    if not outer.any():  # the region is the whole frame: nothing to compare with, contrasts come out 0
        outer = inside
    boundary = near & ~(cv2.erode(u8, _CROSS) > 0)
    return img, inside, outer, boundary


def _zone_mean(values: np.ndarray, zone: np.ndarray) -> float:
    return float(values[zone].mean()) if zone.any() else 0.0


def _texture(grey: np.ndarray, inside: np.ndarray, ring: np.ndarray, boundary: np.ndarray) -> list[float]:
    """Edge, texture and orientation statistics (``edge_contrast`` ... ``inside_orientation_spread``)."""
    g = cv2.GaussianBlur(grey, (0, 0), 1.0)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8
    mag = np.sqrt(gx * gx + gy * gy)
    mean = cv2.blur(grey, (5, 5))
    local_std = np.sqrt(np.maximum(cv2.blur(grey * grey, (5, 5)) - mean * mean, 0.0))
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), 2.0)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), 2.0)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), 2.0)
    energy = jxx + jyy
    cos2, sin2 = jxx - jyy, 2 * jxy
    coherence = np.hypot(cos2, sin2) / (energy + 1e-8)
    ring_grad, ring_std = _zone_mean(mag, ring), float(grey[ring].std()) if ring.any() else 0.0

    def angle(zone: np.ndarray) -> float:
        return 0.5 * float(np.arctan2(sin2[zone].sum(), cos2[zone].sum())) if zone.any() else 0.0

    inside_energy = float(energy[inside].sum())
    spread = 1.0 - np.hypot(float(cos2[inside].sum()), float(sin2[inside].sum())) / max(inside_energy, 1e-12)
    delta = abs(_zone_mean(grey, inside) - _zone_mean(grey, ring))
    edge = _zone_mean(mag, boundary)
    return [
        float(np.log((edge + 1e-4) / (ring_grad + 1e-4))),
        edge / (delta + ring_std + 1e-3),
        float(np.log((_zone_mean(local_std, inside) + 1e-4) / (_zone_mean(local_std, ring) + 1e-4))),
        float(np.log((_zone_mean(mag, inside) + 1e-4) / (ring_grad + 1e-4))),
        _zone_mean(coherence, inside) - _zone_mean(coherence, ring),
        float(np.sin(angle(inside) - angle(ring)) ** 2),
        float(spread) if inside_energy > 1e-12 else 0.0,
    ]


def _half(grey: np.ndarray, inside: np.ndarray, ring: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grey crop and its zones (never empty: :func:`_canonical`'s are not) at half the canonical resolution: the
    line, spot and depth statistics need no finer grid, and a quarter of the pixels to filter and rank makes them
    cheap."""
    size = (max(grey.shape[1] // 2, 1), max(grey.shape[0] // 2, 1))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA), _mask_to_size(inside, size), _mask_to_size(ring, size)


def _fine(g: np.ndarray, inside: np.ndarray, ring: np.ndarray) -> list[float]:
    """Line and spot statistics (``ridge_dark`` ... ``line_share``) from the scale-normalised Hessian of the grey
    crop at half the canonical resolution (:func:`_half`). They see a thin line or a dot *inside* a region much
    wider than it (an anomaly map's region is a blob round the defect), where the region's means and percentiles
    dilute it."""
    dark_line = np.zeros_like(g)
    bright_line, dark_spot, bright_spot = dark_line.copy(), dark_line.copy(), dark_line.copy()
    for s in FINE_SCALES:
        s = s / 2
        b = cv2.GaussianBlur(g, (0, 0), s)
        xx = cv2.Sobel(b, cv2.CV_32F, 2, 0, ksize=3) * (s * s)
        yy = cv2.Sobel(b, cv2.CV_32F, 0, 2, ksize=3) * (s * s)
        xy = cv2.Sobel(b, cv2.CV_32F, 1, 1, ksize=3) * (s * s / 4)
        half_trace, root = (xx + yy) / 2, np.sqrt(((xx - yy) / 2) ** 2 + xy * xy)
        hi, lo = half_trace + root, half_trace - root  # eigenvalues, hi >= lo; a dark line: hi > 0, lo ≈ 0
        np.maximum(dark_line, np.maximum(hi - 2 * np.maximum(lo, 0), 0), out=dark_line)
        np.maximum(bright_line, np.maximum(-lo - 2 * np.maximum(-hi, 0), 0), out=bright_line)
        np.maximum(dark_spot, np.maximum(lo, 0), out=dark_spot)
        np.maximum(bright_spot, np.maximum(-hi, 0), out=bright_spot)
    line = np.maximum(dark_line, bright_line)
    responses = np.stack([dark_line, bright_line, dark_spot, bright_spot])
    p_in = np.percentile(responses[:, inside], 99, axis=1)
    p_ring = np.percentile(responses[:, ring], 99, axis=1)
    share = float((line[inside] > np.percentile(line[ring], 99)).mean())
    return [*np.log((p_in + 1e-3) / (p_ring + 1e-3)).astype(float).tolist(), share]


def _depth_profile(grey: np.ndarray, inside: np.ndarray, ring: np.ndarray) -> list[float]:
    """``core_delta``, ``mid_delta``, ``rim_delta``: median grey of the inner, middle and outer third of the region by
    depth (distance to its outline over the largest), minus the ring's median. A burn mark darkens towards its core,
    a stain evenly, a hole to its edge; the region round them is a blob wider than each, so its mean mixes them."""
    dist = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
    depth = dist / max(float(dist.max()), EPS)
    ref = float(np.median(grey[ring]))
    out = []
    for lo, hi in ((2 / 3, np.inf), (1 / 3, 2 / 3), (0.0, 1 / 3)):
        zone = inside & (depth >= lo) & (depth < hi)  # the inner third holds the deepest pixel; others may be empty
        out.append(float(np.median(grey[zone])) - ref if zone.any() else 0.0)
    return out


def photometric_features(image: np.ndarray, mask: np.ndarray, *, canon: int = CANON) -> np.ndarray:
    """The ``PHOTO_NAMES`` statistics: inside the region vs a ring around it (grey and CIELAB colour)."""
    m = np.asarray(mask, bool)
    if not m.any():
        return np.zeros(len(PHOTO_NAMES), np.float32)
    img, inside, ring, boundary = _canonical(_as_float(image), m, canon)
    colour = img.ndim == 3 and img.shape[2] >= 3
    grey = cv2.cvtColor(img[:, :, :3], cv2.COLOR_RGB2GRAY) if colour else img
    g_in, g_ring = grey[inside], grey[ring]
    delta = float(g_in.mean() - g_ring.mean())
    da = db = 0.0
    if colour:
        lab = cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_RGB2Lab)
        da = (_zone_mean(lab[:, :, 1], inside) - _zone_mean(lab[:, :, 1], ring)) / 100
        db = (_zone_mean(lab[:, :, 2], inside) - _zone_mean(lab[:, :, 2], ring)) / 100
    half = _half(grey, inside, ring)
    feats = [
        delta,
        delta / (float(g_ring.std()) + 0.01),
        float(np.percentile(g_in, 10) - np.percentile(g_ring, 10)),
        float(np.percentile(g_in, 90) - np.percentile(g_ring, 90)),
        da,
        db,
        float(np.hypot(da, db)),
        *_texture(grey, inside, ring, boundary),
        *_fine(*half),
        *_depth_profile(*half),
    ]
    return np.asarray(feats, np.float32)


def kind_features(kinds: np.ndarray | None, mask: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """The ``KIND_NAMES`` entries: ``log(p + KIND_FLOOR)`` of the kind probabilities ``kinds`` ``(K, h, w)`` (any
    resolution, resized to the mask's) averaged over ``mask``, each pixel weighted by ``weight`` (the sharp map on
    its calibrated scale, negatives counting 0; None or nothing above 0 in the mask: uniform). Zeros when ``kinds``
    is None (a model without a kind head).

    Raises:
        ValueError: if ``kinds`` does not have one channel per entry.
    """
    if kinds is None:
        return np.zeros(len(KIND_NAMES), np.float32)
    k = np.asarray(kinds, np.float32)
    if k.ndim != 3 or k.shape[0] != len(KIND_NAMES):
        raise ValueError(f"kind maps {k.shape}: expected ({len(KIND_NAMES)}, h, w)")
    m = np.asarray(mask, bool)
    h, w = m.shape
    planes = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in k])
    wt = m.astype(np.float32)
    if weight is not None:
        wmap = np.asarray(weight, np.float32)
        if wmap.shape != m.shape:
            wmap = np.asarray(cv2.resize(wmap, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
        weighted = (wt * np.clip(wmap, 0.0, None)).astype(np.float32)
        wt = weighted if float(weighted.sum()) > EPS else wt
    total = float(wt.sum())
    if total <= EPS:
        return np.zeros(len(KIND_NAMES), np.float32)
    pooled = (planes * wt).reshape(len(KIND_NAMES), -1).sum(1) / total
    return np.log(pooled + KIND_FLOOR).astype(np.float32)


def describe(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    kinds: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    extra: np.ndarray | None = None,
    canon: int = CANON,
) -> np.ndarray:
    """The descriptor of one region: ``DESCRIPTOR_NAMES`` in order, then ``extra`` (pooled backbone features).

    Args:
        image: The frame: ``(H, W, 3)`` RGB or ``(H, W)`` grey; uint8, uint16 or float in [0, 1].
        mask: Boolean ``(H, W)`` region (``Region.mask``).
        kinds: The model's kind probabilities ``(K, h, w)`` for the ``KIND_NAMES`` entries (None: zeros).
        weight: Per-pixel weight of the kind probabilities, ``(H, W)`` (see :func:`kind_features`).
        extra: Optional features appended as they are (the caller pools them inside the mask).
        canon: Long side of the frame for the photometric statistics.

    Returns:
        float32 ``(len(DESCRIPTOR_NAMES) + extra.size,)``; finite.
    """
    m = np.asarray(mask, bool)
    if m.shape != np.shape(image)[:2]:
        raise ValueError(f"mask {m.shape} and image {np.shape(image)[:2]} differ in size")
    parts = [
        shape_features(m, canon=canon),
        photometric_features(image, m, canon=canon),
        kind_features(kinds, m, weight),
    ]
    if extra is not None:
        parts.append(np.asarray(extra, np.float32).ravel())
    return np.nan_to_num(np.concatenate(parts), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def describe_all(
    image: np.ndarray, masks: list[np.ndarray], *, extra: np.ndarray | None = None, canon: int = CANON
) -> np.ndarray:
    """Descriptors ``(N, D)`` of several regions of one frame; ``extra`` is ``(N, E)`` or None."""
    rows = [describe(image, m, extra=None if extra is None else extra[i], canon=canon) for i, m in enumerate(masks)]
    return np.stack(rows) if rows else np.zeros((0, len(DESCRIPTOR_NAMES)), np.float32)
