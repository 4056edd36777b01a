"""Images step: add a folder, scan it off the GUI thread, statistics, lazy thumbnails, unreadable files listed."""

from __future__ import annotations

import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app.widgets.image_grid import ImageGrid
from app.widgets.thumbnails import ThumbnailProvider

pytestmark = pytest.mark.gui


def test_scan_lists_thumbnails_statistics_and_unreadable_files(
    window: Any, controller: Any, tiny_image_folder: Path, tmp_path: Path, qtbot: Any
) -> None:
    (tiny_image_folder / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tiny_image_folder / "notes.txt").write_text("not an image")  # not an image extension: ignored, not an error
    first_png = sorted(p for p in tiny_image_folder.rglob("*.png") if p.name != "truncated.png")[0]
    (tiny_image_folder / "zz-copy.png").write_bytes(first_png.read_bytes())  # a content duplicate
    assert window.pages[0].create_project_at(tmp_path / "p.sslproj")
    assert window.go_next()
    page = window.pages[1]
    with qtbot.waitSignal(controller.job_finished, timeout=30_000) as done:
        assert page.add_folder(tiny_image_folder)
        assert not page.scan_button.isEnabled()
    assert done.args[1] == "ok"
    # issue 12: the scan line said "61 readable … 1 duplicates" while Statistics said 60: both say the same now
    assert page.scan_button.isEnabled() and page.progress_label.text().startswith("Scan done: 36 readable images")
    assert "1 duplicate(s) skipped" in page.progress_label.text()
    assert page.stat_labels["readable"].text() == "36" and page.stat_labels["unreadable"].text() == "1"
    assert page.stat_labels["sizes"].text() == "32×32" and page.stat_labels["formats"].text() == "png 36"
    assert page.errors.rowCount() == 1 and page.tabs.tabText(1) == "Unreadable files (1)"
    assert page.errors.item(0, 0).text().endswith("truncated.png")
    assert page.errors.item(0, 1).text()  # the reason, e.g. "truncated"
    assert page.grid.model().rowCount() == 36
    assert window.next_button.isEnabled()
    first = page.grid.keys()[0]
    page.grid.grid_model.data(page.grid.model().index(0), Qt.ItemDataRole.DecorationRole)  # requests it
    qtbot.waitUntil(lambda: page.provider.get(first) is not None, timeout=10_000)
    pm = page.provider.get(first)
    assert pm.width() == 32 and pm.height() == 32  # never upscaled


def test_grid_with_100k_items_only_loads_what_is_visible(qtbot: Any, tmp_path: Path) -> None:
    provider = ThumbnailProvider(size=64)
    requested: list[object] = []

    def path_of(key: Hashable) -> None:  # every load "fails": no file needed
        requested.append(key)

    provider.set_source(path_of)
    grid = ImageGrid(provider)
    qtbot.addWidget(grid)
    grid.resize(600, 400)
    grid.show()
    grid.set_keys(list(range(100_000)))
    qtbot.waitUntil(lambda: len(requested) > 0, timeout=5000)
    qtbot.wait(200)
    assert grid.model().rowCount() == 100_000
    assert 0 < len(requested) < 500  # virtualised: only the cells on screen asked for a thumbnail
    last = grid.model().index(99_999, 0)
    qtbot.waitUntil(lambda: grid.visualRect(last).isValid(), timeout=10_000)  # the batched layout reached the end
    grid.scrollTo(last)
    qtbot.waitUntil(lambda: 99_999 in requested, timeout=5000)
    grid.select_keys([5, 7, 99_998])
    assert grid.selected_keys() == [5, 7, 99_998] and grid.current_key() == 5
    provider.shutdown()


def test_thumbnails_come_from_the_decoded_cache_when_it_is_large_enough(qtbot: Any) -> None:
    cache = np.zeros((3, 64, 64, 3), np.uint8)
    cache[1, :, :, 0] = 255
    provider = ThumbnailProvider(size=48)

    def array_of(key: Hashable) -> np.ndarray | None:
        i = cast(int, key)  # the keys here are ints
        return cache[i] if i < 3 else None

    provider.set_source(lambda key: None, array_of)
    assert provider.get(1) is None  # queued
    qtbot.waitUntil(lambda: provider.get(1) is not None, timeout=5000)
    pm = provider.get(1)
    assert pm is not None
    img = pm.toImage()
    assert (img.width(), img.height()) == (48, 48) and img.pixelColor(10, 10).red() == 255
    assert provider.get(5) is None
    qtbot.waitUntil(lambda: provider.failed(5), timeout=5000)
    provider.shutdown()


def test_scan_keeps_the_original_and_the_scan_line_agrees_with_statistics(
    window: Any, controller: Any, tiny_image_folder: Path, tmp_path: Path, qtbot: Any
) -> None:
    # issue 12: "61 readable … 1 duplicates" while Statistics said 60, and the copy was kept, the original dropped
    original = tiny_image_folder / "disc" / "disc_00.png"
    copy = tiny_image_folder / "disc" / "disc_00 - Copy.png"  # sorts, and is scanned, before disc_00.png
    copy.write_bytes(original.read_bytes())
    os.utime(copy, ns=(original.stat().st_mtime_ns + 60 * 10**9,) * 2)  # copied a minute later
    assert window.pages[0].create_project_at(tmp_path / "p.sslproj")
    assert window.go_next()
    page = window.pages[1]
    with qtbot.waitSignal(controller.job_finished, timeout=30_000):
        assert page.add_folder(tiny_image_folder)
    keys = page.grid.keys()  # the grid's image ids (a method, not a dict)
    shown = [page.grid.grid_model.caption(k) for k in keys]
    assert "disc_00.png" in shown and "disc_00 - Copy.png" not in shown
    line = page.progress_label.text()
    assert line.startswith(f"Scan done: {page.stat_labels['readable'].text()} readable images"), line
    assert page.stat_labels["readable"].text() == "36" and page.stat_labels["duplicates"].text() == "1"
