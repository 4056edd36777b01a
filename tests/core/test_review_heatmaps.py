"""Stored held-out heatmaps of a real trained project, read without torch for the GUI and the report."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sslinspect.data.cache import build_cache
from sslinspect.project import Project
from sslinspect.review import RunHeatmaps


def test_run_heatmaps_paint_the_most_anomalous_image_and_leave_the_calmest_alone(trained_project: Path) -> None:
    project = Project.open(trained_project)
    try:
        run = project.latest("fewshot")
        heat = RunHeatmaps.open(run)
        assert heat is not None and run is not None
        with (run / "scores.csv").open(newline="", encoding="utf-8") as fh:
            scores = {int(r["image_id"]): float(r["anomaly_score"]) for r in csv.DictReader(fh)}
        assert len(heat) == len(scores) and all(heat.has(i) for i in scores)
        assert (
            not heat.has(max(scores) + 1000) and heat.overlay(max(scores) + 1000, np.zeros((8, 8, 3), np.uint8)) is None
        )
        cache = build_cache(project, heat.head.input_size)
        row_of = cache.index_of()
        calm, hot = min(scores, key=scores.__getitem__), max(scores, key=scores.__getitem__)
        painted = {}
        for image_id in (calm, hot):
            rgb = np.asarray(cache.images[row_of[image_id]])
            out = heat.overlay(image_id, rgb)
            assert out is not None and out.shape == rgb.shape and out.dtype == np.uint8
            painted[image_id] = float((np.abs(out.astype(int) - rgb.astype(int)).sum(-1) > 0).mean())
        # the calibrated scale: the calmest image is (almost) untouched, the most anomalous one is painted
        assert painted[calm] < painted[hot]
        assert painted[hot] > 0
        m = heat.normalised(hot)
        assert m is not None and float(m.max()) >= float(heat.normalised(calm).max())  # type: ignore[union-attr]
    finally:
        project.close()


def test_a_run_without_stored_maps_has_no_heatmaps(tmp_path: Path) -> None:
    assert RunHeatmaps.open(None) is None
    assert RunHeatmaps.open(tmp_path) is None
