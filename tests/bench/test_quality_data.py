"""The quality benchmark's data generator and metrics (bench/quality_data.py, _defects.py, _metrics.py)."""

from __future__ import annotations

import csv
import importlib.util
from collections import Counter
from pathlib import Path
from typing import TypedDict

import numpy as np
import pytest

from bench.quality_data import PHOTOS, SetParams, draw_labels, generate_surface, read_mask, render, train_counts
from bench.quality_defects import FAMILIES
from bench.quality_metrics import (
    aupro,
    aupro_per_family,
    auroc,
    balanced_accuracy,
    patch_knn,
    pixel_auroc,
    pixel_auroc_per_family,
)

HAVE_SKIMAGE = importlib.util.find_spec("skimage") is not None
needs_photos = pytest.mark.skipif(not HAVE_SKIMAGE, reason="photographed surfaces need the bench extra")


class _SetSize(TypedDict):
    """The size fields of SetParams, spread into it with ``**``."""

    n_train: int
    n_shots: int
    n_good_labels: int
    n_test: int
    n_test_good: int
    frame: int


TINY: _SetSize = {"n_train": 40, "n_shots": 2, "n_good_labels": 3, "n_test": 2, "n_test_good": 4, "frame": 256}


def _procedural_and_photo() -> list[str]:
    return ["metal", "fabric", *(["brick"] if HAVE_SKIMAGE else [])]


# -- generator --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("surface", _procedural_and_photo())
def test_render_is_deterministic_per_seed(surface: str) -> None:
    a, ma = render(surface, "crack", np.random.default_rng(7))
    b, mb = render(surface, "crack", np.random.default_rng(7))
    c, _ = render(surface, "crack", np.random.default_rng(8))
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(a, c)
    assert a.shape[:2] == (256, 256) and a.dtype == np.uint8


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_a_non_empty_mask_and_changes_the_image_there(family: str) -> None:
    rng_state = np.random.default_rng([3, FAMILIES.index(family)])
    img, mask = render("metal", family, rng_state)
    good, empty = render("metal", None, np.random.default_rng([3, FAMILIES.index(family)]))
    assert not empty.any()
    assert 0 < mask.sum() < 0.25 * mask.size
    diff = np.abs(img.astype(np.int16) - good.astype(np.int16))
    # same part, pose and camera: the defect is where the image differs (blur and noise aside)
    assert diff[mask].mean() > 2.0 * diff[~mask].mean()


