"""Few-shot typing of described regions: accuracy from 5 labels per type, open set (``unknown``), the numpy
format and its parity with scikit-learn, and that inference never imports torch or scikit-learn."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sslinspect.defects.describe import DESCRIPTOR_NAMES, describe
from sslinspect.defects.naming import head_columns
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
from tests.core.fewshot.drawn import NOVEL, TYPES, dataset

SHOTS = 5


@pytest.fixture(scope="module")
def described() -> tuple[np.ndarray, np.ndarray]:
    """Descriptors (from the true masks) of 8 drawn frames per type and 8 never-labelled warps."""
    images, masks, kinds = dataset(8, seed=3, novel=8)
    return np.stack([describe(i, m) for i, m in zip(images, masks, strict=True)]), np.array(kinds)


def _split(labels: np.ndarray, types: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    train = np.concatenate([np.flatnonzero(labels == t)[:SHOTS] for t in types])
    test = np.concatenate([np.flatnonzero(labels == t)[SHOTS:] for t in types])
    return train, test


def test_five_shots_per_type_name_the_defects_and_a_never_labelled_family_is_unknown(
    described: tuple[np.ndarray, np.ndarray],
) -> None:
    x, labels = described
    train, test = _split(labels, TYPES)
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
    train, _ = _split(labels, known)
    head = fit_typing(x[train], labels[train].tolist(), kinds=("prototype",)).head
    assert held not in head.classes
    assert head.predict(x[labels == held]).unknown.mean() >= 0.7


def test_the_class_mean_is_known_and_a_far_point_is_unknown(described: tuple[np.ndarray, np.ndarray]) -> None:
    x, labels = described
    train, _ = _split(labels, TYPES)
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
    train, test = _split(labels, TYPES)
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
    train, _ = _split(labels, TYPES)
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
    train, _ = _split(labels, TYPES)
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
    train, _ = _split(labels, TYPES)
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
    train, _ = _split(labels, TYPES)
    heads = {k: fit_typing(x[train], labels[train].tolist(), kinds=(k,)).head for k in KINDS}
    ens = heads["ensemble"]
    mean = sum(heads[k].predict_proba(x) for k in ("prototype", "logistic", "trees")) / 3
    np.testing.assert_allclose(ens.predict_proba(x), mean, atol=1e-9)
    np.testing.assert_array_equal(ens.predict(x).novelty, heads["prototype"].predict(x).novelty)  # one open-set rule


def test_only_an_ensemble_head_needs_the_newer_format(described: tuple[np.ndarray, np.ndarray]) -> None:
    """A program that predates the ensemble refuses it at load time ("format 2 is newer"); the other kinds stay
    format 1, which every version reads."""
    x, labels = described
    train, _ = _split(labels, TYPES)
    versions = {
        k: int(fit_typing(x[train], labels[train].tolist(), kinds=(k,)).head.to_arrays()["version"]) for k in KINDS
    }
    assert versions == {"prototype": 1, "logistic": 1, "trees": 1, "ensemble": 2}


def _levels_fit(x: np.ndarray, labels: np.ndarray, train: np.ndarray) -> tuple[TypingFit, dict[float, TypingFit]]:
    """A ``levels`` fit of three per-level fits; the descriptors at each "level" are ``x`` with a level's noise."""
    rng = np.random.default_rng(5)
    fits = {}
    for level in (0.5, 1.0, 2.0):
        noisy = x[train] + rng.normal(0, 0.02, x[train].shape)
        fit = fit_typing(noisy, labels[train].tolist(), kinds=("ensemble",))
        fits[level] = TypingFit(
            dataclasses.replace(fit.head, level=level), fit.cv, fit.y, fit.oof, fit.oof_confidence, fit.oof_proba
        )
    return fit_levels(fits, 1.0), fits


