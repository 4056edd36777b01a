"""Label page, "Suggested types" tab: per defect type, the unlabelled images a real fit named nearest to it (region
outlined); clicking one selects and focuses that image in the grid, ready for a label key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from sslinspect.review import load_suggestions

pytestmark = pytest.mark.gui


def test_label_page_offers_suggestions_and_focuses_the_chosen_image(
    window: Any, controller: Any, trained_project: Path, qtbot: Any
) -> None:
    assert controller.open_project(trained_project)  # read-only use
    assert window.go_to(3)
    page = window.pages[3]
    assert page.tabs.tabText(2) == "Suggested types"
    labelled = set(page._labels)
    expected = load_suggestions(page.analysis.run_dir, labelled=labelled)
    assert expected, "the fit wrote no suggestions"
    page.tabs.setCurrentWidget(page.suggested)
    view = page.suggested
    types = [view.type_combo.itemData(i) for i in range(view.type_combo.count())]
    assert types == list(expected)
    first_type = next(t for t in types if expected[t])
    view.type_combo.setCurrentIndex(types.index(first_type))
    shown = view.shown_ids()
    assert shown == [s.image_id for s in expected[first_type]][:24]
    assert not set(shown) & labelled
    assert all(not view.items.item(k).icon().isNull() for k in range(view.items.count()))
    # hide the image behind a filter: choosing it still shows it, selected and current
    page.filter.setCurrentIndex(2)  # labelled only
    qtbot.waitUntil(lambda: page.grid.grid_model.row_of(shown[0]) < 0)
    rect = view.items.visualItemRect(view.items.item(0))
    qtbot.mouseClick(view.items.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert page.tabs.currentWidget() is page.grid
    qtbot.waitUntil(lambda: page.grid.current_key() == shown[0])
    assert page.grid.selected_keys() == [shown[0]]
