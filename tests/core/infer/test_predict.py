"""Line-side predict: no torch, CSV/JSON-lines contracts, heatmaps, failures, foreign models refused."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from sslinspect import api
from sslinspect.cli import main
from sslinspect.errors import ModelError
from sslinspect.infer.onnx_predictor import Prediction, Predictor, expand_inputs
from sslinspect.infer.output import OVERLAY_FLOOR, csv_header, csv_row, display_label, json_record, overlay
from tests.conftest import REPO, subprocess_env


@pytest.fixture
def model(trained_project: Path) -> Path:
    return trained_project / "exports" / "model" / "model.onnx"


def test_predict_runs_with_torch_unimportable(model: Path, demo_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "p.csv"
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any 'import torch' now raises ImportError\n"
        "sys.modules['torchvision'] = None\n"
        "from sslinspect import api\n"
        f"r = api.predict({str(model)!r}, [{str(demo_data.test_dir)!r}], out={str(out)!r}, fmt='csv')\n"
        "import sslinspect.infer.watch, sslinspect.infer.output\n"
        "assert all(m is None for k, m in sys.modules.items() if k.split('.')[0] == 'torch')\n"
        "print(r.total, len(r.failed))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["20", "0"]
    assert len(list(csv.DictReader(out.read_text().splitlines()))) == 20


def test_csv_keeps_its_contract_and_appends_the_decision(model: Path, demo_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "p.csv"
    r = api.predict(model, [demo_data.test_dir / "*.png"], out=out)
    header = out.read_text().splitlines()[0].split(",")
    n = len(r.classes)
    assert header[:5] == ["path", "label", "confidence", "anomaly_score", "is_defect"]
    assert header[5 : 5 + n] == [f"p_{c}" for c in r.classes]
    assert header[5 + n :] == ["decision", "error", "region", "novelty", "type_sure"]
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == r.total == len(list(demo_data.test_dir.glob("*.png")))
    assert {row["decision"] for row in rows} <= {"OK", "review", "NG"}
    assert all((row["decision"] == "NG") == (row["is_defect"] == "1") for row in rows)


def test_jsonl_and_heatmaps_with_a_bad_frame(model: Path, demo_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    out, heat = tmp_path / "p.jsonl", tmp_path / "heat"
    good = sorted(demo_data.test_dir.glob("*.png"))[:3]
    r = api.predict(model, [*good, bad], out=out, heatmaps=heat)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["path"] for rec in recs] == [str(p) for p in [*good, bad]]
    assert "error" in recs[-1] and r.failed == [(str(bad), recs[-1]["error"])]
    for rec in recs[:3]:
        img = cv2.imread(rec["heatmap"])
        source = cv2.imread(rec["path"], cv2.IMREAD_UNCHANGED)
        assert img is not None and source is not None and img.shape[:2] == source.shape[:2]
        assert abs(sum(rec["probabilities"].values()) - 1) < 1e-3
        assert ("type_sure" in rec) == ("novelty" in rec) == (rec["decision"] != "OK")  # only named parts


def test_cli_predict_lists_each_failure_and_exits_1(model: Path, demo_data, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    first = sorted(demo_data.test_dir.glob("*.png"))[0]
    code = main(["predict", str(model), str(first), str(tmp_path / "*.png"), str(tmp_path / "*.jpg")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {tmp_path / 'a.png'}: empty file" in err and f"error: {tmp_path / 'b.jpg'}: " in err


def test_a_part_that_passes_is_good_whatever_the_classifier_guesses(tmp_path: Path) -> None:
    from tests.reliability import tiny_onnx

    path = tiny_onnx.model(tmp_path / "m.onnx", class_bias=[0.0, 3.0], decision_offset=0)  # classifier: "scratch"
    dark, bright = tiny_onnx.image(tmp_path / "ok.png", 40), tiny_onnx.image(tmp_path / "ng.png", 200)
    ok, ng = Predictor(path, device="cpu").predict_paths([dark, bright])
    assert (ok.decision, ok.label) == ("OK", "good")
    assert ok.confidence == pytest.approx(ok.probabilities[0]) and ok.confidence < 0.1  # p_good, not the top class
    assert (ng.decision, ng.label) == ("NG", "scratch")  # no typing head: the classifier names what is not OK
    assert ng.confidence == pytest.approx(max(ng.probabilities))


def test_model_without_our_metadata_is_refused(model: Path, tmp_path: Path) -> None:
    m = onnx.load(str(model))
    del m.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(m, str(foreign))
    with pytest.raises(ModelError, match="not an SSL Inspect model"):
        Predictor(foreign)


@pytest.mark.parametrize(("sure", "cell", "drawn"), [(True, "1", "crack"), (False, "0", "crack?"), (None, "", "crack")])
def test_type_sure_is_the_last_column_and_the_same_in_both_formats(sure: bool | None, cell: str, drawn: str) -> None:
    classes = ("good", "crack")
    p = Prediction("a.png", "crack", 0.6, 0.9, True, (0.0, 1.0), decision="NG", novelty=0.5, type_sure=sure)
    row = dict(zip(csv_header(classes), csv_row(p, len(classes)), strict=True))
    assert list(row)[-1] == "type_sure" and row["type_sure"] == cell
    rec = json.loads(json_record(p, classes))
    assert rec.get("type_sure", "") == ("" if sure is None else int(sure))
    assert display_label(p) == drawn
    unknown = Prediction("b.png", "unknown", 0.9, 0.9, True, (0.0, 1.0), decision="NG", novelty=2.0, type_sure=False)
    assert display_label(unknown) == "unknown"  # not a name: no question mark
    failed = Prediction("c.png", error="unreadable")
    assert csv_row(failed, len(classes))[-1] == "" and len(csv_row(failed, 2)) == len(csv_header(classes))
    assert "type_sure" not in json.loads(json_record(failed, classes))


def test_a_good_map_leaves_the_image_untouched() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    calm = overlay(rgb, np.full((32, 32), OVERLAY_FLOOR, np.float32))
    np.testing.assert_array_equal(calm, rgb[:, :, ::-1])
    hot = overlay(rgb, np.full((32, 32), 1.0, np.float32))
    assert np.abs(hot.astype(int) - rgb[:, :, ::-1]).mean() > 20


def test_a_named_defect_shows_through_its_outline_and_its_name_is_readable() -> None:
    """The heatmap of a flagged part: the defect under the outline is still seen (a tint, not a fill), and the name
    sits on a dark plate above the outline, inside the frame, off the defect."""
    rgb = np.full((256, 256, 3), 128, np.uint8)
    rgb[120:124, 60:200] = 20  # a dark scratch
    region = np.zeros((256, 256), bool)
    region[112:132, 52:208] = True
    hot = np.where(region, 1.5, 0.0).astype(np.float32)
    bgr = overlay(rgb, hot, region=region, label="scratch")
    line, around = bgr[121, 100].astype(int), bgr[116, 100].astype(int)
    assert np.abs(around - line).max() > 60  # the scratch still stands out from its surround inside the region
    filled = overlay(rgb, hot)  # without a named region the heat is painted fully
    assert np.abs(filled[116, 100].astype(int) - filled[121, 100].astype(int)).max() < np.abs(around - line).max()
    plate = bgr[:110, 40:220]
    assert (plate.max(-1) >= 250).sum() > 20  # white letters above the outline
    assert (plate.max(-1) <= 40).sum() > 200  # on a dark plate
    at_top = overlay(rgb, hot, region=np.roll(region, -110, 0), label="scratch")  # no room above: written below
    assert (at_top[24:80, 40:220].max(-1) >= 250).sum() > 20 and (at_top[:2].max(-1) >= 250).sum() <= 20


def test_inputs_expand_files_folders_and_globs(demo_data) -> None:  # type: ignore[no-untyped-def]
    folder = expand_inputs([demo_data.test_dir])
    pngs = expand_inputs([str(demo_data.test_dir / "*.png")])
    assert set(pngs) <= set(folder) and pngs and len(expand_inputs([*pngs, *pngs])) == len(pngs)


def test_batches_come_back_in_order(model: Path, demo_data) -> None:  # type: ignore[no-untyped-def]
    paths = expand_inputs([demo_data.test_dir]) * 3
    preds = list(Predictor(model).predict_paths(paths, batch_size=4))
    assert [p.path for p in preds] == [str(p) for p in paths]
    assert preds[0].anomaly_score == preds[len(paths) // 3].anomaly_score


@pytest.mark.gpu
def test_cuda_provider_scores_like_cpu(model: Path, demo_data) -> None:  # type: ignore[no-untyped-def]
    paths = expand_inputs([demo_data.test_dir])
    cpu = list(Predictor(model, device="cpu").predict_paths(paths))
    gpu_predictor = Predictor(model, device="cuda")
    assert gpu_predictor.provider == "CUDAExecutionProvider"
    gpu = list(gpu_predictor.predict_paths(paths))
    np.testing.assert_allclose([p.anomaly_score for p in gpu], [p.anomaly_score for p in cpu], atol=1e-3)