def test_a_levels_head_averages_its_members_and_round_trips(
    described: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, labels = described
    train, test = _split(labels, TYPES)
    fit, fits = _levels_fit(x, labels, train)
    head = fit.head
    assert head.kind == "levels" and head.levels == (0.5, 1.0, 2.0) and head.level == 1.0
    wide = np.concatenate([x[test], x[test] + 0.01, x[test] - 0.01], axis=1)  # one descriptor per level
    parts = [fits[lv].head for lv in head.levels]
    mean = sum(h.predict_proba(wide[:, k * x.shape[1] : (k + 1) * x.shape[1]]) for k, h in enumerate(parts)) / 3
    np.testing.assert_allclose(head.predict_proba(wide), mean, atol=1e-9)
    res = head.predict(wide)
    novelty = np.mean(
        [h.predict(wide[:, k * x.shape[1] : (k + 1) * x.shape[1]]).novelty for k, h in enumerate(parts)], 0
    )
    np.testing.assert_allclose(res.novelty, novelty, rtol=1e-5)
    assert (
        balanced_accuracy(np.array([head.classes.index(t) for t in labels[test]]), res.proba.argmax(1), len(TYPES))
        >= 0.8
    )
    # its cut is calibrated on the mean of the members' out-of-fold probabilities
    assert fit.oof_proba is not None
    members_oof_proba = []
    for f in fits.values():
        assert f.oof_proba is not None
        members_oof_proba.append(f.oof_proba)
    np.testing.assert_allclose(fit.oof_proba, np.mean(members_oof_proba, 0))
    assert fit.y is not None and fit.oof is not None
    assert fit.cv["levels"] == balanced_accuracy(fit.y, fit.oof, len(TYPES))
    save_head(tmp_path / "levels.npz", head)
    back = load_head(tmp_path / "levels.npz")
    assert back.kind == "levels" and back.levels == head.levels and back.sure_cut == head.sure_cut
    assert int(head.to_arrays()["version"]) == 3
    np.testing.assert_allclose(back.predict_proba(wide), head.predict_proba(wide))
    with pytest.raises(ValueError, match="entries"):
        head.predict(x[test])  # one level's descriptor is not enough


def _two_map_fits(
    x: np.ndarray, labels: np.ndarray, train: np.ndarray, *cuts: tuple[str, float]
) -> dict[str, TypingFit]:
    """One ``ensemble`` fit per ``(map, shift)``, at level 1 of that map: the descriptors are ``x`` plus the shift."""
    fits = {}
    for source, shift in cuts:
        fit = fit_typing(x[train] + shift, labels[train].tolist(), names=DESCRIPTOR_NAMES, kinds=("ensemble",))
        head = dataclasses.replace(fit.head, level=1.0, source=source)
        fits[source] = TypingFit(head, fit.cv, fit.y, fit.oof, fit.oof_confidence, fit.oof_proba)
    return fits


def test_a_levels_head_with_a_sharp_map_cut_names_its_cuts_and_is_format_4(
    described: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """Members cut from the sharp map sort after the main map's; the head says which maps it needs, its entries name
    their cut, it round-trips, and programs that read format 3 refuse it (they would cut the wrong map)."""
    x, labels = described
    train, test = _split(labels, TYPES)
    fits = _two_map_fits(x, labels, train, ("sharp", 0.0), ("map", 0.0))
    head = fit_levels(fits, 1.0).head
    assert head.cuts == (("map", 1.0), ("sharp", 1.0)) and head.needs_sharp and head.levels == (1.0,)
    assert head.names[0] == "1:log_area" and head.names[len(DESCRIPTOR_NAMES)] == "sharp1:log_area"
    save_head(tmp_path / "sharp.npz", head)
    back = load_head(tmp_path / "sharp.npz")
    assert back.cuts == head.cuts and int(head.to_arrays()["version"]) == 4
    wide = np.concatenate([x[test], x[test]], axis=1)
    np.testing.assert_allclose(back.predict_proba(wide), head.predict_proba(wide))
    assert "source" not in fits["map"].head.to_arrays()  # a main-map head is written as before
    arrays = head.to_arrays()
    with pytest.raises(ValueError, match="shown level"):
        TypingHead.of_levels([fits["sharp"].head], 1.0, 0.0)  # the region shown is the main map's
    with pytest.raises(ValueError, match="map must be one of"):
        TypingHead.of_levels([dataclasses.replace(fits["map"].head, source="other")], 1.0, 0.0)
    assert int(arrays["version"]) > 3


def test_a_head_that_needs_agreement_is_not_sure_where_its_cuts_disagree(
    described: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, labels = described
    train, test = _split(labels, TYPES)
    fits = _two_map_fits(x, labels, train, ("map", 0.0), ("sharp", 0.3))
    fit = fit_levels(fits, 1.0, sure_agree=True)
    head = fit.head
    assert head.sure_agree and fit.oof_confidence is not None and fit.oof_proba is not None
    tops = np.stack([f.oof_proba.argmax(1) for f in fits.values()])  # type: ignore[union-attr]
    disagree = tops[0] != tops[1]
    assert (fit.oof_confidence[disagree] == 0).all()  # never sure out of fold where the cuts disagree
    np.testing.assert_allclose(fit.oof_confidence[~disagree], fit.oof_proba.max(1)[~disagree])
    # one cut sees a type, the other another: not sure however confident the mean
    wide = np.concatenate([x[test], x[test] + 0.3], axis=1)
    res = head.predict(wide)
    n = len(DESCRIPTOR_NAMES)
    tops_now = [
        h.predict_proba(part).argmax(1) for h, part in zip(head.members, (wide[:, :n], wide[:, n:]), strict=True)
    ]
    np.testing.assert_array_equal(res.agree, tops_now[0] == tops_now[1])
    assert not head.is_sure(res.labels[0], 1.0, agree=False) and head.is_sure(TYPES[0], 1.0, agree=True)
    assert not dataclasses.replace(head, sure_agree=False).is_sure(UNKNOWN, 1.0)
    assert dataclasses.replace(head, sure_agree=False).is_sure(TYPES[0], 1.0, agree=False)  # older heads: no rule
    save_head(tmp_path / "agree.npz", head)
    assert load_head(tmp_path / "agree.npz").sure_agree
    assert "sure_agree" not in fit_levels(fits, 1.0).head.to_arrays()


def test_naming_with_a_sharp_cut_needs_the_sharp_map() -> None:
    from sslinspect.defects.naming import SHARP_CUTS, describe_cuts, name_defect

    img = np.full((64, 64, 3), 128, np.uint8)
    img[20:44, 30:33] = 40  # a dark line
    wide = np.zeros((64, 64), np.float32)
    wide[12:52, 22:42] = 2.0  # the spread map: a blob round it
    thin = np.zeros((64, 64), np.float32)
    thin[20:44, 30:33] = 2.0  # the sharp map: the line itself
    x, region = describe_cuts(img, {"map": wide, "sharp": thin}, SHARP_CUTS, 1.0)
    n = len(DESCRIPTOR_NAMES)
    elong = DESCRIPTOR_NAMES.index("elongation")
    assert x[n + elong] > x[elong] + 0.3  # the sharp cut sees a line, the spread cut a blob
    assert region is not None and region.mask[30, 24]  # the region shown is the spread map's
    rng = np.random.default_rng(0)
    head = fit_typing(rng.normal(size=(8, n)), ["a", "b"] * 4, names=DESCRIPTOR_NAMES, kinds=("prototype",)).head
    fits = {s: TypingFit(dataclasses.replace(head, level=1.0, source=s), {}, None) for s in ("map", "sharp")}
    sharp_head = fit_levels(fits, 1.0).head
    with pytest.raises(ValueError, match="'sharp' map"):
        name_defect(sharp_head, img, wide)
    assert name_defect(sharp_head, img, wide, thin).label in ("a", "b", "unknown")


def test_a_head_fitted_on_an_older_shorter_descriptor_reads_its_own_entries(
    described: tuple[np.ndarray, np.ndarray],
) -> None:
    """Entries are only ever appended to the descriptor. A head fitted before (its entries named by position, f0 ...)
    gets exactly the entries it was fitted on from today's longer descriptor; today's heads get all of them."""
    x, labels = described
    train, test = _split(labels, TYPES)
    n_old = len(DESCRIPTOR_NAMES) - 8  # before the line, spot and depth entries
    fits = {}
    for level in (0.5, 1.0, 2.0):
        fit = fit_typing(x[train][:, :n_old], labels[train].tolist(), kinds=("ensemble",))
        fits[level] = TypingFit(
            dataclasses.replace(fit.head, level=level), fit.cv, fit.y, fit.oof, fit.oof_confidence, fit.oof_proba
        )
    old = fit_levels(fits, 1.0).head
    assert old.members[0].names[:2] == ("f0", "f1")
    wide = np.concatenate([x[test]] * 3, axis=1)  # today's descriptor at each level
    picked = head_columns(wide[0], old)
    np.testing.assert_array_equal(picked, np.concatenate([x[test][0, :n_old]] * 3))
    np.testing.assert_allclose(
        old.predict_proba(picked[None]), old.predict_proba(np.concatenate([x[test][:1, :n_old]] * 3, 1))
    )
    today = fit_typing(x[train], labels[train].tolist(), names=DESCRIPTOR_NAMES, kinds=("ensemble",)).head
    row = x[test][0]
    assert head_columns(row, today) is row
    stranger = dataclasses.replace(today, names=("no_such_entry", *DESCRIPTOR_NAMES[1:]))
    with pytest.raises(ValueError, match="no_such_entry"):
        head_columns(x[test][0], stranger)


def test_a_levels_head_is_refused_when_its_members_disagree(described: tuple[np.ndarray, np.ndarray]) -> None:
    x, labels = described
    train, _ = _split(labels, TYPES)
    _, fits = _levels_fit(x, labels, train)
    members = list(fits.values())
    with pytest.raises(ValueError, match="different levels"):
        TypingHead.of_levels([members[0].head, members[0].head], 0.5, 0.5)
    with pytest.raises(ValueError, match="shown level"):
        TypingHead.of_levels([m.head for m in members], 3.0, 0.5)
    other = fit_typing(x[train][:, :-1], labels[train].tolist(), kinds=("ensemble",)).head
    with pytest.raises(ValueError, match="share"):
        TypingHead.of_levels([members[0].head, dataclasses.replace(other, level=7.0)], 0.5, 0.5)


def test_bad_inputs_are_refused(described: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, labels = described
    with pytest.raises(ValueError, match="two labelled types"):
        fit_typing(x[:3], ["crack"] * 3)
    train, _ = _split(labels, TYPES)
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
    train, _ = _split(labels, TYPES)
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
    train, _ = _split(labels, TYPES)
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
    line where the sharp cut sees a wider band. A head with a core cut is format 5 and needs the sharp map."""
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
    assert 0.5 <= CORE_SHARE < 1.0 and SHARP_CUTS[-1] == (CORE_SOURCE, 1.0)

    x, _ = describe_cuts(img, {"map": wide, "sharp": sharp}, SHARP_CUTS, 1.0)
    n = len(DESCRIPTOR_NAMES)
    width = DESCRIPTOR_NAMES.index("log_width")
    assert x[2 * n + width] < x[n + width] < x[width]  # spread blob, then the sharp band, then the core: thinner

    rng = np.random.default_rng(0)
    head = fit_typing(rng.normal(size=(8, n)), ["a", "b"] * 4, names=DESCRIPTOR_NAMES, kinds=("prototype",)).head
    fits = {
        s: TypingFit(dataclasses.replace(head, level=1.0, source=s), {}, None) for s in ("map", "sharp", CORE_SOURCE)
    }
    three = fit_levels(fits, 1.0).head
    assert three.cuts == SHARP_CUTS and three.needs_sharp
    arrays = three.to_arrays()
    assert int(arrays["version"]) == 5 and TypingHead.from_arrays(arrays).cuts == SHARP_CUTS
    two = fit_levels({s: fits[s] for s in ("map", "sharp")}, 1.0).head
    assert int(two.to_arrays()["version"]) == 4  # older heads keep the format older programs read
    with pytest.raises(ValueError, match="'sharp' map"):
        describe_cuts(img, {"map": wide}, SHARP_CUTS, 1.0)


def test_a_cut_name_reads_back_as_its_cut() -> None:
    from sslinspect.defects.typing_head import CORE_SOURCE, MAP_SOURCE, SHARP_SOURCE, cut_name, parse_cut_name

    for cut in [(MAP_SOURCE, 0.5), (MAP_SOURCE, 1.0), (SHARP_SOURCE, 1.0), (CORE_SOURCE, 2.0), (SHARP_SOURCE, 0.7)]:
        assert parse_cut_name(cut_name(cut)) == cut
    assert parse_cut_name("1.0") == (MAP_SOURCE, 1.0)  # as runs before the sharp map wrote the main map's cut
    with pytest.raises(ValueError, match="not a typing cut name"):
        parse_cut_name("blurry1")
