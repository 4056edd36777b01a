"""Export step: the export job and its parity result from the sidecar; testing the model on a folder with a real
``sslinspect predict`` worker process and ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from sslinspect.events import Progress
from tests.app.conftest import write_fewshot_run, write_pretrain_run, write_stub_model

pytestmark = pytest.mark.gui


@pytest.fixture
def export_page(window: Any, controller: Any, scanned_project: Path) -> Any:
    write_pretrain_run(scanned_project)
    write_fewshot_run(scanned_project)
    assert controller.open_project(scanned_project)
    assert window.go_to(5)
    return window.pages[5]


def test_export_job_writes_where_asked_and_shows_the_parity_check(
    export_page: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    default = scanned_project.resolve() / "exports" / "model" / "model.onnx"
    assert export_page.model_path() == default and export_page.values["parity"].text() == "—"
    assert not export_page.test_button.isEnabled()
    export_page.form.editor("precision").setCurrentText("fp16")
    fake_workers.script(
        "export",
        [Progress(stage="export", step=2, total=3, message="parity check on real images")],
        before_finish=lambda: write_stub_model(default),
    )
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        export_page.export_button.click()
    cmd = fake_workers.jobs[0].command
    assert cmd[:4] == ["export", str(scanned_project.resolve()), "--out", str(default)]
    assert json.loads(Path(cmd[-1]).read_text(encoding="utf-8"))["export"]["precision"] == "fp16"
    assert "passed" in export_page.values["parity"].text() and "16 real images" in export_page.values["parity"].text()
    assert export_page.values["threshold"].text().startswith("0.4500")
    assert export_page.test_button.isEnabled() and export_page.status_label.text() == "Exported."


def test_failed_parity_is_shown_as_failed(export_page: Any) -> None:
    write_stub_model(export_page.model_path(), passed=False)
    assert export_page.show_sidecar()
    assert "FAILED" in export_page.values["parity"].text()
    assert export_page.verdict.text().startswith("<b>Finds defects: ")
    assert "ExecutionProvider" not in export_page.values["parity"].text()  # issue 12: plain words, no jargon
    assert "|Δp|" not in export_page.values["parity"].text()


def test_model_is_tested_on_a_folder_with_onnx_runtime(
    export_page: Any, controller: Any, tmp_path: Path, qtbot: Any
) -> None:
    write_stub_model(export_page.model_path(), threshold=0.45)
    export_page.reload()
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name, value in (("dark.png", 30), ("bright.png", 220), ("mid.png", 120)):
        cv2.imwrite(str(folder / name), np.full((40, 50, 3), value, np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    controller.threshold = 0.4
    export_page.reload()
    assert export_page.threshold_choice.currentData() == pytest.approx(0.4)
    with qtbot.waitSignal(controller.job_finished, timeout=120_000) as done:
        job = export_page.test_folder(folder)  # a real `python -m sslinspect predict` worker
        assert job is not None
    assert done.args[1] == "failed"  # predict exits 1 when a file was unreadable; the others are still scored
    assert "broken.png" in job.error_message
    keys = export_page.predictions.keys()
    assert [Path(k).name for k in keys] == ["bright.png", "mid.png", "dark.png"]  # most anomalous first
    badges = [export_page._badge(k)[0] for k in keys]
    assert badges == ["NG disc", "NG", "OK"]  # 220/255 and 120/255 ≥ 0.4 > 30/255; mid: NG without a type
    # one truth per tile (issue 12: "DEFECT" above "good 0.32"): decision and type, the score against the threshold
    captions = [export_page._caption(k) for k in keys]
    assert captions == ["0.86 ≥ 0.40", "0.47 ≥ 0.40", "0.12 < 0.40"]
    export_page.predictions.setCurrentIndex(export_page.predictions.grid_model.index(0))
    assert export_page.preview_caption.text() == "bright.png — NG disc, anomaly score 0.86 ≥ 0.40"
    assert "3 image(s) scored: 2 flagged" in export_page.test_summary.text()
    assert "1 file(s) could not be read" in export_page.test_summary.text()
    box = export_page.window().findChild(QMessageBox, "errorDialog")
    assert box is not None and box.text().startswith("Testing the model failed: ") and "broken.png" in box.text()
    assert box.detailedText()  # the worker's stderr, behind "Show Details..."
    box.close()


def test_an_unsure_name_is_marked_like_on_the_heatmaps(export_page: Any) -> None:
    row = {"path": "a.png", "is_defect": "1", "label": "scratch", "anomaly_score": "0.9", "region": "1 2 30 40"}
    export_page._rows = {
        "sure": {**row, "type_sure": "1"},
        "guess": {**row, "type_sure": "0"},
        "new": {**row, "label": "unknown", "type_sure": "0"},
        "old": row,  # a model without typing confidence: no mark
    }
    assert [export_page._badge(k)[0] for k in ("sure", "guess", "new", "old")] == [
        "NG scratch",
        "NG scratch?",
        "NG unknown",
        "NG scratch",
    ]
    assert "type 'scratch' (a guess: below the confidence the fit calls sure)" in export_page._type_words("guess")
    assert "a guess" not in export_page._type_words("sure")


def test_export_refuses_an_out_of_date_model_with_a_one_click_fix(
    export_page: Any, controller: Any, fake_workers: Any, qtbot: Any
) -> None:
    """Issue 12: Export wrote a model with class 'good' only, ignoring three labels given after the fit."""
    from sslinspect import api
    from sslinspect.staleness import record_fit

    p = controller.project
    record_fit(p, controller.status.fewshot_run, api.label_stamp(p))
    controller.set_labels([7, 8, 9], "scratch")
    controller.set_labels([10], "good")
    controller.set_labels([11], "disc")
    export_page.reload()
    assert not export_page.export_button.isEnabled() and export_page.export() is None
    text = export_page.blocked.text()
    assert text.startswith("Export refused: the labels changed") and "'scratch'" in text
    assert export_page.refit_button.isVisible(), (export_page.blockers(), controller.status.labels)
    fake_workers.script("train", [])
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        export_page.refit_button.click()
    assert fake_workers.jobs[0].command[0] == "train"


def test_the_demo_offers_its_own_test_images(
    export_page: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    """Issue 12: the folder picker started in the home folder while the demo's test images sit in a hidden folder."""
    assert not export_page.demo_test_button.isVisible()  # not a demo project
    assert export_page.test_start_folder() == str(controller.project.root)
    p = controller.project
    test_dir = p.source_dir(p.sources[0]).parent / "test"
    test_dir.mkdir()
    p.update(lambda d: d.__setitem__("demo", True))
    write_stub_model(export_page.model_path())
    export_page.reload()
    assert export_page.demo_test_button.isVisible() and export_page.test_start_folder() == str(test_dir)
    fake_workers.script("predict", [])
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        export_page.demo_test_button.click()
    assert fake_workers.jobs[0].command[:3] == ["predict", str(export_page.model_path()), str(test_dir)]


def test_an_int8_model_says_what_its_check_kept_in_fp32(export_page: Any) -> None:
    path = write_stub_model(export_page.model_path())
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text(encoding="utf-8"))
    check = {"precision": "int8", "passed": True, "forced": False, "fp32_ops": 4}
    side.write_text(json.dumps({**meta, "precision": "int8", "precision_check": check}), encoding="utf-8")
    assert export_page.show_sidecar()
    text = export_page.values["model"].text()
    assert text.startswith("int8 (the backbone's first 4 operators kept in fp32") and "--force" not in text
    side.write_text(json.dumps({**meta, "precision": "int8", "precision_check": {**check, "fp32_ops": 0}}), "utf-8")
    assert export_page.show_sidecar() and export_page.values["model"].text().startswith("int8, 32 px")
    forced = {**check, "passed": False, "forced": True, "fp32_ops": 4}
    side.write_text(json.dumps({**meta, "precision": "int8", "precision_check": forced}), encoding="utf-8")
    assert export_page.show_sidecar() and "written with --force" in export_page.values["model"].text()
