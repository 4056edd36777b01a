"""bench/blind_check.py: blinded sheets of a surface's test frames, a person's answers scored against the truth and
against a model's scores at the person's false-alarm rate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from bench.blind_check import main
from bench.quality_data import SetParams, generate_surface
from bench.quality_defects import DEFAULT_HELD_OUT


def test_sheets_hide_the_answers_and_the_held_out_family_and_score_what_a_person_called(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = SetParams("metal", seed=7, frame=64, n_train=60, n_shots=1, n_good_labels=2, n_test=3, n_test_good=10)
    root = generate_surface(tmp_path / "dev", params).root
    out = tmp_path / "blind"
    assert main(["render", "--set", str(root), "--out", str(out), "--frames", "8", "--seed", "3"]) == 0
    capsys.readouterr()
    sheets = sorted(out.glob("sheet_*.png"))
    assert len(sheets) == 2
    sheet = cv2.imread(str(sheets[0]))
    assert sheet is not None and sheet.shape[:2] == (2 * 96, 2 * 96)  # 2 × 2 frames, 1.5×
    frames = json.loads((out / "key.json").read_text())["frames"]
    labels = [f["label"] for f in frames]
    assert labels.count("good") == 4 and DEFAULT_HELD_OUT not in labels and len(set(labels) - {"good"}) == 4
    again = tmp_path / "again"
    assert main(["render", "--set", str(root), "--out", str(again), "--frames", "8", "--seed", "3"]) == 0
    assert json.loads((again / "key.json").read_text())["frames"] == frames  # a seed gives the same sheets
    capsys.readouterr()

    # a person who calls every defect and one good frame: hit rate 1, false alarms 1 of 4
    called = [i for i, label in enumerate(labels) if label != "good"] + [labels.index("good")]
    # a model that scores each defective frame 1.0 and the good ones 0.0–0.9
    with (root / "test.csv").open(newline="") as fh:
        truth = list(csv.DictReader(fh))
    preds = tmp_path / "p.csv"
    with preds.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "anomaly_score"])
        goods = 0
        for r in truth:
            if r["label"] == "good":
                w.writerow([str(root / r["path"]), goods / 10])
                goods += 1
            else:
                w.writerow([str(root / r["path"]), 1.0])
    argv = ["score", "--out", str(out), "--defective", ",".join(map(str, called)), "--predictions", str(preds)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["person"]["hit_rate"] == 1.0 and result["person"]["false_alarm_rate"] == 0.25
    assert all(v == "1/1" for v in result["person"]["found_per_family"].values())
    assert result["model"]["hit_rate_mean_of_families"] == 1.0 and 0.6 < result["model"]["threshold"] < 0.9
    assert main(["score", "--out", str(out), "--defective", "99"]) == 2  # a frame that is not on the sheets
    assert "out of range" in capsys.readouterr().err
