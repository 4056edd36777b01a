"""Fit step: the fit job (label minimums checked first), the verdict, cross-validated metrics, confusion matrix, ROC/PR
curves with one AUROC, the movable threshold, "out of date" after label changes, and the most uncertain images."""

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


def _label_enough(controller: Any) -> None:
    """Two labels of each class (the scanned project has one 'good' and one 'disc')."""
    ids = sorted(controller.project.store.labels())
    free = [i for i in range(1, 40) if i not in ids]
    controller.set_labels(free[:1], "good")
    controller.set_labels(free[1:2], "disc")


@pytest.fixture
def fit_page(window: Any, controller: Any, scanned_project: Path) -> Any:
    write_pretrain_run(scanned_project)
    write_fewshot_run(scanned_project)
    assert controller.open_project(scanned_project)
    assert window.go_to(4)
    return window.pages[4]


def test_metrics_confusion_matrix_and_per_class_table(fit_page: Any) -> None:
    v = fit_page.values
    assert v["cv"].text().startswith("0.750 (accuracy 0.800, 2 folds)")
    assert v["auroc"].text() == "1.000" and v["classifier"].text() == "prototype over good, disc"
    c = fit_page.confusion_view.confusion
    assert (c.rowCount(), c.columnCount()) == (2, 2)
    assert [[c.item(i, j).text() for j in range(2)] for i in range(2)] == [["3", "1"], ["0", "2"]]
    assert c.horizontalHeaderItem(1).text() == "disc"
    assert fit_page.confusion_view.per_class.item(1, 1).text() == "1.00"  # disc recall


def test_threshold_moves_with_slider_spin_and_line(fit_page: Any, controller: Any) -> None:
    a = fit_page.analysis
    assert fit_page.threshold_panel.spin.value() == pytest.approx(a.threshold, abs=1e-4)
    assert "flags" in fit_page.threshold_panel.effect.text()
    fit_page.threshold_panel.spin.setValue(0.5)
    expected = float((a.anomaly >= 0.5).mean())
    assert f"flags {100 * expected:.1f} %" in fit_page.threshold_panel.effect.text()
    assert controller.threshold == pytest.approx(0.5)
    fit_page.threshold_panel.hist.line_moved.emit(0.2)
    assert fit_page.threshold_panel.spin.value() == pytest.approx(0.2, abs=1e-4)
    assert fit_page.threshold_panel.hist.line_value() == pytest.approx(0.2)
    fit_page.threshold_panel.reset_button.click()
    assert controller.threshold is None


def test_curves_are_drawn_from_the_labelled_images(fit_page: Any) -> None:
    x, y = fit_page.threshold_panel.roc.series_data("ROC")
    assert x[0] == 0 and y[-1] == 1 and len(x) >= 2
    assert "AUROC" in fit_page.threshold_panel.roc.note()
    assert len(fit_page.threshold_panel.hist.series_data("unlabelled + good")[0]) == 61  # 60 bins, step-mode edges
    assert len(fit_page.threshold_panel.hist.series_data("labelled defects")[0]) == 61


def test_most_uncertain_unlabelled_images_can_be_labelled(fit_page: Any, controller: Any, qtbot: Any) -> None:
    keys = fit_page.uncertain_view.grid.keys()
    a = fit_page.analysis
    conf = [a.confidence[a.rows_of(np.array([k]))[0]] for k in keys]
    assert len(keys) == 34 and conf == sorted(conf)  # 36 images, 2 labelled
    assert fit_page.uncertain_view.grid.grid_model.data(fit_page.uncertain_view.grid.model().index(0)).startswith(
        "good "
    )
    controller.set_labels([keys[0]], "disc")
    assert (
        fit_page.uncertain_view.grid.grid_model.data(
            fit_page.uncertain_view.grid.model().index(0), Qt.ItemDataRole.UserRole + 2
        )[0]
        == "disc"
    )


