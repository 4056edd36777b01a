"""bench/naming_regions.py: defect names from the maps' cuts against the true masks, and its label draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.naming_regions import SHOTS, draw_split, main, score_draws
from bench.quality_data import SetParams, generate_surface
from sslinspect.defects.describe import DESCRIPTOR_NAMES
from sslinspect.defects.naming import SHARP_CUTS


def test_a_label_draw_picks_five_of_each_family_and_draws_differ() -> None:
    labels = ["crack"] * 12 + ["stain"] * 9 + ["pits"] * 7
    first = draw_split(labels, 0)
    again = draw_split(labels, 0)
    other = draw_split(labels, 1)
    assert np.array_equal(first, again)  # a function of the draw alone
    y = np.array(labels)
    for family in ("crack", "stain", "pits"):
        assert int(first[y == family].sum()) == SHOTS
        assert int(other[y == family].sum()) == SHOTS
    assert not np.array_equal(first, other)
    with pytest.raises(ValueError, match="pits: 5 defects"):
        draw_split(["crack"] * 8 + ["pits"] * 5, 0)  # nothing left to name


def _descriptors(labels: list[str], rng: np.random.Generator, apart: float) -> np.ndarray:
    """Descriptors of every cut: each family's rows round its own centre, ``apart`` noise sds away."""
    width = len(DESCRIPTOR_NAMES) * len(SHARP_CUTS)
    centres = {f: rng.normal(0.0, apart, width) for f in sorted(set(labels))}
    return np.stack([centres[f] + rng.normal(0.0, 1.0, width) for f in labels])


def test_draws_name_separable_families_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    labels = [f for f in ("crack", "stain", "pits") for _ in range(10)]
    apart = score_draws(_descriptors(labels, rng, 1.0), labels, draws=3)
    assert apart["balanced_accuracy"] >= 0.9
    assert len(apart["per_draw"]) == 3 and apart["sd"] >= 0.0
    assert set(apart["recall"]) == {"crack", "stain", "pits"}
    noise = score_draws(_descriptors(labels, rng, 0.0), labels, draws=3)
    assert noise["balanced_accuracy"] < 0.7  # chance is 1/3
    assert noise["confusion"] and all(" -> " in k for k in noise["confusion"])


def test_draws_through_an_exported_model(
    segment_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = SetParams("metal", seed=7, frame=64, n_train=60, n_shots=1, n_good_labels=2, n_test=6, n_test_good=2)
    ss = generate_surface(tmp_path / "dev", params)
    model = segment_project / "exports" / "model" / "model.onnx"
    assert main(["--model", str(model), "--test", str(ss.root), "--draws", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["draws"] == 2 and out["shots"] == SHOTS
    assert out["defects"] == 6 * len(params.labelled)  # every family but the held-out one
    for row in ("maps", "true_masks"):
        assert 0.0 <= out[row]["balanced_accuracy"] <= 1.0
        assert len(out[row]["per_draw"]) == 2
        assert "particle" not in out[row]["recall"]
    with pytest.raises(SystemExit):
        main(["--model", str(model), "--test", str(ss.root)])  # neither --labelled nor --draws
