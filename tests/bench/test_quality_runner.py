"""The quality benchmark's runner (bench/quality.py): scoring predict's output, the summary, a tiny real run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.quality import main, score_model
from bench.quality_summary import summarise, table
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
    held = {k: m["held_out"][k] for k in ("family", "auroc", "flagged_rate", "labelled_as")}
    assert held == {"family": "particle", "auroc": 1.0, "flagged_rate": 1.0, "labelled_as": {"crack": 1}}
    # no type_sure column (predict before it): the confidence metrics cannot be measured
    assert all(math.isnan(m["held_out"][k]) for k in NAMING_HELD_OUT)
    assert math.isnan(m["type_sure_coverage_flagged"]) and math.isnan(m["type_sure_accuracy_flagged"])
    summary = summarise([{"surface": "x", "model": {**m, "pixel_auroc": 0.6}, "floors": None, "seconds": {"a": 1.0}}])
    assert summary["mean"]["image_auroc"] == pytest.approx(5 / 6) and summary["mean"]["pixel_auroc"] == 0.6
    assert summary["mean"]["held_out_unknown_or_unsure_flagged"] is None
    assert summary["mean"]["aupro"] is None  # a result saved before AUPRO existed still summarises
    with_pro = {"surface": "x", "model": {**m, "pixel_auroc": 0.6, "aupro": 0.7}, "floors": None, "seconds": {"a": 1.0}}
    assert summarise([with_pro])["mean"]["aupro"] == 0.7


NAMING_HELD_OUT = ("unknown_or_unsure_flagged", "unknown_or_unsure", "confidently_mislabelled")


def _pred(score: float, flagged: int, label: str, sure: str) -> dict[str, str]:
    return {"anomaly_score": str(score), "is_defect": str(flagged), "label": label, "type_sure": sure}


def test_score_model_counts_confident_names_from_type_sure() -> None:
    truth = ["good", "scratch", "scratch", "scratch", "crack", "crack", *["particle"] * 5]
    rows = [{"path": f"test/{k}.png", "label": t} for k, t in enumerate(truth)]
    preds = [
        _pred(0.1, 0, "good", ""),  # OK part: not named
        _pred(0.9, 1, "scratch", "1"),  # sure and right
        _pred(0.8, 1, "crack", "1"),  # sure and wrong
        _pred(0.7, 1, "scratch", "0"),  # unsure
        _pred(0.9, 1, "crack", "1"),  # sure and right
        _pred(0.2, 0, "good", ""),  # missed: not among the flagged
        _pred(0.9, 1, "crack", "1"),  # held out, confidently mislabelled
        _pred(0.9, 1, "scratch", "0"),  # held out, unsure
        _pred(0.9, 1, "unknown", "0"),  # held out, unknown
        _pred(0.3, 0, "good", ""),  # held out, not flagged
        _pred(0.3, 0, "good", ""),  # held out, not flagged
    ]
    m = score_model(rows, {f"{k}.png": x for k, x in enumerate(preds)}, ("scratch", "crack"), "particle")
    assert m["held_out"]["unknown_or_unsure_flagged"] == pytest.approx(2 / 3)
    assert m["held_out"]["unknown_or_unsure"] == pytest.approx(4 / 5)
    assert m["held_out"]["confidently_mislabelled"] == pytest.approx(1 / 5)
    assert m["type_sure_coverage_flagged"] == pytest.approx(3 / 4)  # 4 labelled defects flagged, 3 named sure
    assert m["type_sure_accuracy_flagged"] == pytest.approx(2 / 3)
    assert m["defect_type_balanced_accuracy_flagged"] == pytest.approx((2 / 3 + 1) / 2)  # unchanged metric
    runs = [
        {"surface": "x", "seed": 0, "model": {**m, "pixel_auroc": 0.6}, "floors": None, "seconds": {"a": 1.0}},
        {"surface": "x", "seed": 1, "model": {**m, "pixel_auroc": 0.6}, "floors": None, "seconds": {"a": 1.0}},
    ]
    mean = summarise(runs)["mean"]
    assert mean["held_out_unknown_or_unsure_flagged"] == pytest.approx(2 / 3)
    assert mean["type_sure_accuracy_flagged"] == pytest.approx(2 / 3)
    assert mean["held_out_confidently_mislabelled_sd"] == pytest.approx(0.0)


def test_collect_summarises_result_files_written_before_the_confidence_metrics(tmp_path: Path) -> None:
    """An older result file (no confidence keys) still summarises: its values are missing, not an error."""
    rows = [{"path": "test/g.png", "label": "good"}, {"path": "test/p.png", "label": "particle"}]
    old_preds = {"g.png": {"anomaly_score": "0.1", "is_defect": "0", "label": "good"}}
    old_preds["p.png"] = {"anomaly_score": "0.9", "is_defect": "1", "label": "crack"}
    m = score_model(rows, old_preds, ("scratch", "crack"), "particle")
    for k in NAMING_HELD_OUT:
        del m["held_out"][k]
    del m["type_sure_coverage_flagged"], m["type_sure_accuracy_flagged"]
    result = {"surface": "x", "seed": 0, "model": {**m, "pixel_auroc": 0.6}, "floors": None, "seconds": {"a": 1.0}}
    path = tmp_path / "x-s0.json"
    path.write_text(json.dumps(result, default=float))
    out = tmp_path / "summary.json"
    assert main(["--collect", str(path), "--out", str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]
    assert summary["mean"]["image_auroc"] == 1.0
    assert summary["mean"]["held_out_confidently_mislabelled"] is None
    assert summary["per_surface"]["x"]["type_sure_coverage_flagged"] is None
    assert "held-out NG unknown/unsure" in table(summary)


def test_summary_gives_type_accuracy_over_label_draws() -> None:
    """Each (seed, draw) is one value; the sd within a seed is the mean of the per-seed sds; per-type recall too."""
    rows = [{"path": "test/s.png", "label": "scratch"}, {"path": "test/c.png", "label": "crack"}]

    def draw(d: int, crack_named: str) -> dict[str, object]:
        preds = {"s.png": _pred(0.9, 1, "scratch", "1"), "c.png": _pred(0.9, 1, crack_named, "0")}
        m = score_model(rows, preds, ("scratch", "crack"), "particle")
        assert m["type_confusion"]["crack"] == {crack_named: 1}
        return {"draw": d, **m}

    def run(seed: int, named: list[str]) -> dict[str, object]:
        draws = [draw(d, n) for d, n in enumerate(named)]
        m = {**draws[0], "pixel_auroc": 0.6}
        return {"surface": "x", "seed": seed, "model": m, "floors": None, "seconds": {"a": 1.0}, "label_draws": draws}

    summary = summarise([run(0, ["crack", "scratch"]), run(1, ["crack", "crack"])])
    x = summary["per_surface"]["x"]
    assert x["label_draws"] == 4
    assert x["defect_type_balanced_accuracy_over_draws"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert x["defect_type_balanced_accuracy_over_draws_sd_within_seed"] == pytest.approx((0.5**0.5 / 2 + 0) / 2)
    assert x["per_type_recall_over_draws"] == {"scratch": 1.0, "crack": 0.75}
    assert summary["mean"]["defect_type_balanced_accuracy_over_draws"] == pytest.approx(0.875)
    assert "| x | 4 | 0.875" in table(summary) and "crack 0.750" in table(summary)
    # runs without draws: no such keys, and the table has no draws block
    plain = {"surface": "x", "seed": 0, "model": {**draw(0, "crack"), "pixel_auroc": 0.6}, "floors": None}
    assert "label_draws" not in summarise([{**plain, "seconds": {"a": 1.0}}])["per_surface"]["x"]


# -- end to end -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_end_to_end_run_scores_the_real_cli(tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    cmd = [sys.executable, str(REPO / "bench" / "quality.py"), "--quick", "--surfaces", "metal", "--max-minutes", "0.2"]
    cmd += ["--image-size", "64", "--work", str(tmp_path / "work"), "--out", str(out), "--label-draws", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=1800, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    run = result["runs"][0]
    assert set(run["seconds"]) >= {"init", "labels", "pretrain", "train", "export", "predict", "maps"}
    model = run["model"]
    assert 0.0 <= model["image_auroc"] <= 1.0 and 0.0 <= model["pixel_auroc"] <= 1.0
    assert 0.0 <= model["aupro"] <= 1.0 and "scratch" in model["per_family_aupro"]
    assert model["model_input_size"] == 64
    assert sum(model["held_out"]["labelled_as"].values()) == 10
    assert run["floors"]["patch_knn"]["pixel_auroc"] > 0.5
    assert "| metal |" in result["table_md"]
    assert result["machine"]["cpu"] and result["machine"]["cpu_count"] >= 1  # which machine: comparable runs only
    assert run["machine"]["torch"] and "simd" in run["machine"]
    # the second label draw: other good frames labelled in a copy of the project, fitted and predicted again
    first, second = run["label_draws"]
    assert first["defect_type_balanced_accuracy"] == model["defect_type_balanced_accuracy"]
    assert set(second["seconds"]) == {"labels", "train", "export", "predict"}
    assert 0.0 <= second["defect_type_balanced_accuracy"] <= 1.0
    assert (tmp_path / "work" / "models" / "metal-s0-draw1" / "test_predictions.csv").is_file()
    assert result["summary"]["per_surface"]["metal"]["label_draws"] == 2