def test_fit_job_runs_with_the_form_settings_and_reloads(
    fit_page: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    fake_workers.script(
        "train",
        [Progress(stage="embed", step=1, total=2, message="embedding"), Finished(stage="fewshot", status="ok")],
        before_finish=lambda: write_fewshot_run(scanned_project),
    )
    fit_page.form.editor("knn_k").setValue(3)
    _label_enough(controller)
    old = fit_page.analysis.run_dir
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        assert fit_page.fit() is not None
        assert not fit_page.fit_button.isEnabled() and fit_page.cancel_button.isEnabled()
    cmd = fake_workers.jobs[0].command
    assert cmd[:2] == ["train", str(scanned_project.resolve())]
    assert json.loads(Path(cmd[-1]).read_text(encoding="utf-8"))["train"]["knn_k"] == 3
    assert fit_page.analysis.run_dir != old and fit_page.fit_button.isEnabled()


def test_failed_fit_shows_the_error(fit_page: Any, controller: Any, fake_workers: Any, qtbot: Any) -> None:
    fake_workers.script("train", [], status="failed")
    _label_enough(controller)
    errors: list[str] = []
    controller.error_occurred.connect(lambda m, d: errors.append(m))
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        fit_page.fit()
    assert errors == ["Fitting failed: scripted failure"]
    assert fit_page.status_label.text() == "Fit failed: scripted failure"


def test_notes_warn_when_the_classifier_is_near_chance(fit_page: Any) -> None:
    a = fit_page.analysis
    assert "near chance" not in fit_page.values["notes"].text()  # 0.75 over 2 classes
    metrics_path = a.run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics["cv"]["balanced_accuracy"] = 0.55
    metrics["decision"] = "anomaly"
    metrics_path.write_text(json.dumps(metrics), encoding="utf-8")
    fit_page.reload()
    notes = fit_page.values["notes"].text()
    assert "near chance (0.50)" in notes and "anomaly score alone" in notes


def test_notes_speak_of_the_region_typing_when_it_names_the_defects(fit_page: Any) -> None:
    a = fit_page.analysis
    metrics_path = a.run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics["cv"]["balanced_accuracy"] = 0.55  # the whole-image classifier near chance: not what names defects
    typing = {"classes": ["crack", "scratch", "stain", "hole"], "balanced_accuracy": 0.3, "accuracy": 0.3, "folds": 5}
    typing["sure_cut"] = 2.0
    metrics["typing"] = typing
    metrics_path.write_text(json.dumps(metrics), encoding="utf-8")
    fit_page.reload()
    notes = fit_page.values["notes"].text()
    assert "defect types are named near chance (0.25 over 4 types)" in notes
    assert "no defect name is sure yet" in notes and "the classifier is near chance" not in notes
    typing.update(balanced_accuracy=0.8, sure_cut=0.62, sure_coverage=0.4, sure_accuracy=0.85)
    metrics_path.write_text(json.dumps(metrics), encoding="utf-8")
    fit_page.reload()
    notes = fit_page.values["notes"].text()
    assert "near chance" not in notes
    assert "defect names are sure from confidence 0.62 (40% of the labelled defects, 85% of those right" in notes


def test_fit_checks_label_minimums_before_starting(
    fit_page: Any, controller: Any, fake_workers: Any, qtbot: Any
) -> None:
    """Issue 12: a fit with one 'good' label ran 20 s and failed with an internal error; now no worker starts and
    the page says which class needs how many more."""
    assert fit_page.fit() is None
    assert fake_workers.jobs == []
    text = fit_page.status_label.text()
    assert "label 1 more 'good'" in text and "label 1 more 'disc'" in text


def test_the_same_auroc_everywhere(fit_page: Any) -> None:
    """Issue 12: the ROC said AUROC 0.676 while the Result box said 0.668; both now show api.auroc of the same data."""
    from sslinspect import api

    a = fit_page.analysis
    metrics_path = a.run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics["anomaly_auroc_labelled"] = 0.668  # what the fit measured on its own labels
    metrics_path.write_text(json.dumps(metrics), encoding="utf-8")
    fit_page.reload()
    shown = fit_page.values["auroc"].text()
    assert fit_page.threshold_panel.roc.note() == f"AUROC {shown}"
    labels = [fit_page.controller.project.store.labels().get(int(i)) for i in a.ids]
    sel = np.array([x is not None for x in labels])
    truth = np.array([x != "good" for x in labels])[sel]
    assert float(shown) == pytest.approx(api.auroc(a.anomaly[sel], truth), abs=5e-4)


def test_verdict_in_words(fit_page: Any) -> None:
    text = fit_page.verdict.text()
    assert "Finds defects: good" in text and "defect types: not yet — label 8 more 'disc'" in text


def test_labels_changed_after_the_fit_show_out_of_date(fit_page: Any, controller: Any, qtbot: Any) -> None:
    """Issue 12: nothing said that a model was made from older labels; the page now shows 'out of date — retrain'."""
    from sslinspect import api
    from sslinspect.staleness import record_fit

    p = controller.project
    record_fit(p, fit_page.analysis.run_dir, api.label_stamp(p))
    fit_page.reload()
    assert fit_page.stale.isHidden()
    controller.set_labels([5], "disc")
    assert fit_page.stale.isVisible() and fit_page.stale.text().startswith("out of date — retrain")
