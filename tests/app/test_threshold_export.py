"""The threshold picked on the Fit page reaches the exported model: stored in the real trained head, shown on the
Fit and Export pages after reopening, baked into a real ONNX export as the default of its threshold inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from app.widgets.export_result import FAIL
from sslinspect import api
from sslinspect.export.onnx import METADATA_KEY
from sslinspect.infer.onnx_predictor import Predictor

pytestmark = pytest.mark.gui


def test_threshold_used_for_export_is_stored_shown_and_baked_in(
    window: Any, controller: Any, trained_project: Path, tmp_path: Path
) -> None:
    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    assert controller.open_project(root)
    assert window.go_to(4)
    page = window.pages[4]
    box = page.threshold_panel.export_box
    assert "(calibrated)" in box.stored.text()
    calibrated = page.analysis.threshold
    scores = page.analysis.anomaly
    chosen = float(np.quantile(scores, 0.5))  # far from the calibrated high percentile
    review = float(np.quantile(scores, 0.3))
    assert abs(chosen - calibrated) > 1e-3

    # a review threshold above the NG threshold is refused and nothing is stored
    page.threshold_panel.spin.setValue(chosen)
    box.review.setValue(chosen + 0.05)
    assert box.apply() is None and "must not exceed" in box.stored.text()
    assert "threshold_override" not in json.loads((root / page.analysis.run_dir / "metrics.json").read_text())

    box.review.setValue(review)
    box.apply_button.click()
    assert "(chosen)" in box.stored.text() and f"{page.threshold_panel.spin.value():.4f}" in box.stored.text()
    chosen, review = page.threshold_panel.spin.value(), box.review.value()
    # issue 12: right after "Use for export" the Export page said "moved on the Fit page, not stored"
    assert window.go_to(5)
    assert window.pages[5].threshold_choice.count() == 1, window.pages[5].threshold_choice.itemText(1)
    assert window.go_to(4)

    # reopening the project (a new session) shows the stored choice, not the calibrated default
    controller.threshold = None
    assert controller.open_project(root)
    assert page.threshold_panel.spin.value() == pytest.approx(chosen, abs=1e-4)
    assert box.review.value() == pytest.approx(review, abs=1e-4)
    assert window.go_to(5)
    export_page = window.pages[5]
    assert f"NG ≥ {chosen:.4f}, review ≥ {review:.4f} (chosen)" in export_page.bake.text()
    assert export_page.threshold_choice.count() == 1  # nothing moved and unstored: only "built into the model"

    # a real export bakes the stored thresholds in (sidecar and metadata, which every runtime's caller feeds)
    project = api.open_project(root)
    out = tmp_path / "model.onnx"
    api.export_onnx(project, out)
    project.close()
    meta = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["threshold"] == pytest.approx(chosen, abs=1e-6)
    assert meta["review_threshold"] == pytest.approx(review, abs=1e-6)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    embedded = json.loads(sess.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert (embedded["threshold"], embedded["review_threshold"]) == pytest.approx((chosen, review), abs=1e-6)
    predictor = Predictor(out, device="cpu")
    assert (predictor.threshold, predictor.review_threshold) == pytest.approx((chosen, review), abs=1e-6)


def test_testing_a_folder_shows_heatmap_overlays(
    window: Any, controller: Any, trained_project: Path, demo_data: Any, tmp_path: Path, qtbot: Any
) -> None:
    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    assert controller.open_project(root)
    assert window.go_to(5)
    page = window.pages[5]
    assert page.model_path() == root / "exports" / "model" / "model.onnx" and page.show_sidecar()
    folder = tmp_path / "incoming"
    shutil.copytree(demo_data.test_dir, folder)
    with qtbot.waitSignal(controller.job_finished, timeout=120_000) as done:
        assert page.test_folder(folder) is not None  # a real `python -m sslinspect predict --heatmaps` worker
    assert done.args[1] == "ok"
    keys = page.predictions.keys()
    assert len(keys) == len(list(folder.iterdir())) > 0  # png and tif
    heat = page.heatmap_of(keys[0])
    assert heat is not None and heat.parent == page.model_path().parent / "test-incoming-heatmaps"
    overlay = cv2.imread(str(heat))
    image = cv2.imread(str(keys[0]))
    assert overlay is not None and image is not None and overlay.shape[:2] == image.shape[:2]
    assert page.show_heatmaps.isEnabled() and page.show_heatmaps.isChecked()
    assert page.provider._path_of(keys[0]) == heat  # the grid shows the overlays
    run = sorted((root / "runs" / "fewshot").iterdir())[-1]
    types = json.loads((run / "metrics.json").read_text())["typing"]["classes"]
    flagged = [k for k in keys if page._rows[k].get("is_defect") == "1" and page._rows[k].get("region")]
    assert flagged  # the demo's defects are flagged and typed from their region
    for k in flagged:  # the tile names the type (or 'unknown') and says it was read from the outlined region
        kind = page._rows[k]["label"]
        mark = "?" if kind != "unknown" and page._rows[k].get("type_sure") == "0" else ""  # unsure, as on heatmaps
        assert page._badge(k) == (f"NG {kind}{mark}", FAIL) and "outlined region" in page._tooltip(k)
        assert "outlined region" in page.describe_image(k)
        assert kind == "unknown" or kind in types
    page.predictions.select_keys([keys[0]], current=keys[0])
    assert page.preview.isVisibleTo(page) and not page.preview.pixmap().isNull()
    page.show_heatmaps.setChecked(False)  # back to the plain images
    assert page.provider._path_of(keys[0]) == Path(str(keys[0])) and not page.preview.isVisibleTo(page)


def test_fit_page_shows_the_stored_heatmaps(window: Any, controller: Any, trained_project: Path) -> None:
    assert controller.open_project(trained_project)  # read-only use
    assert window.go_to(4)
    page = window.pages[4]
    assert page.uncertain_view.heat_check.isEnabled() and not page.uncertain_view.heat_check.isChecked()
    a = page.analysis
    hottest = int(a.ids[int(np.argmax(a.anomaly))])
    plain = page.provider.load_now(hottest)
    page.uncertain_view.heat_check.setChecked(True)
    painted = page.provider.load_now(hottest)
    assert plain is not None and painted is not None and plain.size() == painted.size()
    assert plain != painted  # the most anomalous image is painted
    page.uncertain_view.heat_check.setChecked(False)
    assert page.provider.load_now(hottest) == plain