@needs_photos
@pytest.mark.parametrize("photo", PHOTOS)
def test_photos_ship_in_the_wheel_and_load_without_network(photo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def blocked(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", blocked)
    monkeypatch.setattr(socket, "create_connection", blocked)
    img, _ = render(photo, None, np.random.default_rng(0))
    assert img.std() > 10  # a real texture, not a flat fill


def test_generated_set_is_deterministic_and_consistent(tmp_path: Path) -> None:
    params = SetParams(surface="fabric", seed=3, **TINY)
    a = generate_surface(tmp_path / "a", params)
    b = generate_surface(tmp_path / "b", params)
    for rel in ("labels.csv", "train_truth.csv", "test.csv", "train/img_00005.png", "test/img_00003.png"):
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    other = generate_surface(tmp_path / "c", SetParams(surface="fabric", seed=4, **TINY))
    assert (a.root / "train/img_00005.png").read_bytes() != (other.root / "train/img_00005.png").read_bytes()

    train, test = a.rows("train"), a.rows("test")
    counts = train_counts(params)
    assert len(train) == params.n_train and sorted(counts) == sorted({r["label"] for r in train})
    # masks: non-empty exactly where a defect is, absent for good images
    for row in train + test:
        mask = read_mask(a, row)
        assert mask.any() == (row["label"] != "good"), row
    # the held-out family: never in the training images or the labels, present in the test set
    held = params.held_out
    with a.labels_csv.open(newline="", encoding="utf-8") as fh:
        labels = list(csv.DictReader(fh))
    assert held not in {r["label"] for r in train} | {r["label"] for r in labels}
    assert sum(r["label"] == held for r in test) == params.n_test
    assert {r["label"] for r in labels} == {"good", *params.labelled}
    names = [Path(r["path"]).name for r in train]
    assert all(n.startswith("img_") for n in names)  # file names never reveal the label
    # a second call with the same parameters reuses the set
    stamp = (a.root / "manifest.json").stat().st_mtime_ns
    generate_surface(tmp_path / "a", params)
    assert (a.root / "manifest.json").stat().st_mtime_ns == stamp


def test_label_draws_pick_training_images_of_each_class_anew(tmp_path: Path) -> None:
    # 3 training defects a family (half the 48 frames defective), 2 labelled: draws can differ from the set's own
    params = SetParams(surface="metal", seed=2, n_train=48, defect_rate=0.5, n_shots=2, n_good_labels=3, n_test=1,
                       n_test_good=1)  # fmt: skip
    ss = generate_surface(tmp_path, params)
    truth = {r["path"]: r["label"] for r in ss.rows("train")}

    def read(path: Path) -> list[tuple[str, str]]:
        with path.open(newline="", encoding="utf-8") as fh:
            return [(r["path"], r["label"]) for r in csv.DictReader(fh)]

    assert draw_labels(ss, 0) == ss.labels_csv
    first, second = read(draw_labels(ss, 1)), read(draw_labels(ss, 2))
    assert read(draw_labels(ss, 1)) == first  # a function of the set and the draw
    for drawn in (first, second):
        assert all(truth[p] == lab for p, lab in drawn)  # the training truth, the training images
        counts = Counter(lab for _, lab in drawn)
        assert counts == {"good": params.n_good_labels, **dict.fromkeys(params.labelled, params.n_shots)}
        assert params.held_out not in counts
    own = set(read(ss.labels_csv))
    defects = [{x for x in read(draw_labels(ss, d)) if x[1] != "good"} for d in range(1, 6)]
    assert any(d != {x for x in own if x[1] != "good"} for d in defects)  # other defects get labelled
    with pytest.raises(ValueError, match="draw"):
        draw_labels(ss, -1)


def test_full_size_counts_follow_the_brief() -> None:
    counts = train_counts(SetParams(surface="metal"))
    defective = sum(v for k, v in counts.items() if k != "good")
    assert sum(counts.values()) == 600 and 0.07 <= defective / 600 <= 0.09
    assert "particle" not in counts and len(counts) == 1 + len(FAMILIES) - 1


# -- metrics ----------------------------------------------------------------------------------------------------------
def test_auroc_on_hand_made_inputs() -> None:
    assert auroc([False, False, True, True], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([True, True, False, False], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert auroc([False, True], [0.5, 0.5]) == 0.5  # a tie counts half
    assert auroc([False, False, True, True], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert np.isnan(auroc([True, True], [0.1, 0.2]))


def test_auroc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    s = np.round(rng.normal(size=200) + y, 1)  # many ties
    pos, neg = s[y], s[~y]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        y.sum() * (~y).sum()
    )
    assert auroc(y, s) == pytest.approx(pairwise, abs=1e-12)


def test_balanced_accuracy_on_hand_made_inputs() -> None:
    assert balanced_accuracy(["a", "a", "b", "b"], ["a", "a", "b", "a"]) == pytest.approx(0.75)
    assert balanced_accuracy(["a", "b", "b", "c"], ["a", "a", "b", "x"]) == pytest.approx(0.5)
    assert balanced_accuracy([True, False, False, False], [True, True, False, False]) == pytest.approx(5 / 6)


def test_pixel_auroc_per_family_names_the_family_the_map_misses() -> None:
    """A map that marks a small spot but misses a large warp: the pooled figure drops, the per-family figures say
    which family it loses on."""
    spot, warp, good = np.zeros((16, 16), bool), np.zeros((16, 16), bool), np.zeros((16, 16), bool)
    spot[2:4, 2:4] = True
    warp[4:12, 4:12] = True
    hit = spot.astype(np.float32)  # the spot's map marks it
    miss = np.zeros((16, 16), np.float32)
    miss[0, 15] = 1.0  # the warp's map lights up elsewhere
    noise = np.full((16, 16), 0.1, np.float32)
    maps, masks = [hit, miss, noise], [spot, warp, good]
    per = pixel_auroc_per_family(maps, masks, ["spot", "warp", "good"])
    assert set(per) == {"spot", "warp"}
    assert per["spot"] == 1.0 and per["warp"] < 0.5
    assert per["warp"] < pixel_auroc(maps, masks) < per["spot"]


def test_pixel_auroc_resizes_the_map_to_the_mask() -> None:
    mask = np.zeros((8, 8), bool)
    mask[:4, :4] = True
    coarse = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)  # 2×2 map, upper-left quadrant hot
    good_mask = np.zeros((8, 8), bool)
    assert pixel_auroc([cv_nearest(coarse, 8), np.zeros((8, 8))], [mask, good_mask]) == 1.0
    assert pixel_auroc([np.ones((2, 2)) - coarse], [mask]) < 0.5
    assert 0.8 < pixel_auroc([coarse], [mask]) <= 1.0  # bilinear blur at the boundary only


def test_aupro_is_one_for_a_perfect_map_and_about_half_the_limit_for_noise() -> None:
    rng = np.random.default_rng(0)
    masks = [np.zeros((64, 64), bool) for _ in range(4)]
    masks[0][10:20, 10:30] = True
    masks[1][40:42, 5:60] = True  # a thin line
    masks[2][30:34, 30:34] = True
    assert aupro([m.astype(np.float32) for m in masks], masks) == pytest.approx(1.0)
    noise = [rng.random((64, 64)).astype(np.float32) for _ in masks]
    assert aupro(noise, masks) == pytest.approx(0.15, abs=0.03)  # PRO = FPR on noise: the area is 0.3² / 2 / 0.3
    assert aupro(noise, masks, fpr_limit=1.0) == pytest.approx(0.5, abs=0.05)
    assert np.isnan(aupro(noise, [np.zeros((64, 64), bool)] * 4))  # no region


def test_aupro_weighs_every_region_alike_where_pixel_auroc_weighs_area() -> None:
    """A map that finds a large stain and misses a small scratch: almost every defect pixel is found (pixel AUROC
    near 1) but only one of two regions (AUPRO 0.5)."""
    rng = np.random.default_rng(1)
    big, small, good = np.zeros((64, 64), bool), np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    big[8:48, 8:48] = True  # 1,600 px
    small[60, 10:20] = True  # 10 px
    maps = [rng.uniform(0.2, 0.8, (64, 64)).astype(np.float32) for _ in range(3)]
    maps[0][big] = 1.0
    maps[1][small] = 0.0
    masks = [big, small, good]
    assert pixel_auroc(maps, masks) > 0.99
    assert aupro(maps, masks) == pytest.approx(0.5, abs=1e-6)
    per = aupro_per_family(maps, masks, ["stain", "scratch", "good"])
    assert per == pytest.approx({"stain": 1.0, "scratch": 0.0})


def test_aupro_resizes_the_map_and_splits_regions_by_connectivity() -> None:
    mask = np.zeros((8, 8), bool)
    mask[0, 0] = mask[7, 7] = True  # two regions, one pixel each
    hot = np.zeros((8, 8), np.float32)
    hot[0, 0] = 1.0  # one found
    assert aupro([hot], [mask]) == pytest.approx(0.5)
    assert aupro([np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)], [mask]) < 0.5  # resized: both regions missed


def cv_nearest(m: np.ndarray, n: int) -> np.ndarray:
    return np.kron(m, np.ones((n // m.shape[0], n // m.shape[1]), np.float32))


def test_patch_floor_finds_a_bright_line() -> None:
    rng = np.random.default_rng(0)
    train = [np.clip(rng.normal(128, 10, (64, 64)), 0, 255).astype(np.uint8) for _ in range(6)]
    test = [np.clip(rng.normal(128, 10, (64, 64)), 0, 255).astype(np.uint8) for _ in range(4)]
    mask = np.zeros((64, 64), bool)
    mask[np.arange(16, 40), np.arange(20, 44)] = True  # a bright 1 px diagonal line
    test[1][mask] = 230
    scores, maps = patch_knn(train, test)
    assert int(np.argmax(scores)) == 1
    assert pixel_auroc([maps[1]], [mask]) > 0.8
