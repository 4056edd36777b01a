"""Locating defects in an anomaly map: thresholding at native resolution, clustering satellites, skeletons."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sslinspect.defects import regions
from sslinspect.defects.describe import DESCRIPTOR_NAMES, shape_features
from sslinspect.defects.regions import (
    DILATE_UP_TO,
    Region,
    binarise,
    cluster_components,
    locate,
    refine,
    regions_from_mask,
    resize_map,
)
from sslinspect.defects.skeleton import skeleton_stats, thin

ELONGATION = DESCRIPTOR_NAMES.index("elongation")


def _line(shape: tuple[int, int] = (200, 240), width: int = 3) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.line(m, (30, 40), (200, 150), 1, width)
    return m.astype(bool)


def _disk(shape: tuple[int, int] = (200, 240), centre: tuple[int, int] = (120, 100), r: int = 25) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, centre, r, 1, -1)
    return m.astype(bool)


def _dots(shape: tuple[int, int], centre: tuple[int, int], seed: int) -> np.ndarray:
    """Twelve separate pits on a jittered 4 × 3 grid, 12 px apart."""
    rng = np.random.default_rng(seed)
    m = np.zeros(shape, np.uint8)
    for i in range(4):
        for j in range(3):
            dx, dy = 12 * i - 18 + int(rng.integers(-2, 3)), 12 * j - 12 + int(rng.integers(-2, 3))
            cv2.circle(m, (centre[0] + dx, centre[1] + dy), 2, 1, -1)
    return m.astype(bool)


def test_a_line_is_elongated_and_a_disk_is_not() -> None:
    assert shape_features(_line())[ELONGATION] > 0.9
    assert shape_features(_disk())[ELONGATION] < 0.1


def test_a_dot_cluster_is_one_region_and_two_far_clusters_are_two() -> None:
    shape = (240, 320)
    one = _dots(shape, (100, 120), seed=1)
    n_dots = cv2.connectedComponents(one.astype(np.uint8))[0] - 1
    assert n_dots == 12
    regions = regions_from_mask(one)
    assert len(regions) == 1
    assert regions[0].components == n_dots
    two = one | _dots(shape, (280, 40), seed=2)
    assert len(regions_from_mask(two)) == 2


def test_locate_resizes_a_coarse_map_to_the_frame_and_keeps_the_peak_first() -> None:
    amap = np.full((16, 20), 0.2, np.float32)
    amap[4:6, 5:7] = 3.0  # strong defect, rows 4-5 of 16, cols 5-6 of 20
    amap[12, 16] = 1.6  # weaker, far away
    regions = locate(amap, 1.0, (160, 200))
    assert [r.mask.shape for r in regions] == [(160, 200)] * 2
    main = regions[0]
    assert isinstance(main, Region)
    assert main.score == pytest.approx(3.0, abs=0.05)
    x0, y0, x1, y1 = main.bbox
    assert 35 <= x0 < 55 and 60 < x1 <= 80 and 28 <= y0 < 45 and 50 < y1 <= 70
    assert main.area == int(main.mask.sum()) > 0
    assert regions[1].score < main.score


def test_nothing_above_the_level_locates_nothing() -> None:
    assert locate(np.full((8, 8), 0.9, np.float32), 1.0, (64, 64)) == []


def test_closing_joins_a_one_pixel_gap_but_not_the_frame_border() -> None:
    amap = np.zeros((100, 400), np.float32)
    amap[50, 10:200] = 2.0
    amap[50, 201:390] = 2.0  # a one-pixel break
    mask = binarise(amap, 1.0)
    assert cv2.connectedComponents(mask.astype(np.uint8))[0] - 1 == 1
    assert not mask[0].any() and not mask[:, 0].any()


def test_resize_map_rejects_a_non_2d_map() -> None:
    with pytest.raises(ValueError, match="2-D"):
        resize_map(np.zeros((2, 3, 4), np.float32), (10, 10))


def test_skeleton_of_a_cross_has_four_ends_and_one_branch_point() -> None:
    m = np.zeros((120, 120), np.uint8)
    cv2.line(m, (10, 60), (110, 60), 1, 5)
    cv2.line(m, (60, 10), (60, 110), 1, 5)
    stats = skeleton_stats(thin(m.astype(bool)))
    assert stats.ends == 4
    assert stats.branches == 1
    assert 170 < stats.length < 210


@pytest.mark.parametrize("angle", [0, 20, 45, 70])
def test_skeleton_length_does_not_depend_much_on_direction(angle: int) -> None:
    m = np.zeros((220, 220), np.uint8)
    d = 80 * np.array([np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))])
    p0, p1 = (110 - d).round().astype(int), (110 + d).round().astype(int)
    cv2.line(m, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 1, 5)
    length = skeleton_stats(thin(m.astype(bool))).length
    assert length == pytest.approx(160, rel=0.12)


def test_refine_finds_the_pits_inside_a_coarse_blob_and_leaves_a_plain_blob_alone() -> None:
    from tests.core.fewshot.drawn import draw, texture

    img, truth = draw("pits", 5)
    coarse = cv2.dilate(truth.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    blob = regions_from_mask(coarse)[0]
    assert blob.components == 1
    fine = refine(img, blob)
    assert fine.components >= 4
    assert fine.area < blob.area / 3
    assert (fine.mask & truth).sum() > 0.6 * fine.area  # the refined pixels are the pits
    plain = (texture(np.random.default_rng(6), 192, 256) * 255).round().astype(np.uint8)  # no defect at all
    untouched = regions_from_mask(_disk((192, 256), (90, 80), 20))[0]
    assert refine(plain, untouched) is untouched


def test_a_large_region_merges_near_satellites_by_distance_as_a_dilation_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large region sets a merging radius beyond DILATE_UP_TO (the distance-transform path): a spot within the
    gap joins it, a spot beyond it stays apart, exactly as a disk dilation of that radius groups them."""
    m = np.zeros((256, 256), np.uint8)
    cv2.circle(m, (100, 128), 40, 1, -1)  # equivalent diameter 80 px: gap 160 px, radius 80, beyond DILATE_UP_TO
    m[20:23, 250:253] = 1  # ~145 px from the disk's rim: within the gap
    labels, cluster = cluster_components(m)
    assert labels.max() == 2 and cluster[1] == cluster[2], "a satellite within the gap stays apart"
    small = np.zeros((256, 256), np.uint8)
    cv2.circle(small, (60, 60), 4, 1, -1)
    small[60:62, 60 + 4 + 60 : 60 + 4 + 62] = 1  # 60 px away: beyond 2 x radius (the frame's share, 11 px)
    small[60:62, 60 + 4 + 10 : 60 + 4 + 12] = 1  # 10 px away: within
    labels, cluster = cluster_components(small)
    assert labels.max() == 3 and len(set(cluster[1:].tolist())) == 2
    # the two ways of growing agree on a large radius (up to the rim's digitisation, < 1 px)
    r = DILATE_UP_TO * 3
    by_distance = regions._grow(m, r).astype(bool)
    monkeypatch.setattr(regions, "DILATE_UP_TO", r)
    dilated = regions._grow(m, r).astype(bool)
    assert np.count_nonzero(dilated != by_distance) < 0.01 * np.count_nonzero(by_distance)
