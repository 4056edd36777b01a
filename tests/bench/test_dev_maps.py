"""bench/dev_maps.py: the map's figures on a development set, through the exported graph and ONNX Runtime."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.dev_maps import HELD_OUT, evaluate, main
from bench.quality_data import SetParams, generate_surface


def _read_gray(path: Path) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert m is not None, path
    return m


def test_dev_maps_scores_an_exported_model_and_keeps_the_held_out_family_apart(
    segment_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = SetParams("metal", seed=7, frame=64, n_train=60, n_shots=1, n_good_labels=2, n_test=3, n_test_good=6)
    ss = generate_surface(tmp_path / "dev", params)
    model = segment_project / "exports" / "model" / "model.onnx"
    result = evaluate(model, ss.root, edge=True)
    with (ss.root / "test.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    families = {r["label"] for r in rows} - {"good"}
    assert result["frames"] == len(rows)
    assert set(result["per_family_image_auroc"]) == families and HELD_OUT in families
    assert result["held_out"]["image_auroc"] == result["per_family_image_auroc"][HELD_OUT]
    assert 0.0 <= result["image_auroc"] <= 1.0 and 0.0 <= result["pixel_auroc"] <= 1.0
    assert 0.0 <= result["aupro"] <= 1.0 and set(result["per_family_aupro"]) == families
    # the edge test moves every labelled-family defect (all narrower than 100 px at 64 px), never the held-out one
    moved = [r for r in rows if r["label"] not in ("good", HELD_OUT)]
    masks = [_read_gray(ss.root / r["mask"]) for r in moved]
    assert result["edge"]["defects"] == sum(int(np.any(m > 127)) for m in masks)
    assert 0.0 <= result["edge"]["found_at_edge"] <= 1.0 and 0.0 <= result["edge"]["found_in_place"] <= 1.0
    out = tmp_path / "dm.json"
    assert main(["--model", str(model), "--test", str(ss.root), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text()) and printed["image_auroc"] == result["image_auroc"]
    assert "edge" not in printed
