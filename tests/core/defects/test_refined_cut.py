"""The fourth naming cut: the sharp map's region redrawn by the image (``refined_region``). On textured frames, a
band round a thin dark line becomes the line, a band round a stain becomes the stain's own edge, and a region where
the lightness did not change (a warp of a flat frame) stays the map's region; a head with the cut is format 6."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from sslinspect.defects.describe import DESCRIPTOR_NAMES
from sslinspect.defects.naming import SHARP_CUTS, describe_cuts, main_region, refined_region
from sslinspect.defects.regions import Region
from sslinspect.defects.typing_head import FORMAT_VERSION, REFINED_SOURCE, TypingHead
from sslinspect.fewshot.typing_fit import TypingFit, fit_levels, fit_typing


def _texture(seed: int, size: int = 128) -> np.ndarray:
    """A grainy RGB texture (blurred noise, ±12 grey levels round 128), like a brushed or sand-blasted surface."""
    rng = np.random.default_rng(seed)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.2)
    grey = np.clip(128 + 12 * grain / grain.std(), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _band(truth: np.ndarray, sigma: float) -> Region:
    """The region a sharp map blurred by ``sigma`` px gives round ``truth`` (cut at the calibrated threshold)."""
    amap = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), sigma)
    region = main_region(truth, 1.45 * amap / amap.max(), 1.0)
    assert region is not None
    return region


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_band_round_a_thin_dark_line_becomes_the_line(seed: int) -> None:
    img = _texture(seed)
    truth = np.zeros(img.shape[:2], np.uint8)
    cv2.line(truth, (30, 20), (95, 100), 1, 2)
    img[truth.astype(bool)] = (img[truth.astype(bool)] * 0.45).astype(np.uint8)  # a scratch: darker, 2 px
    truth = truth.astype(bool)
    band = _band(truth, 3.0)
    refined = refined_region(img, band)
    assert refined.mask.sum() < 0.6 * band.mask.sum()
    assert _iou(refined.mask, truth) > _iou(band.mask, truth) + 0.2
    assert refined.mask[truth].mean() > 0.8  # the line is kept
    assert refined.score == band.score and refined.bbox[0] >= band.bbox[0] - 3


def test_a_band_round_a_light_stain_follows_the_stain() -> None:
    img = _texture(3).astype(np.float32)
    yy, xx = np.mgrid[:128, :128]
    truth = (yy - 60) ** 2 / 14**2 + (xx - 70) ** 2 / 9**2 <= 1
    img[truth] += 30  # lighter by 2.5 times the grain's spread
    img = np.clip(img, 0, 255).astype(np.uint8)
    band = _band(truth, 8.0)  # a blob round the stain (the sharp maps' stain regions are 1.2-1.6 times its area)
    assert band.mask.sum() > 1.15 * truth.sum()
    refined = refined_region(img, band)
    assert _iou(refined.mask, truth) > max(_iou(band.mask, truth), 0.8) and refined.mask[truth].mean() > 0.85
    assert refined_region(img.astype(np.float32) / 255.0, band).mask.sum() == refined.mask.sum()  # float frames too
    grey = refined_region(np.ascontiguousarray(img[:, :, 0]), band)  # a grey frame (L* and grey differ a little)
    assert _iou(grey.mask, truth) > 0.6


def test_no_change_in_lightness_keeps_the_maps_region() -> None:
    flat = np.full((64, 64, 3), 120, np.uint8)
    truth = np.zeros((64, 64), bool)
    truth[20:40, 25:45] = True
    band = _band(truth, 3.0)
    assert refined_region(flat, band) is band
    with pytest.raises(ValueError, match="shape"):
        refined_region(np.zeros((32, 32, 3), np.uint8), band)


def test_the_refined_cut_is_the_fourth_and_makes_a_format_6_head() -> None:
    img = _texture(4)
    truth = np.zeros(img.shape[:2], np.uint8)
    cv2.line(truth, (20, 64), (108, 64), 1, 2)
    img[truth.astype(bool)] //= 3
    sharp = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 3.0)
    wide = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 8.0)
    maps = {"map": 2.0 * wide / wide.max(), "sharp": 1.45 * sharp / sharp.max()}
    assert SHARP_CUTS[-1] == (REFINED_SOURCE, 1.0) and FORMAT_VERSION == 6
    x, _ = describe_cuts(img, maps, SHARP_CUTS, 1.0)
    n = len(DESCRIPTOR_NAMES)
    width = DESCRIPTOR_NAMES.index("log_width")
    assert x.shape == (len(SHARP_CUTS) * n,) and x[3 * n + width] < x[n + width]  # thinner than the sharp band

    rng = np.random.default_rng(0)
    head = fit_typing(rng.normal(size=(8, n)), ["a", "b"] * 4, names=DESCRIPTOR_NAMES, kinds=("prototype",)).head
    fits = {s: TypingFit(dataclasses.replace(head, level=1.0, source=s), {}, None) for s, _ in SHARP_CUTS}
    four = fit_levels(fits, 1.0).head
    arrays = four.to_arrays()
    assert four.cuts == SHARP_CUTS and four.needs_sharp and int(arrays["version"]) == 6
    assert TypingHead.from_arrays(arrays).cuts == SHARP_CUTS
    with pytest.raises(ValueError, match="newer than this program"):
        TypingHead.from_arrays({**arrays, "version": np.array(7)})
