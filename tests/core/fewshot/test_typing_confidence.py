"""The typing head's calibrated confidence: the cut from out-of-fold predictions (a pure function), its place in
the head's formats (old heads included), and that a never-labelled family is reported ``unknown`` or unsure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sslinspect.defects.naming import describe_defect, name_defect
from sslinspect.defects.typing_head import (
    NEVER_SURE,
    UNCALIBRATED_CUT,
    UNKNOWN,
    TypingHead,
    decode_head,
    encode_head,
    load_head,
    save_head,
)
from sslinspect.fewshot.typing_fit import (
    SURE_MIN_SUPPORT,
    SURE_PRECISION,
    confidence_cut,
    fit_typing,
    oof_predictions,
    oof_proba,
    selective_accuracy,
)
from tests.core.fewshot.drawn import NOVEL, TYPES, dataset

SHOTS = 5


# -- the cut: a pure function ------------------------------------------------------------------------------------------
def test_the_cut_is_the_lowest_confidence_whose_names_are_right_often_enough() -> None:
    conf = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4])
    right = np.array([1, 1, 1, 1, 1, 0, 0, 0], bool)
    # ≥ 0.7: 5/5; ≥ 0.6: 5/6 = 0.83; ≥ 0.5: 5/7 = 0.71 < 0.8
    assert confidence_cut(conf, right, 0.8, 2) == 0.6
    assert confidence_cut(conf, right, 0.9, 2) == 0.7
    assert confidence_cut(conf[::-1], right[::-1], 0.8, 2) == 0.6  # order does not matter


def test_no_cut_when_no_confident_set_is_precise_enough() -> None:
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    right = np.array([0, 1, 0, 1], bool)
    assert confidence_cut(conf, right, 0.8, 1) == NEVER_SURE > 1.0
    assert confidence_cut(np.array([]), np.array([], bool)) == NEVER_SURE


def test_too_few_predictions_above_a_cut_do_not_make_it() -> None:
    conf = np.array([0.99, 0.98, 0.6, 0.55, 0.5, 0.45])
    right = np.array([1, 1, 1, 1, 1, 0], bool)
    assert confidence_cut(conf, right, 0.8, 2) == 0.45  # 5/6 ≥ 0.8 with every prediction
    assert confidence_cut(conf, right, 1.0, 2) == 0.5
    assert confidence_cut(conf, right, 1.0, 6) == NEVER_SURE  # only all six reach the support, 5/6 < 1


def test_equal_confidences_are_kept_or_dropped_together() -> None:
    # at 0.7 two right and two wrong: taking the right ones alone would pass, the tie as a whole does not
    conf = np.array([0.9, 0.9, 0.9, 0.9, 0.7, 0.7, 0.7, 0.7])
    right = np.array([1, 1, 1, 1, 1, 1, 0, 0], bool)
    assert confidence_cut(conf, right, 0.8, 2) == 0.9
    assert confidence_cut(conf, right, 0.75, 2) == 0.7  # 6/8 exactly: at the precision counts


def test_selective_accuracy_is_coverage_and_accuracy_at_the_cut() -> None:
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    right = np.array([1, 0, 1, 1], bool)
    assert selective_accuracy(conf, right, 0.7) == (0.75, pytest.approx(2 / 3))
    cov, acc = selective_accuracy(conf, right, NEVER_SURE)
    assert cov == 0.0 and np.isnan(acc)
    with pytest.raises(ValueError, match="outcomes"):
        confidence_cut(conf, right[:2])


# -- the fitted head -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def drawn() -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Images, anomaly-like maps (the true mask, smoothed, at 1/4 size, peak 2) and kinds: 8 per type, 8 novel."""
    import cv2

    images, masks, kinds = dataset(8, seed=5, novel=8)
    maps = []
    for m in masks:
        small = cv2.resize(m.astype(np.float32), (m.shape[1] // 4, m.shape[0] // 4), interpolation=cv2.INTER_AREA)
        maps.append(2.0 * cv2.GaussianBlur(small, (0, 0), 1.0) / max(float(small.max()), 1e-6))
    return images, maps, np.array(kinds)


def _fit(drawn: tuple[list[np.ndarray], list[np.ndarray], np.ndarray], known: tuple[str, ...]) -> TypingHead:
    """A head fitted (as ``fit`` does: described from the maps) on ``SHOTS`` of each of ``known``."""
    images, maps, kinds = drawn
    rows = np.concatenate([np.flatnonzero(kinds == t)[:SHOTS] for t in known])
    x = np.stack([describe_defect(images[i], maps[i])[0] for i in rows])
    return fit_typing(x, kinds[rows].tolist(), kinds=("prototype", "logistic", "trees")).head


def test_fit_stores_the_cut_of_its_out_of_fold_predictions(
    drawn: tuple[list[np.ndarray], list[np.ndarray], np.ndarray],
) -> None:
    images, maps, kinds = drawn
    rows = np.concatenate([np.flatnonzero(kinds == t)[:SHOTS] for t in TYPES])
    x = np.stack([describe_defect(images[i], maps[i])[0] for i in rows])
    fit = fit_typing(x, kinds[rows].tolist())
    assert fit.oof is not None and fit.oof_confidence is not None and fit.y is not None
    proba = oof_proba(fit.head.kind, x, fit.y, fit.head.classes)
    assert proba is not None
    np.testing.assert_array_equal(fit.oof, proba.argmax(1))
    np.testing.assert_array_equal(fit.oof, oof_predictions(fit.head.kind, x, fit.y, fit.head.classes))
    np.testing.assert_allclose(fit.oof_confidence, proba.max(1))
    assert fit.head.sure_cut == confidence_cut(fit.oof_confidence, fit.oof == fit.y)
    coverage, accuracy = fit.selective()
    if fit.head.sure_cut <= 1.0:
        assert coverage * len(rows) >= SURE_MIN_SUPPORT and accuracy >= SURE_PRECISION
    else:
        assert coverage == 0.0


def test_too_few_labels_to_calibrate_make_no_name_sure() -> None:
    x = np.array([[0.0, 1.0], [0.1, 0.9], [5.0, 5.0]])
    fit = fit_typing(x, ["a", "a", "b"])  # "b" has one row: no cross-validation
    assert fit.oof is None and fit.head.sure_cut == NEVER_SURE
    assert not fit.head.is_sure("a", 1.0)


def test_the_cut_survives_npz_and_metadata_round_trips(
    drawn: tuple[list[np.ndarray], list[np.ndarray], np.ndarray], tmp_path: Path
) -> None:
    from dataclasses import replace

    head = replace(_fit(drawn, TYPES), sure_cut=0.6125)
    save_head(tmp_path / "typing.npz", head)
    assert load_head(tmp_path / "typing.npz").sure_cut == 0.6125
    assert decode_head(encode_head(head)).sure_cut == 0.6125
    never = replace(head, sure_cut=NEVER_SURE)
    assert decode_head(encode_head(never)).sure_cut == NEVER_SURE


def test_an_old_head_without_a_cut_names_as_before(
    drawn: tuple[list[np.ndarray], list[np.ndarray], np.ndarray], tmp_path: Path
) -> None:
    """A head written before the cut existed: every name but ``unknown`` counts as sure (as it was reported)."""
    import base64
    import io

    head = _fit(drawn, TYPES)
    arrays = head.to_arrays()
    del arrays["sure_cut"]
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    old = decode_head(base64.b64encode(buf.getvalue()).decode("ascii"))
    with (tmp_path / "old.npz").open("wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    assert old.sure_cut == load_head(tmp_path / "old.npz").sure_cut == UNCALIBRATED_CUT
    images, maps, _ = drawn
    named = [name_defect(old, images[i], maps[i]) for i in range(0, len(images), 5)]
    assert all(n.sure == (n.label != UNKNOWN) for n in named)
    assert any(n.sure for n in named)


@pytest.mark.parametrize("held", ["hole", "stain_dark"])
def test_a_never_labelled_family_is_reported_unknown_or_unsure(
    drawn: tuple[list[np.ndarray], list[np.ndarray], np.ndarray], held: str
) -> None:
    images, maps, kinds = drawn
    head = _fit(drawn, tuple(t for t in TYPES if t != held))
    for family in (held, NOVEL):
        named = [name_defect(head, images[i], maps[i]) for i in np.flatnonzero(kinds == family)]
        assert all(n.sure == head.is_sure(n.label, n.confidence) for n in named)
        assert all(not n.sure for n in named if n.label == UNKNOWN)
        not_confident = np.mean([n.label == UNKNOWN or not n.sure for n in named])
        assert not_confident >= 0.7, (family, [(n.label, round(n.confidence, 2)) for n in named])
