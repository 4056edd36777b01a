"""The region descriptor: named, finite, deterministic, invariant to where the defect sits and to the frame's
resolution (within tolerance), and it separates the drawn defect families."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sslinspect.defects.describe import DESCRIPTOR_NAMES, describe, describe_all, descriptor_names
from tests.core.fewshot.drawn import NOVEL, TYPES, draw

KINDS = (*TYPES, NOVEL)


@pytest.fixture(scope="module")
def drawn() -> list[tuple[np.ndarray, np.ndarray]]:
    return [draw(kind, seed) for kind in KINDS for seed in range(3)]


@pytest.fixture(scope="module")
def spread(drawn: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Standard deviation of every entry across the drawn families: the yardstick for "about the same"."""
    return np.stack([describe(img, m) for img, m in drawn]).std(0) + 1e-3


def _mirror_shift(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move the defect to the mirrored position (it stays whole inside the frame; the texture moves with it)."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    dy, dx = (mask.shape[0] - h - 2 * y) // 2, (mask.shape[1] - w - 2 * x) // 2
    return np.roll(img, (dy, dx), (0, 1)), np.roll(mask, (dy, dx), (0, 1))


def test_names_match_the_vector_and_extra_features_are_appended() -> None:
    img, mask = draw("crack", 0)
    d = describe(img, mask)
    assert d.shape == (len(DESCRIPTOR_NAMES),) and d.dtype == np.float32 and np.isfinite(d).all()
    extra = np.arange(5, dtype=np.float32)
    e = describe(img, mask, extra=extra)
    assert e.shape == (len(descriptor_names(5)),)
    np.testing.assert_array_equal(e[: len(d)], d)
    np.testing.assert_array_equal(e[len(d) :], extra)
    assert descriptor_names(2)[-2:] == ("backbone_0", "backbone_1")
    assert len(set(descriptor_names(3))) == len(descriptor_names(3))


def test_describe_is_deterministic(drawn: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for img, mask in drawn[:6]:
        np.testing.assert_array_equal(describe(img, mask), describe(img.copy(), mask.copy()))


def test_translation_does_not_change_the_descriptor(
    drawn: list[tuple[np.ndarray, np.ndarray]], spread: np.ndarray
) -> None:
    for img, mask in drawn:
        moved_img, moved_mask = _mirror_shift(img, mask)
        assert not np.array_equal(moved_mask, mask)
        diff = np.abs(describe(moved_img, moved_mask) - describe(img, mask)) / spread
        assert diff.max() < 0.05, DESCRIPTOR_NAMES[int(diff.argmax())]


def test_frame_resolution_barely_changes_the_descriptor(
    drawn: list[tuple[np.ndarray, np.ndarray]], spread: np.ndarray
) -> None:
    """The same scene at twice the resolution: every entry moves by a small share of the spread between families."""
    diffs = []
    for img, mask in drawn:
        big = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
        big_mask = cv2.resize(mask.astype(np.float32), None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR) >= 0.5
        diffs.append(np.abs(describe(big, big_mask) - describe(img, mask)) / spread)
    diffs_a = np.stack(diffs)
    worst = np.median(diffs_a, 0)
    assert worst.max() < 0.2, DESCRIPTOR_NAMES[int(worst.argmax())]
    assert diffs_a.mean(1).max() < 0.25


def test_grey_and_sixteen_bit_frames_are_described() -> None:
    img, mask = draw("stain_dark", 1)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    d8 = describe(grey, mask)
    d16 = describe(grey.astype(np.uint16) * 257, mask)
    np.testing.assert_allclose(d8, d16, atol=1e-3)
    colour = DESCRIPTOR_NAMES.index("chroma_delta")
    assert d8[colour] == 0.0
    assert d8[DESCRIPTOR_NAMES.index("grey_delta")] < -0.05  # a dark stain is darker than its ring


def test_light_and_dark_stains_and_thin_defects_read_as_expected() -> None:
    light = describe(*draw("stain_light", 2))
    dark = describe(*draw("stain_dark", 2))
    scratch = describe(*draw("scratch", 2))
    pits = describe(*draw("pits", 2))
    name = DESCRIPTOR_NAMES.index
    assert light[name("grey_delta")] > 0 > dark[name("grey_delta")]
    assert scratch[name("thinness")] > light[name("thinness")] + 2
    assert pits[name("components")] > np.log1p(3) and light[name("components")] == pytest.approx(np.log(2))


def test_mask_and_image_must_match_and_an_empty_list_describes_nothing() -> None:
    img, mask = draw("hole", 0)
    with pytest.raises(ValueError, match="differ"):
        describe(img, mask[:-1])
    assert describe_all(img, []).shape == (0, len(DESCRIPTOR_NAMES))
    assert describe_all(img, [mask, mask]).shape == (2, len(DESCRIPTOR_NAMES))


@pytest.mark.parametrize("where", ["whole frame", "one pixel", "top row"])
def test_degenerate_regions_give_finite_descriptors(where: str) -> None:
    img = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
    mask = np.zeros((40, 50), bool)
    if where == "whole frame":
        mask[:] = True
    elif where == "one pixel":
        mask[10, 10] = True
    else:
        mask[0] = True
    d = describe(img, mask)  # the suite turns numpy warnings (an empty ring's mean) into errors
    assert np.isfinite(d).all()


def test_describe_cuts_puts_each_cut_in_its_place(drawn: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """A ``levels`` head's input: the region cut at each level, described, side by side; a cut that is the same
    region as an earlier one gives the same numbers; the region returned is the shown level's."""
    from sslinspect.defects.naming import describe_cuts, describe_defect

    def describe_levels(image: np.ndarray, amap: np.ndarray, levels: tuple[float, ...], shown: float):  # type: ignore[no-untyped-def]
        return describe_cuts(image, {"map": amap}, [("map", lv) for lv in levels], shown)

    image, mask = drawn[0]
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 4)
    soft *= 4 / soft.max()  # a map that peaks at 4 and falls off round the defect
    levels = (0.5, 1.0, 2.0)
    x, region = describe_levels(image, soft, levels, 1.0)
    n = len(DESCRIPTOR_NAMES)
    assert x.shape == (3 * n,) and region is not None
    for k, level in enumerate(levels):
        one, cut = describe_defect(image, soft, level)
        np.testing.assert_array_equal(x[k * n : (k + 1) * n], one)
        if level == 1.0:
            assert cut is not None and np.array_equal(cut.mask, region.mask)
    assert not np.array_equal(x[:n], x[2 * n :])  # a lower cut is a larger region
    step = mask.astype(np.float32) * 3  # every level cuts the same region
    same, _ = describe_levels(image, step, levels, 1.0)
    np.testing.assert_array_equal(same[:n], same[n : 2 * n])
    np.testing.assert_array_equal(same[:n], same[2 * n :])
    flat, nothing = describe_levels(image, np.zeros_like(step), levels, 1.0)
    assert nothing is None and not flat.any()


def _blob_round(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A coarse region round a defect, as an anomaly map's cut gives it: the defect's box grown by 12 px."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    blob = np.zeros(mask.shape, np.uint8)
    cv2.rectangle(blob, (x - 12, y - 12), (x + w + 12, y + h + 12), 1, -1)
    return blob.astype(bool)


def test_a_thin_line_or_dots_inside_a_wide_region_show_in_the_line_and_spot_entries() -> None:
    """The region an anomaly map gives is a blob much wider than a scratch; the line and spot entries still see
    what is inside it, where means and percentiles of the whole blob barely move."""
    name = DESCRIPTOR_NAMES.index
    rng = np.random.default_rng(3)
    base = np.clip(rng.normal(150, 6, (256, 256)), 0, 255).astype(np.uint8)
    line, dots = base.copy(), base.copy()
    cv2.line(line, (70, 90), (180, 150), 95, 2)
    for cx, cy in ((100, 100), (112, 95), (108, 112), (121, 106), (96, 118)):
        cv2.circle(dots, (cx, cy), 3, 95, -1)
    region = _blob_round(line, line < 120)
    plain, scratched = describe(base, region), describe(line, region)
    spotted = describe(dots, _blob_round(dots, dots < 120))
    assert scratched[name("ridge_dark")] > plain[name("ridge_dark")] + 0.7
    assert scratched[name("ridge_dark")] > scratched[name("ridge_bright")]  # a dark line (its flanks read bright)
    assert scratched[name("line_share")] > plain[name("line_share")] + 0.03
    assert spotted[name("spot_dark")] > max(scratched[name("spot_dark")], plain[name("spot_dark")]) + 0.4
    assert spotted[name("spot_dark")] > spotted[name("spot_bright")] + 0.7
    assert abs(scratched[name("grey_delta")]) < 0.02  # the blob's mean hardly notices the line


def test_the_depth_profile_tells_a_dark_core_from_an_even_stain() -> None:
    """A burn darkening towards its core and an even stain of the same mean, both inside a region wider than them:
    the depth entries read the profile (the region's mean alone does not)."""
    name = DESCRIPTOR_NAMES.index
    rng = np.random.default_rng(4)
    base = np.clip(rng.normal(150, 4, (256, 256)), 0, 255).astype(np.float32)
    yy, xx = np.mgrid[:256, :256]
    r = np.hypot(xx - 128, yy - 128) / 30.0
    inside = r <= 1
    even, burnt = base.copy(), base.copy()
    even[inside] -= 40
    burnt[inside] -= 80 * (1 - r[inside])  # mean darkening 80/3 ... deepest at the centre
    region = np.hypot(xx - 128, yy - 128) <= 40
    d_even = describe(even.astype(np.uint8), region)
    d_burnt = describe(burnt.astype(np.uint8), region)
    assert d_burnt[name("core_delta")] < d_burnt[name("rim_delta")] - 0.15  # dark core, plain outer band
    assert abs(d_even[name("core_delta")] - d_even[name("mid_delta")]) < 0.03  # even inside the stain
    assert d_even[name("rim_delta")] > d_even[name("core_delta")] + 0.05  # the outer band reaches past the stain
    assert all(d[name(k)] < 0 for d in (d_even, d_burnt) for k in ("core_delta", "mid_delta"))


def test_the_kind_entries_pool_the_model_probabilities_over_the_region_weighted_by_the_sharp_map() -> None:
    """``kind_*`` entries: log(p + 0.01) of the kind probabilities averaged over the mask, each pixel weighted by the
    sharp map (negative counts 0; nothing above 0: uniform); maps of any resolution are resized to the mask; zeros
    without a kind head; a wrong channel count is refused."""
    from sslinspect.defects.describe import KIND_FLOOR, KIND_NAMES, kind_features

    k = len(KIND_NAMES)
    mask = np.zeros((64, 64), bool)
    mask[8:24, 8:40] = True
    kinds = np.zeros((k, 64, 64), np.float32)
    kinds[0] = 1.0  # everywhere "blob"...
    kinds[0, 8:24, 8:24], kinds[1, 8:24, 8:24] = 0.0, 1.0  # ...but "stroke" where the sharp map is high
    sharp = np.full((64, 64), -0.5, np.float32)
    sharp[8:24, 8:24] = 2.0
    got = kind_features(kinds, mask, sharp)
    assert got.shape == (k,) and got.dtype == np.float32
    np.testing.assert_allclose(np.exp(got[:2]) - KIND_FLOOR, [0.0, 1.0], atol=1e-5)  # only the weighted pixels count
    uniform = np.exp(kind_features(kinds, mask, np.full((64, 64), -1.0, np.float32))[:2]) - KIND_FLOOR
    np.testing.assert_allclose(uniform, [0.5, 0.5], atol=1e-5)  # nothing above 0: every mask pixel alike
    half = np.exp(kind_features(kinds, mask, sharp[::2, ::2])) - KIND_FLOOR  # a weight map of another size: resized
    np.testing.assert_allclose(half[:2], [0.0, 1.0], atol=0.05)
    small = np.full((k, 16, 16), 0.25, np.float32)  # the graph's kinds come at stride 4
    np.testing.assert_allclose(np.exp(kind_features(small, mask, sharp)) - KIND_FLOOR, 0.25, atol=1e-5)
    assert not kind_features(None, mask).any()
    img = np.full((64, 64), 128, np.uint8)
    d = describe(img, mask, kinds=kinds, weight=sharp)
    np.testing.assert_array_equal(d[-k:], got)
    assert not describe(img, mask)[-k:].any()
    with pytest.raises(ValueError, match="kind maps"):
        kind_features(kinds[:3], mask)
