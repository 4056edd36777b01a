"""Typing heads made of one member per map cut (``levels``): the mean of their members, the sharp-map and core cuts,
agreement for a sure name, older descriptors, and members that disagree on their classes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sslinspect.defects.describe import DESCRIPTOR_NAMES
from sslinspect.defects.naming import head_columns
from sslinspect.defects.typing_head import UNKNOWN, TypingHead, load_head, save_head
from sslinspect.fewshot.typing_fit import (
    TypingFit,
    balanced_accuracy,
    fit_levels,
    fit_typing,
)
from tests.core.defects.typing_cases import split
from tests.core.fewshot.drawn import TYPES


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
    train, test = split(labels, TYPES)
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
    train, test = split(labels, TYPES)
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
    train, test = split(labels, TYPES)
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
    train, test = split(labels, TYPES)
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
    train, _ = split(labels, TYPES)
    _, fits = _levels_fit(x, labels, train)
    members = list(fits.values())
    with pytest.raises(ValueError, match="different levels"):
        TypingHead.of_levels([members[0].head, members[0].head], 0.5, 0.5)
    with pytest.raises(ValueError, match="shown level"):
        TypingHead.of_levels([m.head for m in members], 3.0, 0.5)
    other = fit_typing(x[train][:, :-1], labels[train].tolist(), kinds=("ensemble",)).head
    with pytest.raises(ValueError, match="share"):
        TypingHead.of_levels([members[0].head, dataclasses.replace(other, level=7.0)], 0.5, 0.5)
