"""Label step: sorting by anomaly score, uncertainty, cluster and similarity; keyboard labelling saved at once;
filters; the class manager; labelling from the embedding map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.app.conftest import write_fewshot_run, write_pretrain_run

pytestmark = pytest.mark.gui


@pytest.fixture
def label_page(window: Any, controller: Any, scanned_project: Path, qtbot: Any) -> Any:
    write_pretrain_run(scanned_project)
    write_fewshot_run(scanned_project)
    assert controller.open_project(scanned_project)
    assert window.go_to(3)
    page = window.pages[3]
    qtbot.waitUntil(lambda: page.grid.model().rowCount() == 36, timeout=10_000)
    window.activateWindow()  # shortcuts need an active window with the grid focused
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    return page


def _wait_sorted(page: Any, qtbot: Any, text: str) -> list[int]:
    page.sort.setCurrentText(text)
    qtbot.waitUntil(lambda: "shown" in page.count_label.text(), timeout=10_000)
    return page.grid.keys()


def test_most_unusual_first_and_most_uncertain_first(label_page: Any, qtbot: Any) -> None:
    a = label_page.analysis
    assert a is not None and label_page.sort.currentText() == "Most unusual first"
    keys = label_page.grid.keys()
    scores = [float(a.anomaly[a.rows_of(np.array([k]))[0]]) for k in keys]
    assert scores == sorted(scores, reverse=True)
    assert label_page.grid.grid_model.data(label_page.grid.model().index(0)) == f"{scores[0]:.3f}"
    keys = _wait_sorted(label_page, qtbot, "Most uncertain first")
    conf = [float(a.confidence[a.rows_of(np.array([k]))[0]]) for k in keys]
    assert conf == sorted(conf)
    keys = _wait_sorted(label_page, qtbot, "By cluster")
    assert sorted(keys) == sorted(a.ids.tolist())


def test_keys_label_the_selection_and_save_at_once(label_page: Any, controller: Any, qtbot: Any) -> None:
    grid = label_page.grid
    store = controller.project.store
    assert store.labels() == {1: "disc", 21: "good"}
    first, second = grid.keys()[1:3]
    grid.setFocus()
    grid.select_keys([first])
    qtbot.keyClick(grid, Qt.Key.Key_1)  # 1 = the first defect class ("disc")
    assert store.labels()[first] == "disc"
    assert grid.current_key() == second  # focus moved on, for one-hand labelling
    grid.select_keys([second])
    qtbot.keyClick(grid, Qt.Key.Key_G)
    assert store.labels()[second] == "good"
    assert grid.grid_model.data(grid.model().index(2), Qt.ItemDataRole.UserRole + 2) == ("good", "#3fa34d")
    grid.select_keys([first, second])
    qtbot.keyClick(grid, Qt.Key.Key_0)
    assert first not in store.labels() and second not in store.labels()
    assert "label: none" in label_page.details.text()


def test_filters_and_find_similar(label_page: Any, controller: Any, qtbot: Any) -> None:
    labelled = set(controller.project.store.labels())
    label_page.filter.setCurrentText("Unlabelled")
    qtbot.waitUntil(lambda: len(label_page.grid.keys()) == 34, timeout=10_000)
    assert not set(label_page.grid.keys()) & labelled
    label_page.filter.setCurrentText("disc")
    qtbot.waitUntil(lambda: len(label_page.grid.keys()) == 1, timeout=10_000)
    label_page.filter.setCurrentText("All images")
    qtbot.waitUntil(lambda: len(label_page.grid.keys()) == 36, timeout=10_000)
    ref = label_page.grid.keys()[5]
    label_page.grid.select_keys([ref])
    label_page.similar_button.click()
    qtbot.waitUntil(lambda: label_page.grid.keys()[0] == ref, timeout=10_000)
    assert label_page.sort.currentText() == "Similar to the selected image"
    a = label_page.analysis
    emb = np.asarray(a.embeddings())
    sims = emb @ emb[a.rows_of(np.array([ref]))[0]]
    order = [int(a.ids[i]) for i in np.argsort(-sims, kind="stable")]
    assert label_page.grid.keys()[:5] == order[:5]


def test_class_manager_adds_renames_merges_and_recolours(label_page: Any, controller: Any, monkeypatch: Any) -> None:
    cm = label_page.classes
    assert [cm.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(cm.list.count())] == ["good", "disc"]
    monkeypatch.setattr("app.widgets.class_manager.QInputDialog.getText", lambda *a, **k: ("scratch", True))
    cm.add_button.click()
    assert controller.project.classes == ["good", "disc", "scratch"]
    assert cm.list.item(2).text().startswith("scratch   [2]")
    assert label_page.filter.findText("scratch") >= 0
    cm.list.setCurrentRow(1)
    monkeypatch.setattr("app.widgets.class_manager.QInputDialog.getText", lambda *a, **k: ("scratch", True))
    cm.rename_button.click()  # disc -> scratch: a merge
    assert controller.project.classes == ["good", "scratch"]
    assert "disc" not in controller.project.store.labels().values()
    assert controller.set_class_color("scratch", "#123456")
    assert controller.project.class_colors()["scratch"] == "#123456"
    cm.list.setCurrentRow(0)
    assert not cm.rename_button.isEnabled()  # good cannot be renamed


def test_map_tab_projects_all_embeddings_and_labels_a_lasso(label_page: Any, controller: Any, qtbot: Any) -> None:
    label_page.tabs.setCurrentWidget(label_page.map)
    qtbot.waitUntil(lambda: label_page.map.view.count == 36, timeout=10_000)
    label_page.map.color_by.setCurrentText("Anomaly score")
    assert "anomaly score" in label_page.map.legend.text()
    xy = label_page.map.view._xy
    right = np.array([[0, -99], [99, -99], [99, 99], [0, 99]], float)
    label_page.map.view.select_polygon(right)
    chosen = label_page.map.selected_ids()
    assert chosen and all(xy[np.flatnonzero(label_page.map.ids == i)[0], 0] > 0 for i in chosen)
    label_page.map.class_box.setCurrentText("good")
    label_page.map.apply_button.click()
    assert all(controller.project.store.labels()[i] == "good" for i in chosen)


def test_without_a_trained_model_only_file_order_is_offered(
    window: Any, controller: Any, fake_workers: Any, scanned_project: Path, qtbot: Any
) -> None:
    write_pretrain_run(scanned_project)
    assert controller.open_project(scanned_project)
    assert window.go_to(3)
    page = window.pages[3]
    assert page.analysis is None and page.sort.currentText() == "File order"
    assert not page.sort.model().item(0).isEnabled()
    qtbot.waitUntil(lambda: len(page.grid.keys()) == 36, timeout=10_000)
    # issue 12: "Update suggestions" ran a full fit (and unlocked Export) on too few labels; now it says why not
    assert page.compute_suggestions() is None and fake_workers.jobs == []
    assert "label 1 more 'good'" in page.count_label.text()
    controller.set_labels([30], "good")
    controller.set_labels([31], "disc")
    write_fewshot_run_later = []
    fake_workers.script(
        "train", [], before_finish=lambda: write_fewshot_run_later.append(write_fewshot_run(scanned_project))
    )
    with qtbot.waitSignal(controller.job_finished, timeout=5000):
        page.suggest_button.click()
    assert fake_workers.jobs[0].command == ["train", str(scanned_project.resolve())]
    assert page.analysis is not None and page.sort.model().item(0).isEnabled()


def test_the_labelled_counter_follows_every_label(label_page: Any, controller: Any, qtbot: Any) -> None:
    """Issue 12: the Label page's "N labelled" counter never updated."""
    qtbot.waitUntil(lambda: "labelled" in label_page.count_label.text(), timeout=10_000)
    assert label_page.count_label.text().endswith(" 2 labelled")
    controller.set_labels([5, 6], "disc")
    assert label_page.count_label.text().endswith(" 4 labelled")
    controller.set_labels([5], None)
    assert label_page.count_label.text().endswith(" 3 labelled")


def test_suggestions_say_when_labels_changed_after_them(label_page: Any, controller: Any) -> None:
    """Issue 12: suggestions did not know which labels they came from; now the page says they are out of date."""
    assert label_page.stale.isHidden()
    controller.set_labels([9], "disc")
    assert label_page.stale.isVisible() and label_page.stale.text().startswith("Suggestions are out of date")
