"""Few-shot typing of described regions: accuracy from 5 labels per type, open set (``unknown``), the numpy
format and its parity with scikit-learn, and that inference never imports torch or scikit-learn."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sslinspect.defects.describe import DESCRIPTOR_NAMES
from sslinspect.defects.typing_head import KINDS, UNKNOWN, TypingHead, load_head, save_head, tree_proba
from sslinspect.fewshot.typing_fit import (
    LOGISTIC_C,
    N_TREES,
    TREE_DEPTH,
    TypingFit,
    Views,
    balanced_accuracy,
    fit_levels,
    fit_typing,
    flatten_trees,
    open_set_radius,
)
from sslinspect.fewshot.typing_step import VIEW_GAIN, VIEW_NOISE, VIEWS, view_images
from tests.conftest import REPO, subprocess_env
from tests.core.defects.typing_cases import split
from tests.core.fewshot.drawn import NOVEL, TYPES


def test_five_shots_per_type_name_the_defects_and_a_never_labelled_family_is_unknown(
    described: tuple[np.ndarray, np.ndarray],
) -> None:
    x, labels = described
    train, test = split(labels, TYPES)
    fit = fit_typing(x[train], labels[train].tolist(), names=DESCRIPTOR_NAMES)
    assert set(fit.cv) == {"prototype", "logistic"}
    res = fit.head.predict(x[test])
    y = np.array([TYPES.index(t) for t in labels[test]])
    pred = np.array([TYPES.index(p) if p != UNKNOWN else -1 for p in res.labels])
    assert balanced_accuracy(y, pred, len(TYPES)) >= 0.8
    novel = fit.head.predict(x[labels == NOVEL])
    assert novel.unknown.mean() >= 0.7
    assert novel.labels.count(UNKNOWN) == int(novel.unknown.sum())
    np.testing.assert_array_equal(novel.unknown, novel.novelty > 1.0)
    np.testing.assert_allclose(res.proba.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("held", ["hole", "scratch"])
def test_a_type_left_out_of_the_labels_is_reported_unknown(described: tuple[np.ndarray, np.ndarray], held: str) -> None:
    x, labels = described
    known = tuple(t for t in TYPES if t != held)
    train, _ = split(labels, known)
    head = fit_typing(x[train], labels[train].tolist(), kinds=("prototype",)).head
    assert held not in head.classes
    assert head.predict(x[labels == held]).unknown.mean() >= 0.7


def test_the_class_mean_is_known_and_a_far_point_is_unknown(described: tuple[np.ndarray, np.ndarray]) -> None:
    x, labels = described
    train, _ = split(labels, TYPES)
    head = fit_typing(x[train], labels[train].tolist(), kinds=("prototype",)).head
    centre = head.centroids[2] * head.scale + head.mean
    res = head.predict(np.stack([centre, centre + 50 * head.scale]))
    assert res.labels == [head.classes[2], UNKNOWN]


@pytest.mark.parametrize("kind", ["prototype", "logistic", "trees"])
def test_an_entry_that_is_only_rounding_noise_changes_no_name(
    kind: str, described: tuple[np.ndarray, np.ndarray]
) -> None:
    """A grey camera's colour entries vary by ~1e-5 (float rounding): scaled to unit spread, they named at random."""
    x, labels = described
    train, test = split(labels, TYPES)
    rng = np.random.default_rng(0)

    def with_noise(rows: np.ndarray) -> np.ndarray:
        return np.column_stack([x[rows], rng.normal(0.0, 1e-5, len(rows))])

    head = fit_typing(with_noise(train), labels[train].tolist(), kinds=(kind,)).head
    a, b = head.predict(with_noise(test)), head.predict(with_noise(test))
    assert a.labels == b.labels
    np.testing.assert_allclose(a.proba, b.proba, atol=1e-3)


@pytest.mark.parametrize("kind", ["prototype", "logistic", "trees", "ensemble"])
def test_npz_round_trip_keeps_every_prediction(
    described: tuple[np.ndarray, np.ndarray], kind: str, tmp_path: Path
) -> None:
    x, labels = described
    train, _ = split(labels, TYPES)
    head = fit_typing(x[train], labels[train].tolist(), names=DESCRIPTOR_NAMES, kinds=(kind,)).head
    assert head.kind == kind
    save_head(tmp_path / "typing.npz", head)
    back = load_head(tmp_path / "typing.npz")
    assert (back.kind, back.classes, back.names) == (head.kind, head.classes, head.names)
    a, b = head.predict(x), back.predict(x)
    assert a.labels == b.labels
    np.testing.assert_array_equal(a.proba, b.proba)
    np.testing.assert_array_equal(a.novelty, b.novelty)


