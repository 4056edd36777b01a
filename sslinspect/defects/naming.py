"""Locate, then describe, then name: the one path from an anomaly map to a defect type.

Fitting (``sslinspect fit``, on each labelled defect's held-out maps) and the line-side predictor (on the exported
graph's ``anomaly_map`` and, for the defect-aware model, ``anomaly_map_sharp``) both call :func:`describe_cuts`,
so the descriptor a type was learned from and the one a new part is named by come from the same code (numpy +
OpenCV, no torch).

The rule: a map is on the calibrated scale (0 typical good, 1 the image threshold). The defect is the main
region (highest peak, satellites merged) above a level, or, when the map never gets there (a labelled
defect the anomaly model scores low), above the point :data:`PEAK_SHARE` of the way down from its own peak to its
lowest value, so every part gets its most anomalous spot described (only a flat map has no region). The region
is described on the image the model saw (the square model input). A typing head of kind ``levels`` (what ``fit``
writes) cuts the region at each of its cuts (a map and a level), describes each cut and averages its per-cut
heads' probabilities; the region shown is the main map's at :data:`SHOWN_LEVEL`. With the defect-aware model the
cuts are :data:`SHARP_CUTS`: the spread map at the threshold (a blob round the defect), the sharp map, before
spreading, at its own threshold (the defect's outline), that region's core (:func:`core_region`) and that region
redrawn by the image (:func:`refined_region`); otherwise :data:`LEVELS` of the one map. Older heads carry their one
level, their cuts, or three levels of the main map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from sslinspect.defects.describe import DESCRIPTOR_NAMES, _as_float, describe
from sslinspect.defects.regions import Region, locate, resize_map
from sslinspect.defects.typing_head import (
    CORE_SOURCE,
    KIND_SOURCE,
    MAP_SOURCE,
    REFINED_SOURCE,
    SHARP_SOURCE,
    SHARP_SOURCES,
    UNKNOWN,
    TypingHead,
)

#: A pixel belongs to the defect where the normalised map exceeds this (half the calibrated threshold)...
TYPING_LEVEL = 0.5
#: ...or at each of these levels (a ``levels`` typing head: one head per level, probabilities averaged)...
LEVELS = (0.5, 1.0, 2.0)
#: ...or, where the model has a sharp map (the defect-aware model), at these cuts ``(map, level)``: the spread map's
#: and the sharp map's regions at their calibrated thresholds. On the benchmark's development set (seed 7, 6 runs)
#: they named defects better than the spread map's three levels in 6 of 6 runs (balanced accuracy 0.639 → 0.697),
#: with two descriptions a part instead of three (bench/RESULTS.md); and the core of the sharp map's region
#: (:func:`core_region`): on that development set (seed 0, every defect described) without → with the core cut brick
#: 0.646 → 0.717, metal 0.521 → 0.550, gravel 0.271 → 0.275, fabric 0.808 → 0.825; on the test sets (3 seeds) the grey
#: surfaces 0.437 → 0.447, brick and metal better on every seed.
#: The fourth cut, the sharp region redrawn by the image (:func:`refined_region`), on that development set (seed-0
#: models, every defect described) brick 0.713 → 0.733, metal 0.504 → 0.525, gravel 0.267 → 0.271; on the test sets
#: (the same pretraining runs fitted again, 10 runs) better in 8, mean +0.014.
SHARP_CUTS = ((MAP_SOURCE, 1.0), (SHARP_SOURCE, 1.0), (CORE_SOURCE, 1.0), (REFINED_SOURCE, 1.0))
#: The core of a sharp-map region: its pixels at least this share of the way from the map's lowest value up to its
#: peak inside the region (chosen on the development set among 0.8, 0.85, 0.9, 0.95 of the peak itself: mean 0.570,
#: 0.581, 0.598, 0.582).
CORE_SHARE = 0.9
#: :func:`refined_region`'s sizes in px of a 256 px frame (scaled with the frame's long side): the region grows by
#: ``REFINE_GROW`` to find the defect's edge, the texture is filled in over the region grown by ``REFINE_PAD``, from
#: pixels up to ``REFINE_FILL`` px away. Chosen on the development set (mean IoU with the true masks, brick 0.447 →
#: 0.492, metal 0.302 → 0.360), with a local median background and fixed or ring-relative levels tried and lower.
REFINE_GROW, REFINE_PAD, REFINE_FILL = 2, 3, 5
#: A redrawn region smaller than this (px) is not a defect's outline: the sharp region is kept.
REFINE_MIN_AREA = 3
#: ...and so is one whose level is below this change in lightness (of 255): nothing a person sees.
REFINE_MIN_CHANGE = 2.0
#: The level whose region a ``levels`` head shows (outlines, boxes): the calibrated threshold.
SHOWN_LEVEL = 1.0
#: ...or, for a map that never reaches it, this share of the way down from the map's peak to its lowest value.
PEAK_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class NamedDefect:
    """The type of one part's main defect.

    Attributes:
        label: A labelled type, or ``unknown`` (far from every type, or nothing located).
        confidence: The top type probability (0 when nothing was located).
        proba: ``(C,)`` probabilities over the head's types.
        novelty: Distance to the nearest type over that type's radius; above 1 is ``unknown``.
        region: The located region at the map's input resolution, or None.
        sure: True when ``label`` is a type (not ``unknown``) named with a confidence at or above the head's
            calibrated cut (``TypingHead.sure_cut``).
    """

    label: str
    confidence: float
    proba: np.ndarray
    novelty: float
    region: Region | None
    sure: bool = False


def typing_level(amap: np.ndarray, level: float = TYPING_LEVEL) -> float:
    """The level the defect region is cut at: ``level``, lowered for a weak map to the point :data:`PEAK_SHARE` of
    the way from its peak down to its lowest value."""
    if not np.size(amap):
        return level
    peak, floor = float(np.max(amap)), float(np.min(amap))
    return min(level, peak - PEAK_SHARE * (peak - floor))


def main_region(image: np.ndarray, amap: np.ndarray, level: float = TYPING_LEVEL) -> Region | None:
    """The main defect region of ``amap`` (resized to ``image``'s size), or None when the map is flat."""
    found = locate(np.asarray(amap, np.float32), typing_level(amap, level), np.shape(image)[:2])
    return found[0] if found else None


def describe_defect(
    image: np.ndarray, amap: np.ndarray, level: float = TYPING_LEVEL
) -> tuple[np.ndarray, Region | None]:
    """``(descriptor, region)`` of the main defect; a zero descriptor when nothing is located."""
    region = main_region(image, amap, level)
    if region is None:
        return np.zeros(len(DESCRIPTOR_NAMES), np.float32), None
    return describe(image, region.mask), region


def cut_regions(
    image: np.ndarray, maps: Mapping[str, np.ndarray | None], cuts: Sequence[tuple[str, float]]
) -> list[Region | None]:
    """The main defect region of each of ``cuts`` (``(source, level)``; None where that map is flat). A source is a
    key of ``maps``, except :data:`CORE_SOURCE`, which narrows the sharp map's region at its level to its core
    (:func:`core_region`), and :data:`REFINED_SOURCE`, which redraws it by the image (:func:`refined_region`); a map
    is located once per level, however many cuts are taken from it.

    Raises:
        ValueError: if a cut's map is missing from ``maps``.
    """
    located: dict[tuple[str, float], Region | None] = {}
    regions: list[Region | None] = []
    for source, level in cuts:
        key = SHARP_SOURCE if source in SHARP_SOURCES else source
        amap = maps.get(key)
        if amap is None:
            raise ValueError(f"the typing head cuts regions from the {key!r} map, which this model does not give")
        if (key, level) not in located:
            located[(key, level)] = main_region(image, amap, level)
        region = located[(key, level)]
        if region is not None and source == CORE_SOURCE:
            region = core_region(region, amap)
        elif region is not None and source == REFINED_SOURCE:
            region = refined_region(image, region)
        regions.append(region)
    return regions


def describe_cuts(
    image: np.ndarray,
    maps: Mapping[str, np.ndarray | None],
    cuts: Sequence[tuple[str, float]],
    shown: float,
) -> tuple[np.ndarray, Region | None]:
    """The descriptors of the main defect cut at each of ``cuts`` (:func:`cut_regions`), side by side (the input of a
    ``levels`` typing head), and the main map's region at level ``shown`` (None when that map is flat, or not cut at
    ``shown``). Where ``maps`` has the model's kind probabilities (:data:`KIND_SOURCE`), each region's ``kind_*``
    entries pool them, weighted by the sharp map.

    Raises:
        ValueError: if a cut's map is missing from ``maps``.
    """
    xs: list[np.ndarray] = []
    shown_region: Region | None = None
    done: list[tuple[Region | None, np.ndarray]] = []  # a cut equal to an earlier one is not described again
    for (source, level), region in zip(cuts, cut_regions(image, maps, cuts), strict=True):
        same = [x for r, x in done if _same_region(r, region)]
        if same:
            x = same[0]
        else:
            x = (
                describe(image, region.mask, kinds=maps.get(KIND_SOURCE), weight=maps.get(SHARP_SOURCE))
                if region is not None
                else np.zeros(len(DESCRIPTOR_NAMES), np.float32)
            )
            done.append((region, x))
        xs.append(x)
        if source == MAP_SOURCE and level == shown:
            shown_region = region
    return np.concatenate(xs), shown_region


def core_region(region: Region, amap: np.ndarray, share: float = CORE_SHARE) -> Region:
    """The pixels of ``region`` where ``amap`` (resized to the region's frame) is at least ``share`` of the way from
    the map's lowest value up to its peak inside the region: the defect's core, where the region is a band round a
    thin defect."""
    full = resize_map(amap, region.mask.shape)
    peak = float(full[region.mask].max())
    floor = float(full.min())
    mask = region.mask & (full >= floor + share * (peak - floor))
    ys, xs = np.nonzero(mask)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return Region(mask, bbox, region.components, region.score)


def _lightness(image: np.ndarray) -> np.ndarray:
    """``image`` as 8-bit lightness (CIE L* of an RGB image, the grey of a grey one)."""
    img = (_as_float(image) * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 3:
        return np.ascontiguousarray(cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_RGB2LAB)[:, :, 0])
    return img


def refined_region(image: np.ndarray, region: Region) -> Region:
    """``region`` redrawn by the image: of its pixels, and those up to :data:`REFINE_GROW` px outside it, the ones
    that depart from the texture filled in over the region from around it (OpenCV's Telea inpainting of the lightness)
    on the side the region departs to (darker or lighter, by its median), split from the rest by Otsu's level over
    those same pixels. Where the map's region is a band round a thin scratch, this is the scratch; round a stain, the
    stain's own edge. ``region`` itself when fewer than :data:`REFINE_MIN_AREA` pixels remain, or Otsu's level is
    below :data:`REFINE_MIN_CHANGE` (no change in lightness to follow)."""
    grey = _lightness(image)
    if grey.shape != region.mask.shape:
        raise ValueError(f"region of shape {region.mask.shape} for an image of shape {grey.shape}")
    s = max(grey.shape) / 256.0

    def disk(px: int) -> np.ndarray:
        r = max(round(px * s), 1)
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))

    mask = region.mask.astype(np.uint8)
    zone = cv2.dilate(mask, disk(REFINE_GROW)).astype(bool)
    filled = cv2.inpaint(grey, cv2.dilate(mask, disk(REFINE_PAD)), max(REFINE_FILL * s, 1.0), cv2.INPAINT_TELEA)
    change = grey.astype(np.float32) - filled.astype(np.float32)
    change *= 1.0 if np.median(change[region.mask]) >= 0 else -1.0
    inside = change[zone]
    lo, span = float(inside.min()), float(np.ptp(inside))
    if span <= 0:
        return region
    level, _ = cv2.threshold(((inside - lo) / span * 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    cut = lo + level / 255.0 * span
    keep = zone & (change > cut)
    if cut < REFINE_MIN_CHANGE or np.count_nonzero(keep) < REFINE_MIN_AREA:
        return region
    n, _ = cv2.connectedComponents(keep.astype(np.uint8), connectivity=8)
    ys, xs = np.nonzero(keep)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return Region(keep, bbox, n - 1, region.score)


def _same_region(a: Region | None, b: Region | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.bbox == b.bbox and bool(np.array_equal(a.mask, b.mask))


def head_columns(x: np.ndarray, head: TypingHead) -> np.ndarray:
    """The entries of ``describe_cuts``' output that ``head`` was fitted on, in its order: all of them for a head
    fitted with today's descriptor, a subset for one fitted before entries were added (``DESCRIPTOR_NAMES`` only
    grows at its end, so an older exported model names its parts as it did). Heads fitted before 2026-12-05 name
    their entries by position (``f0``, ``f1``, ...), which is their place in today's descriptor.

    Raises:
        ValueError: if the head names an entry the descriptor does not have.
    """
    n = len(DESCRIPTOR_NAMES)
    members = head.members or (head,)
    if len(head.names) == x.size and all(m.names == DESCRIPTOR_NAMES for m in members):
        return x
    index = {name: i for i, name in enumerate(DESCRIPTOR_NAMES)} | {f"f{i}": i for i in range(n)}
    missing = sorted({nm for m in members for nm in m.names if nm not in index})
    if missing:
        raise ValueError(f"the typing head uses descriptor entries this version does not compute: {missing[:3]}")
    return x[[k * n + index[nm] for k, m in enumerate(members) for nm in m.names]]


def name_defect(
    head: TypingHead,
    image: np.ndarray,
    amap: np.ndarray,
    sharp: np.ndarray | None = None,
    kinds: np.ndarray | None = None,
) -> NamedDefect:
    """Locate (at the head's cuts of ``amap`` and, where the head uses it, of the ``sharp`` map), describe (with the
    model's ``kinds`` probabilities where it has them) and type the main defect of one part.

    Raises:
        ValueError: if the head cuts the sharp map and ``sharp`` is None.
    """
    maps = {MAP_SOURCE: amap, SHARP_SOURCE: sharp, KIND_SOURCE: kinds}
    x, region = describe_cuts(image, maps, head.cuts, head.level)
    x = head_columns(x, head)
    if region is None:
        return NamedDefect(UNKNOWN, 0.0, np.zeros(len(head.classes), np.float32), float("inf"), None)
    res = head.predict(x[None])
    label, confidence = res.labels[0], float(res.proba[0].max())
    sure = head.is_sure(label, confidence, bool(res.agree[0]))
    return NamedDefect(label, confidence, res.proba[0], float(res.novelty[0]), region, sure)
