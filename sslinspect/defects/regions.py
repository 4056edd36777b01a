"""Locate defects: anomaly map → binary mask at the frame's resolution → connected components → defects.

A defect is one connected component plus every component close to it (single linkage): a pit cluster or a
dotted scratch is one defect, not twelve. "Close" is a gap of at most ``merge_frac`` of the frame diagonal, or
``merge_rel`` of the largest component's equivalent diameter, whichever is larger.

numpy and OpenCV only: the line-side predictor (no torch, no scikit-learn) calls this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Components closer than this share of the frame diagonal merge into one defect.
MERGE_FRAC = 0.06
#: ...or closer than this many equivalent diameters of the largest component.
MERGE_REL = 2.0
#: Largest merging radius (px) grown by a dilation; beyond it, by a distance transform (the same disk, faster).
DILATE_UP_TO = 24
#: Components (after merging) smaller than this share of the frame are dropped as speckle.
MIN_AREA_FRAC = 2e-5
#: Closing radius as a share of the frame diagonal (at least 1 px): fills one-pixel gaps in a thresholded map.
CLOSE_FRAC = 0.002


@dataclass(frozen=True, slots=True)
class Region:
    """One located defect.

    Attributes:
        mask: Boolean ``(H, W)`` mask at the frame's resolution (every component of the defect).
        bbox: ``(x0, y0, x1, y1)``, end-exclusive, around the mask.
        components: Connected components merged into this defect.
        score: Highest map value inside the mask (1.0 for a region taken from a binary mask without a map).
    """

    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    components: int
    score: float

    @property
    def area(self) -> int:
        """Pixels in the mask."""
        return int(np.count_nonzero(self.mask))


def resize_map(amap: np.ndarray, frame_shape: tuple[int, int]) -> np.ndarray:
    """An anomaly map of any resolution resized (bilinear; area-averaged when shrinking) to ``frame_shape``."""
    m = np.asarray(amap, np.float32)
    if m.ndim != 2:
        raise ValueError(f"the anomaly map must be 2-D, got shape {m.shape}")
    h, w = int(frame_shape[0]), int(frame_shape[1])
    if m.shape == (h, w):
        return m
    shrink = m.shape[0] > h and m.shape[1] > w
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 1)
    if r == 1:  # OpenCV's 3 × 3 "ellipse" is a cross, which cannot close a one-pixel gap in a one-pixel line
        return np.ones((3, 3), np.uint8)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def binarise(amap: np.ndarray, level: float, *, close_frac: float = CLOSE_FRAC) -> np.ndarray:
    """``amap > level``, closed with a small disk (a share of the diagonal) to join one-pixel gaps."""
    mask = (np.asarray(amap) > level).astype(np.uint8)
    if close_frac <= 0 or not mask.any():
        return mask.astype(bool)
    radius = max(round(close_frac * float(np.hypot(*mask.shape))), 1)
    pad = radius + 1  # closing must not glue defects to the frame border
    padded = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    closed: np.ndarray = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, _disk(radius))[pad:-pad, pad:-pad]
    return closed.astype(bool)


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` (uint8) grown by a disk of ``radius``.

    Up to :data:`DILATE_UP_TO` px a dilation with :func:`_disk`. A dilation costs radius² a pixel, and one large
    region sets a large radius (0.24 s for a region over much of a 256 px frame, radius 80–200; 2.7 s at 512 px), so
    larger radii take the pixels within radius + ½ px of the mask from an exact Euclidean distance transform
    instead, in time linear in the pixels (1–4 ms; bench/regions.py). The two disks differ only in how their rim
    is digitised (under half a pixel), which at those radii decides nothing.
    """
    if radius <= DILATE_UP_TO:
        pad = radius + 1
        grown = cv2.dilate(cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0), _disk(radius))
        return np.ascontiguousarray(grown[pad:-pad, pad:-pad])
    return np.asarray(within(mask, radius + 0.5), np.uint8)