def test_fitting_is_deterministic(described: tuple[np.ndarray, np.ndarray]) -> None:
    x, labels = described
    train, _ = split(labels, TYPES)
    kinds = ("prototype", "logistic", "trees", "ensemble")
    a = fit_typing(x[train], labels[train].tolist(), kinds=kinds, seed=4)
    b = fit_typing(x[train], labels[train].tolist(), kinds=kinds, seed=4)
    assert a.cv == b.cv
    arrays_a, arrays_b = a.head.to_arrays(), b.head.to_arrays()
    assert arrays_a.keys() == arrays_b.keys()
    for key, value in arrays_a.items():
        np.testing.assert_array_equal(value, arrays_b[key], err_msg=key)


def test_numpy_inference_matches_scikit_learn(described: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.linear_model import LogisticRegression

    x, labels = described
    train, _ = split(labels, TYPES)
    y = np.array([TYPES.index(t) for t in labels[train]])
    order = sorted(TYPES)
    head = fit_typing(x[train], labels[train].tolist(), kinds=("logistic",)).head
    z = head.standardise(x[train])
    ref = LogisticRegression(C=LOGISTIC_C, max_iter=5000, class_weight="balanced", random_state=0)
    ref.fit(z, np.array([order.index(t) for t in labels[train]]))
    np.testing.assert_allclose(head.predict_proba(x), ref.predict_proba(head.standardise(x)), atol=1e-6)
    forest = ExtraTreesClassifier(n_estimators=N_TREES, max_depth=TREE_DEPTH, random_state=1).fit(z, y)
    flat = flatten_trees(forest, len(TYPES))
    zx = head.standardise(x)
    np.testing.assert_allclose(tree_proba(flat, zx, len(TYPES)), forest.predict_proba(zx), atol=1e-9)


def test_the_ensemble_is_the_mean_of_its_three_kinds(described: tuple[np.ndarray, np.ndarray]) -> None:
    x, labels = described
    train, _ = split(labels, TYPES)
    heads = {k: fit_typing(x[train], labels[train].tolist(), kinds=(k,)).head for k in KINDS}
    ens = heads["ensemble"]
    mean = sum(heads[k].predict_proba(x) for k in ("prototype", "logistic", "trees")) / 3
    np.testing.assert_allclose(ens.predict_proba(x), mean, atol=1e-9)
    np.testing.assert_array_equal(ens.predict(x).novelty, heads["prototype"].predict(x).novelty)  # one open-set rule


def test_only_an_ensemble_head_needs_the_newer_format(described: tuple[np.ndarray, np.ndarray]) -> None:
    """A program that predates the ensemble refuses it at load time ("format 2 is newer"); the other kinds stay
    format 1, which every version reads."""
    x, labels = described
    train, _ = split(labels, TYPES)
    versions = {
        k: int(fit_typing(x[train], labels[train].tolist(), kinds=(k,)).head.to_arrays()["version"]) for k in KINDS
    }
    assert versions == {"prototype": 1, "logistic": 1, "trees": 1, "ensemble": 2}


def test_bad_inputs_are_refused(described: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, labels = described
    with pytest.raises(ValueError, match="two labelled types"):
        fit_typing(x[:3], ["crack"] * 3)
    train, _ = split(labels, TYPES)
    head = fit_typing(x[train], labels[train].tolist(), kinds=("prototype",)).head
    with pytest.raises(ValueError, match="entries"):
        head.predict(x[:, :-1])
    arrays = head.to_arrays()
    arrays["version"] = np.array(99)
    with pytest.raises(ValueError, match="newer"):
        TypingHead.from_arrays(arrays)


def test_inference_modules_import_neither_torch_nor_sklearn(
    described: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """Locate, describe and name a defect the way the line-side predictor will, in a clean interpreter."""
    x, labels = described
    train, _ = split(labels, TYPES)
    save_head(tmp_path / "typing.npz", fit_typing(x[train], labels[train].tolist(), kinds=("trees",)).head)
    code = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from sslinspect.defects import describe, regions, skeleton, typing_head\n"
        "from sslinspect.fewshot import typing_fit  # imports sklearn only inside its functions\n"
        "img = np.full((64, 80, 3), 120, np.uint8); img[20:30, 30:44] = 20\n"
        "amap = np.zeros((8, 10), np.float32); amap[2:4, 3:6] = 2.0\n"
        "region = regions.locate(amap, 1.0, img.shape[:2])[0]\n"
        f"head = typing_head.load_head(Path({str(tmp_path / 'typing.npz')!r}))\n"
        "print(head.predict(describe.describe(img, region.mask)[None]).labels)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision', 'sklearn', 'scipy'}]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("[")


def test_views_train_with_their_row_and_never_leak_into_its_fold(described: tuple[np.ndarray, np.ndarray]) -> None:
    """A view of a row sits in the training folds only when its row does. On descriptors that carry no type at all,
    views that are exact copies of their row would make the out-of-fold names as right as the head's own training
    rows (0.9 here) if they leaked; kept with their row, the names stay at chance. The figures stay per row."""
    rng = np.random.default_rng(0)
    noise, kinds = rng.normal(size=(40, 12)), [f"t{i % 4}" for i in range(40)]
    copies = Views(np.repeat(noise, 3, axis=0), np.repeat(np.arange(40), 3))
    blind = fit_typing(noise, kinds, kinds=("ensemble",), views=copies)
    assert blind.oof is not None and len(blind.oof) == 40
    assert blind.cv["ensemble"] <= 0.45  # chance is 0.25
    y = np.array([int(k[1]) for k in kinds])
    assert balanced_accuracy(y, blind.head.predict_proba(noise).argmax(1), 4) >= 0.8  # what a leak would score
    x, labels = described
    train, _ = split(labels, TYPES)
    xs, ys = x[train], labels[train].tolist()
    plain = fit_typing(xs, ys, names=DESCRIPTOR_NAMES, kinds=("ensemble",))
    viewed = fit_typing(
        xs,
        ys,
        names=DESCRIPTOR_NAMES,
        kinds=("ensemble",),
        views=Views(np.repeat(xs, 3, axis=0), np.repeat(np.arange(len(xs)), 3)),
    )
    # identical copies leave the class means where they were, and the radius is the rows' own leave-one-out one
    np.testing.assert_allclose(viewed.head.centroids, plain.head.centroids, atol=1e-9)
    z = (xs - viewed.head.mean) / viewed.head.scale
    y_rows = np.array([viewed.head.classes.index(t) for t in ys])
    own = open_set_radius(z, y_rows, len(viewed.head.classes), viewed.head.metric)
    np.testing.assert_allclose(viewed.head.radius, own, rtol=1e-6)
    # ...and a view that is not a copy does move the head: it is trained on
    moved = Views(xs[::-1] * 1.5, np.arange(len(xs)))
    assert not np.allclose(fit_typing(xs, ys, kinds=("ensemble",), views=moved).head.centroids, plain.head.centroids)


def test_the_radius_leaves_a_row_out_with_its_views() -> None:
    """Two rows of one class, each with a copy: leaving one row out alone would keep its copy in the mean (distance
    0); leaving its group out measures it against the other row, as without views."""
    z = np.array([[0.0], [2.0], [0.0], [2.0], [10.0], [12.0]])
    y = np.array([0, 0, 0, 0, 1, 1])
    metric = np.ones(1)
    grouped = open_set_radius(z, y, 2, metric, margin=1.0, groups=np.array([0, 1, 0, 1, 4, 5]))
    np.testing.assert_allclose(grouped, [2.0, 2.0])
    assert open_set_radius(z, y, 2, metric, margin=1.0)[0] < 2.0  # rows alone: the copy pulls the mean to itself


def test_view_images_are_the_two_flips_and_two_exposures_of_a_frame() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    views = view_images(img, np.random.default_rng(1))
    assert views.shape == (len(VIEWS), 12, 12, 3) and views.dtype == np.uint8
    np.testing.assert_array_equal(views[VIEWS.index("flip_h")], img[:, ::-1])
    np.testing.assert_array_equal(views[VIEWS.index("flip_v")], img[::-1])
    lighter, darker = views[VIEWS.index("lighter")].astype(float), views[VIEWS.index("darker")].astype(float)
    assert lighter.mean() > img.mean() > darker.mean()
    assert np.abs(darker - img * (1 - VIEW_GAIN)).mean() < 2 * VIEW_NOISE  # a few grey levels of noise, no more
    np.testing.assert_array_equal(views, view_images(img, np.random.default_rng(1)))  # the seed decides the noise


def test_the_core_cut_follows_a_thin_defect_inside_the_sharp_maps_band() -> None:
    """The sharp map round a 3 px line is a band several pixels wider (the decoder's stride, the averaging window);
    its core, the pixels within CORE_SHARE of its peak, is the line itself, so the core cut's descriptor sees a thin
    line where the sharp cut sees a wider band. A head with a core cut (and no later one) is format 5 and needs the
    sharp map."""
    import cv2

    from sslinspect.defects.naming import CORE_SHARE, SHARP_CUTS, core_region, describe_cuts, main_region
    from sslinspect.defects.typing_head import CORE_SOURCE

    img = np.full((96, 96, 3), 128, np.uint8)
    img[20:76, 46:49] = 40  # a dark 3 px line
    line = np.zeros((96, 96), np.float32)
    line[20:76, 46:49] = 1.0
    sharp = cv2.GaussianBlur(line, (0, 0), 3.0)
    sharp = 1.45 * sharp / sharp.max()  # the calibrated scale: 1 is the threshold, saturated probability ≈ 1.45
    wide = cv2.GaussianBlur(line, (0, 0), 8.0)
    wide = 2.0 * wide / wide.max()
    band = main_region(img, sharp, 1.0)
    assert band is not None
    core = core_region(band, sharp)
    assert core.mask.sum() < 0.7 * band.mask.sum() and not (core.mask & ~band.mask).any()
    assert core.mask[20:76, 46:49].mean() > 0.6 and core.mask[:, :44].sum() == 0 and core.mask[:, 51:].sum() == 0
    assert core.score == band.score and core_region(band, sharp, share=0.0).mask.sum() == band.mask.sum()
    assert 0.5 <= CORE_SHARE < 1.0 and SHARP_CUTS[2] == (CORE_SOURCE, 1.0)
    upto_core = SHARP_CUTS[:3]

    x, _ = describe_cuts(img, {"map": wide, "sharp": sharp}, upto_core, 1.0)
    n = len(DESCRIPTOR_NAMES)
    width = DESCRIPTOR_NAMES.index("log_width")
    assert x[2 * n + width] < x[n + width] < x[width]  # spread blob, then the sharp band, then the core: thinner

    rng = np.random.default_rng(0)
    head = fit_typing(rng.normal(size=(8, n)), ["a", "b"] * 4, names=DESCRIPTOR_NAMES, kinds=("prototype",)).head
    fits = {
        s: TypingFit(dataclasses.replace(head, level=1.0, source=s), {}, None) for s in ("map", "sharp", CORE_SOURCE)
    }
    three = fit_levels(fits, 1.0).head
    assert three.cuts == upto_core and three.needs_sharp
    arrays = three.to_arrays()
    assert int(arrays["version"]) == 5 and TypingHead.from_arrays(arrays).cuts == upto_core
    two = fit_levels({s: fits[s] for s in ("map", "sharp")}, 1.0).head
    assert int(two.to_arrays()["version"]) == 4  # older heads keep the format older programs read
    with pytest.raises(ValueError, match="'sharp' map"):
        describe_cuts(img, {"map": wide}, SHARP_CUTS, 1.0)


def test_a_cut_name_reads_back_as_its_cut() -> None:
    from sslinspect.defects.typing_head import (
        CORE_SOURCE,
        MAP_SOURCE,
        REFINED_SOURCE,
        SHARP_SOURCE,
        cut_name,
        parse_cut_name,
    )

    cuts = [(MAP_SOURCE, 0.5), (MAP_SOURCE, 1.0), (SHARP_SOURCE, 1.0), (CORE_SOURCE, 2.0), (SHARP_SOURCE, 0.7)]
    for cut in [*cuts, (REFINED_SOURCE, 1.0)]:
        assert parse_cut_name(cut_name(cut)) == cut
    assert parse_cut_name("1.0") == (MAP_SOURCE, 1.0)  # as runs before the sharp map wrote the main map's cut
    with pytest.raises(ValueError, match="not a typing cut name"):
        parse_cut_name("blurry1")
