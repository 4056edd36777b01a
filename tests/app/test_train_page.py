"""Train step: the training job, cross-validated metrics, confusion matrix, ROC/PR curves, the movable threshold and
the most uncertain images (label, retrain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt

from sslinspect.events import Finished, Progress
from tests.app.conftest import write_fewshot_run, write_pretrain_run

pytestmark = pytest.mark.gui


@pytest.fixture
def train_page(window: Any, controller: Any, scanned_project: Path) -> Any:
    write_pretrain_run(scanned_project)
    write_fewshot_run(scanned_project)
    assert controller.open_project(scanned_project)
    assert window.go_to(4)
    return window.pages[4]


def test_metrics_confusion_matrix_and_per_class_table(train_page: Any) -> None:
    v = train_page.values
    assert v["cv"].text().startswith("0.750 (accuracy 0.800, 2 folds)")
    assert v["auroc"].text() == "1.000" and v["classifier"].text() == "prototype over good, disc"
    c = train_page.confusion
    assert (c.rowCount(), c.columnCount()) == (2, 2)
    assert [[c.item(i, j).text() for j in range(2)] for i in range(2)] == [["3", "1"], ["0", "2"]]
    assert c.horizontalHeaderItem(1).text() == "disc"
    assert train_page.per_class.item(1, 1).text() == "1.00"  # disc recall


def test_threshold_moves_with_slider_spin_and_line(train_page: Any, controller: Any) -> None:
    a = train_page.analysis
    assert train_page.spin.value() == pytest.approx(a.threshold, abs=1e-4)
    assert "flags" in train_page.effect.text()
    train_page.spin.setValue(0.5)
    expected = float((a.anomaly >= 0.5).mean())
    assert f"flags {100 * expected:.1f} %" in train_page.effect.text()
    assert controller.threshold == pytest.approx(0.5)
    train_page.hist.line_moved.emit(0.2)
    assert train_page.spin.value() == pytest.approx(0.2, abs=1e-4)
    assert train_page.hist._vline.value() == pytest.approx(0.2)
    train_page.reset_button.click()
    assert controller.threshold is None


def test_curves_are_drawn_from_the_labelled_images(train_page: Any) -> None:
    x, y = train_page.roc.series_data("ROC")
    assert x[0] == 0 and y[-1] == 1 and len(x) >= 2
    assert "AUROC" in train_page.roc.plot.getPlotItem().titleLabel.text
    assert len(train_page.hist.series_data("unlabelled + good")[0]) == 61  # 60 bins, step-mode edges
    assert len(train_page.hist.series_data("labelled defects")[0]) == 61


def test_most_uncertain_unlabelled_images_can_be_labelled(train_page: Any, controller: Any, qtbot: Any) -> None:
    keys = train_page.uncertain.keys()
    a = train_page.analysis
    conf = [a.confidence[a.rows_of(np.array([k]))[0]] for k in keys]
    assert len(keys) == 34 and conf == sorted(conf)  # 36 images, 2 labelled
    assert train_page.uncertain.grid_model.data(train_page.uncertain.model().index(0)).startswith("good ")
    controller.set_labels([keys[0]], "disc")
    assert (
        train_page.uncertain.grid_model.data(train_page.uncertain.model().index(0), Qt.ItemDataRole.UserRole + 2)[0]
        == "disc"
    )


def test_training_job_runs_with_the_form_settings_and_reloads(
    train_page: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    fake_workers.script(
        "train",
        [Progress(stage="embed", step=1, total=2, message="embedding"), Finished(stage="fewshot", status="ok")],
        before_finish=lambda: write_fewshot_run(scanned_project),
    )
    train_page.form.editor("knn_k").setValue(3)
    old = train_page.analysis.run_dir
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        assert train_page.train() is not None
        assert not train_page.train_button.isEnabled() and train_page.cancel_button.isEnabled()
    cmd = fake_workers.jobs[0].command
    assert cmd[:2] == ["train", str(scanned_project.resolve())]
    assert json.loads(Path(cmd[-1]).read_text(encoding="utf-8"))["train"]["knn_k"] == 3
    assert train_page.analysis.run_dir != old and train_page.train_button.isEnabled()


def test_failed_training_shows_the_error(train_page: Any, controller: Any, fake_workers: Any, qtbot: Any) -> None:
    fake_workers.script("train", [], status="failed")
    errors: list[str] = []
    controller.error_occurred.connect(lambda m, d: errors.append(m))
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        train_page.train()
    assert errors == ["Training failed: scripted failure"]
    assert train_page.status_label.text() == "Training failed: scripted failure"


def test_notes_warn_when_the_classifier_is_near_chance(train_page: Any) -> None:
    a = train_page.analysis
    assert "near chance" not in train_page.values["notes"].text()  # 0.75 over 2 classes
    metrics_path = a.run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics["cv"]["balanced_accuracy"] = 0.55
    metrics["decision"] = "anomaly"
    metrics_path.write_text(json.dumps(metrics), encoding="utf-8")
    train_page.reload()
    notes = train_page.values["notes"].text()
    assert "near chance (0.50)" in notes and "anomaly score alone" in notes
