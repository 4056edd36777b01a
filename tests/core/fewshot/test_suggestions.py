"""Label-page suggestions: ``fit`` names the main region of the flagged and highest-scoring unlabelled images with
the typing head (the line-side naming code) and the review reader ranks them per type. Real fitted project."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sslinspect import api
from sslinspect.defects.typing_head import UNKNOWN
from sslinspect.fewshot.suggest_step import candidate_rows
from sslinspect.fewshot.typing_step import load_typing
from sslinspect.review import load_suggestions
from sslinspect.runs import TYPING_SUGGESTIONS


def _run_and_labels(root: Path) -> tuple[Path, dict[int, str]]:
    project = api.open_project(root)
    try:
        run = project.latest("fewshot")
        assert run is not None
        return run, project.store.labels()
    finally:
        project.close()


def test_fit_suggests_types_for_unlabelled_images_only(segment_project: Path) -> None:
    run, labels = _run_and_labels(segment_project)
    typing = load_typing(run)
    assert typing is not None
    with (run / TYPING_SUGGESTIONS).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, "no suggestions written"
    ids = [int(r["image_id"]) for r in rows]
    assert not set(ids) & set(labels), "a labelled image was suggested"
    assert len(set(ids)) == len(ids)
    for r in rows:
        assert r["type"] in (*typing.classes, UNKNOWN)
        p = np.array([float(r[f"p_{c}"]) for c in typing.classes])
        if r["type"] != UNKNOWN:
            assert r["type"] == typing.classes[int(p.argmax())]
            assert float(r["novelty"]) <= 1.0

    ranked = load_suggestions(run)
    assert list(ranked)[: len(typing.classes)] == list(typing.classes)
    listed = [s.image_id for items in ranked.values() for s in items]
    assert sorted(listed) == sorted(ids)
    for t, items in ranked.items():
        probs = [s.probability for s in items]
        assert probs == sorted(probs, reverse=True), f"{t} not ranked by probability"
        assert all(s.type == t for s in items)
    # an image labelled after the fit drops out of the suggestions
    first = ids[0]
    again = load_suggestions(run, labelled={first})
    assert first not in [s.image_id for items in again.values() for s in items]


def test_candidates_are_the_flagged_and_highest_scoring_unlabelled_rows() -> None:
    scores = np.linspace(0.0, 1.0, 100)
    labels: list[str | None] = [None] * 100
    labels[99] = "crack"  # the highest score, labelled: never a candidate
    rows = candidate_rows(scores, labels, threshold=0.5)
    assert 99 not in rows.tolist()
    assert rows.tolist() == list(range(98, 49, -1))  # every flagged one (>= 0.5), highest first
    few = candidate_rows(scores, labels, threshold=2.0)
    assert few.tolist() == list(range(98, 78, -1))  # none flagged: the 20 highest-scoring