def within(mask: np.ndarray, radius: float) -> np.ndarray:
    """Boolean: the pixels within ``radius`` (Euclidean, exact) of the non-zero pixels of ``mask``: a dilation by a
    disk in a time that does not grow with the radius."""
    dist = cv2.distanceTransform(np.asarray(mask == 0, np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.asarray(dist <= radius)


def cluster_components(
    mask: np.ndarray, *, merge_frac: float = MERGE_FRAC, merge_rel: float = MERGE_REL
) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of ``mask`` and the cluster each belongs to.

    Returns:
        ``labels`` (int32 ``(H, W)``, 0 background, 1..n components) and ``cluster`` (int ``(n + 1,)``, the
        cluster id of each component; ``cluster[0]`` is 0, the background).
    """
    m = np.ascontiguousarray(mask, np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    cluster = np.arange(n, dtype=np.int64)  # background 0, component i → cluster i
    if n <= 2:
        return labels, cluster
    largest = float(stats[1:, cv2.CC_STAT_AREA].max())
    gap = max(merge_frac * float(np.hypot(*m.shape)), merge_rel * 2.0 * np.sqrt(largest / np.pi))
    radius = max(round(gap / 2), 1)
    _, joined = cv2.connectedComponents(_grow(m, radius), connectivity=8)
    # growing never splits, so every pixel of a component lies in one cluster: read it at any one pixel
    _, first = np.unique(labels.ravel(), return_index=True)
    cluster = joined.ravel()[first].astype(np.int64)
    cluster[0] = 0
    return labels, cluster


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return int(x), int(y), int(x + w), int(y + h)


def regions_from_mask(
    mask: np.ndarray,
    score_map: np.ndarray | None = None,
    *,
    merge_frac: float = MERGE_FRAC,
    merge_rel: float = MERGE_REL,
    min_area_frac: float = MIN_AREA_FRAC,
    max_regions: int = 16,
) -> list[Region]:
    """Defects of a binary mask (a ground-truth mask, or a thresholded map), highest score first.

    Args:
        mask: Boolean ``(H, W)``.
        score_map: Map at the mask's resolution that scores each defect (its maximum inside); None: score = area
            share, so the largest defect comes first.
        merge_frac: See the module docstring.
        merge_rel: See the module docstring.
        min_area_frac: Defects smaller than this share of the frame are dropped.
        max_regions: At most this many defects are returned.
    """
    m = np.asarray(mask, bool)
    labels, cluster = cluster_components(m, merge_frac=merge_frac, merge_rel=merge_rel)
    min_area = max(min_area_frac * m.size, 1.0)
    per_pixel = cluster[labels]
    out: list[Region] = []
    for cid in np.unique(cluster[1:]):
        comps = int(np.count_nonzero(cluster[1:] == cid))
        region = per_pixel == cid
        area = int(np.count_nonzero(region))
        if area < min_area:
            continue
        score = float(score_map[region].max()) if score_map is not None else area / m.size
        out.append(Region(region, _bbox(region), comps, score))
    out.sort(key=lambda r: (-r.score, r.bbox))
    return out[:max_regions]


def locate(
    amap: np.ndarray,
    level: float,
    frame_shape: tuple[int, int] | None = None,
    *,
    close_frac: float = CLOSE_FRAC,
    merge_frac: float = MERGE_FRAC,
    merge_rel: float = MERGE_REL,
    min_area_frac: float = MIN_AREA_FRAC,
    max_regions: int = 16,
) -> list[Region]:
    """The defects of an anomaly map, main (highest-scoring) first; empty when nothing exceeds ``level``.

    Args:
        amap: Float ``(h, w)`` map on the calibrated scale (any resolution).
        level: Map value above which a pixel is defective (1.0 is the calibrated image threshold).
        frame_shape: ``(H, W)`` of the frame; the map is resized to it first. None: the map's own shape.
        close_frac: Closing radius, share of the frame diagonal.
        merge_frac: Clustering gap, share of the frame diagonal.
        merge_rel: Clustering gap, in equivalent diameters of the largest component.
        min_area_frac: Smallest defect, share of the frame.
        max_regions: Most defects returned.
    """
    full = resize_map(amap, frame_shape if frame_shape is not None else np.shape(amap))
    mask = binarise(full, level, close_frac=close_frac)
    if not mask.any():
        return []
    return regions_from_mask(
        mask, full, merge_frac=merge_frac, merge_rel=merge_rel, min_area_frac=min_area_frac, max_regions=max_regions
    )


#: A pixel of a coarse region belongs to the defect when it departs this many robust standard deviations from the
#: ring around the region (in grey or in either CIELAB colour axis).
REFINE_Z = 3.0
#: ...and refinement keeps the coarse region when fewer than this share of its pixels depart.
REFINE_MIN_SHARE = 0.02


def _deviation(image: np.ndarray, inside: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Per pixel, the largest |value - ring median| / robust ring sigma over grey and (colour) a*, b*."""
    img = np.asarray(image)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else 1.0
    f = img.astype(np.float32) / scale
    channels: list[np.ndarray]
    if f.ndim == 3 and f.shape[2] >= 3:
        lab = cv2.cvtColor(np.ascontiguousarray(f[:, :, :3]), cv2.COLOR_RGB2Lab)
        channels = [lab[:, :, 0] / 100, lab[:, :, 1] / 100, lab[:, :, 2] / 100]
    else:
        channels = [f.reshape(f.shape[:2])]
    dev = np.zeros(f.shape[:2], np.float32)
    for ch in channels:
        ref = ch[ring]
        med = float(np.median(ref))
        sigma = max(1.4826 * float(np.median(np.abs(ref - med))), 2e-3)
        dev = np.maximum(dev, np.abs(ch - med) / sigma)
    return cv2.GaussianBlur(dev, (0, 0), 0.7)  # one noisy pixel is not a defect; a one-pixel line still is


def refine(image: np.ndarray, region: Region, *, z: float = REFINE_Z, min_share: float = REFINE_MIN_SHARE) -> Region:
    """The defect's own outline inside a coarse region (e.g. a patch-resolution anomaly blob), at native resolution.

    Pixels of the region (grown by a few pixels) that depart from a ring around it by more than ``z`` robust
    standard deviations; the largest cluster of them (the same merging as :func:`regions_from_mask`) becomes the
    region. A region with too few departing pixels (a warp, a smear of the texture) is returned as it is.
    """
    m = region.mask
    radius = max(3, round(0.5 * np.sqrt(region.area / np.pi)))
    x0, y0, x1, y1 = region.bbox
    pad = 2 * radius + 4
    ys, xs = slice(max(y0 - pad, 0), min(y1 + pad, m.shape[0])), slice(max(x0 - pad, 0), min(x1 + pad, m.shape[1]))
    crop = m[ys, xs].astype(np.uint8)
    grown = cv2.dilate(crop, _disk(2)) > 0
    ring = (cv2.dilate(crop, _disk(radius + 2)) > 0) & ~grown
    if ring.sum() < 16:
        return region
    candidate = (_deviation(np.asarray(image)[ys, xs], grown, ring) > z) & grown
    if candidate.sum() < max(min_share * region.area, 1.0):
        return region
    full = np.zeros_like(m, dtype=bool)
    full[ys, xs] = candidate
    found = regions_from_mask(full, min_area_frac=0.0, max_regions=1)
    if not found:
        return region
    return Region(found[0].mask, found[0].bbox, found[0].components, region.score)
