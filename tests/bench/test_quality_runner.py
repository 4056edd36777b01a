"""The quality benchmark's runner (bench/quality.py): scoring predict's output, the summary, a tiny real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.quality import score_model, summarise
from tests.conftest import REPO, subprocess_env


def test_score_model_on_hand_made_predictions() -> None:
    rows = [
        {"path": "test/g1.png", "label": "good"},
        {"path": "test/g2.png", "label": "good"},
        {"path": "test/s1.png", "label": "scratch"},
        {"path": "test/c1.png", "label": "crack"},
        {"path": "test/p1.png", "label": "particle"},
    ]

    def pred(score: float, flagged: int, label: str) -> dict[str, str]:
        return {"anomaly_score": str(score), "is_defect": str(flagged), "label": label}

    preds = {
        "g1.png": pred(0.1, 0, "good"),
        "g2.png": pred(0.5, 1, "good"),
        "s1.png": pred(0.9, 1, "scratch"),
        "c1.png": pred(0.3, 0, "scratch"),
        "p1.png": pred(0.7, 1, "crack"),
    }
    m = score_model(rows, preds, ("scratch", "crack"), "particle")
    assert m["image_auroc"] == pytest.approx(5 / 6)  # 0.9, 0.7 beat both goods; 0.3 beats one
    assert m["per_family_auroc"]["scratch"] == 1.0 and m["per_family_auroc"]["crack"] == 0.5
    assert m["ok_ng_balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["good_flagged_rate"] == 0.5
    assert m["defect_type_balanced_accuracy"] == pytest.approx(0.5)  # scratch right, crack called scratch
    assert m["held_out"] == {"family": "particle", "auroc": 1.0, "flagged_rate": 1.0, "labelled_as": {"crack": 1}}
    summary = summarise([{"surface": "x", "model": {**m, "pixel_auroc": 0.6}, "floors": None, "seconds": {"a": 1.0}}])
    assert summary["mean"]["image_auroc"] == pytest.approx(5 / 6) and summary["mean"]["pixel_auroc"] == 0.6


# -- end to end -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_end_to_end_run_scores_the_real_cli(tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    cmd = [sys.executable, str(REPO / "bench" / "quality.py"), "--quick", "--surfaces", "metal", "--max-minutes", "0.2"]
    cmd += ["--image-size", "64", "--work", str(tmp_path / "work"), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=1800, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    run = result["runs"][0]
    assert set(run["seconds"]) >= {"init", "labels", "pretrain", "train", "export", "predict", "maps"}
    model = run["model"]
    assert 0.0 <= model["image_auroc"] <= 1.0 and 0.0 <= model["pixel_auroc"] <= 1.0
    assert model["model_input_size"] == 64
    assert sum(model["held_out"]["labelled_as"].values()) == 10
    assert run["floors"]["patch_knn"]["pixel_auroc"] > 0.5
    assert "| metal |" in result["table_md"]
