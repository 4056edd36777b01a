"""Fit page, "Defect types" tab: the region typing's confusion and per-type table from a real fit's
``metrics["typing"]``, and the example regions (boxes drawn) of a clicked cell."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_defect_types_tab_shows_the_region_typing(window: Any, controller: Any, trained_project: Path) -> None:
    assert controller.open_project(trained_project)  # read-only use
    assert window.go_to(4)
    page = window.pages[4]
    typing = page.analysis.metrics["typing"]
    classes = typing["classes"]
    assert "good" not in classes and len(classes) >= 2
    assert page.tabs.isTabVisible(0) and page.tabs.tabText(0) == "Defect types"
    view = page.typing_view
    table = view.table.confusion
    assert (table.rowCount(), table.columnCount()) == (len(classes), len(classes))
    assert [table.horizontalHeaderItem(j).text() for j in range(len(classes))] == classes
    cells = [[int(table.item(i, j).text()) for j in range(len(classes))] for i in range(len(classes))]
    assert cells == typing["confusion"]
    assert view.table.per_class.rowCount() == len(classes)
    assert view.summary.text().startswith(f"Type accuracy {typing['balanced_accuracy']:.3f}")
    assert "regions" in view.title.text() and view.title.toolTip()
    assert page.values["cv"].text().startswith(f"{typing['balanced_accuracy']:.3f} naming defect types")
    assert page.values["classifier"].text().startswith("ensemble per region cut (3 cuts) on defect regions over")
    assert "regions cut from the anomaly map at 0.5, 1, 2 × its threshold; names averaged" in view.summary.text()
    # the fullest cell: its labelled defects, each a thumbnail with its region box drawn
    row, col = np.unravel_index(int(np.argmax(cells)), (len(classes), len(classes)))
    view.show_cell(int(row), int(col))
    n = cells[row][col]
    assert view.examples.count() == min(n, 24) > 0
    rb = typing["region_boxes"]
    expected = [i for i, lab, p in zip(rb["ids"], rb["labels"], rb["predicted"], strict=True)
                if lab == classes[row] and p == classes[col]]  # fmt: skip
    assert [view.examples.item(k).text() for k in range(view.examples.count())] == [f"#{i}" for i in expected][:24]
    assert all(not view.examples.item(k).icon().isNull() for k in range(view.examples.count()))
    assert str(n) in view.examples_head.text() and classes[row] in view.examples_head.text()


def test_the_cuts_of_the_defect_aware_model_read_as_two_maps() -> None:
    from app.widgets.fit_types import typing_kind
    from sslinspect.review import cuts_text

    assert cuts_text(["1.0", "sharp1"]) == "the anomaly map at 1 × its threshold and the sharp map at 1 × its threshold"
    assert cuts_text(["1", "sharp1", "core1"]) == (
        "the anomaly map at 1 × its threshold, the sharp map at 1 × its threshold and the sharp map's core at 1 × its"
        " threshold"
    )
    assert cuts_text(["0.5", "1", "2"]) == "the anomaly map at 0.5, 1, 2 × its threshold"
    assert (
        typing_kind({"classifier": "levels", "levels": {"1.0": 0.5, "sharp1": 0.6}})
        == "ensemble per region cut (2 cuts)"
    )


def test_without_a_typing_head_the_tab_is_hidden(
    window: Any, controller: Any, trained_project: Path, tmp_path: Path
) -> None:
    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    run = sorted((root / "runs" / "fewshot").iterdir())[-1]
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("typing")
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert controller.open_project(root)
    assert window.go_to(4)
    page = window.pages[4]
    assert not page.tabs.isTabVisible(0) and page.tabs.currentWidget() is not page.typing_view
    assert page.confusion_view.confusion.rowCount() > 0  # the whole-image classifier stays
