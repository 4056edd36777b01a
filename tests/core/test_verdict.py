"""The plain-language verdict, the label minimums before a fit, and the one AUROC function."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sslinspect import api


def test_auroc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    s = np.round(rng.random(200), 2)  # many ties
    y = rng.random(200) < 0.3
    assert api.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert api.auroc(s, np.zeros(200, bool)) is None


def test_auroc_equals_the_area_of_the_drawn_roc_curve() -> None:
    from sslinspect.review import score_curves

    rng = np.random.default_rng(1)
    s = np.round(rng.random(300), 3)
    y = rng.random(300) < 0.2
    assert score_curves(s, y).auroc == pytest.approx(api.auroc(s, y), abs=1e-12)


def test_shortfalls_name_the_class_and_how_many_more() -> None:
    assert [x.describe() for x in api.fit_shortfalls({"good": 1}, 2)] == ["label 1 more 'good'"]
    assert [x.describe() for x in api.fit_shortfalls({"good": 5, "scratch": 1, "dent": 4}, 3)] == [
        "label 2 more 'scratch'"
    ]
    assert api.fit_shortfalls({"good": 2, "scratch": 2}, 2) == []
    assert api.fit_shortfalls({}, 2)[0].more == 2


def _metrics(auroc: float, ba: float, recalls: dict[str, float], dropped: dict[str, int] | None = None) -> dict:
    per = {c: {"precision": 1.0, "recall": r, "f1": r, "support": 5} for c, r in recalls.items()}
    return {
        "classes": ["good", *recalls],
        "anomaly_auroc_labelled": auroc,
        "cv": {"balanced_accuracy": ba, "per_class": {"good": {"recall": 1.0, "support": 9}, **per}},
        "dropped_classes": dropped or {},
    }


def test_verdict_rule() -> None:
    v = api.fit_verdict(_metrics(0.95, 0.9, {"scratch": 0.8, "spot": 0.7}))
    assert (v.finds, v.types, v.advice) == ("good", "reliable", "")
    v = api.fit_verdict(_metrics(0.8, 0.6, {"scratch": 0.8, "spot": 0.2}))
    assert v.describe() == "Finds defects: fair; defect types: not yet — label 5 more 'spot'"
    assert api.fit_verdict(_metrics(0.6, 0.9, {"scratch": 0.9}, {"dent": 1})).describe() == (
        "Finds defects: poor; defect types: not yet — label 9 more 'dent'"
    )
    assert api.fit_verdict({"classes": ["good"]}).finds == "unknown"
    assert api.fit_verdict(_metrics(0.8, 0.9, {"scratch": 0.9}), anomaly_auroc=0.95).finds == "good"


def test_verdict_reads_the_region_typing_and_names_the_rival_type() -> None:
    """With a region typing head (what predict names parts with), its figures decide, and the advice names the
    type the weakest one is taken for."""
    m = _metrics(0.95, 0.95, {"crack": 0.9, "scratch": 0.9})  # the whole-image classifier looks fine...
    m["typing"] = {  # ...but the types predict writes come from the regions
        "classes": ["crack", "scratch"],
        "balanced_accuracy": 0.6,
        "confusion": [[1, 4], [0, 5]],
        "per_class": {
            "crack": {"precision": 1.0, "recall": 0.2, "f1": 0.33, "support": 5},
            "scratch": {"precision": 0.56, "recall": 1.0, "f1": 0.71, "support": 5},
        },
    }
    v = api.fit_verdict(m)
    assert v.describe() == (
        "Finds defects: good; defect types: not yet — label 5 more 'crack' to separate it from 'scratch'"
    )
    m["typing"]["confusion"] = [[5, 0], [0, 5]]
    m["typing"]["balanced_accuracy"] = 1.0
    m["typing"]["per_class"]["crack"]["recall"] = 1.0
    assert api.fit_verdict(m).types == "reliable"
