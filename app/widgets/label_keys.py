"""Keyboard labelling on an image grid: 1–9 for the defect classes, G for good, 0/Delete to clear."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut

from app.controller import AppController
from app.widgets.image_grid import ImageGrid
from sslinspect.api import GOOD


def shortcut_of(classes: list[str]) -> dict[str, str]:
    """Key of each class: ``G`` for good, ``1``–``9`` for the others in order."""
    keys: dict[str, str] = {}
    n = 0
    for c in classes:
        if c == GOOD:
            keys[c] = "G"
        elif n < 9:
            n += 1
            keys[c] = str(n)
    return keys


def install_label_keys(grid: ImageGrid, controller: AppController, after: Callable[[], None] | None = None) -> None:
    """Make the number keys, G and 0/Delete/Backspace label the grid's selection (only while the grid has focus).

    After labelling a single image the focus moves to the next one, so a user can label with one hand.
    """

    def apply(label: str | None) -> None:
        keys = grid.selected_keys() or ([grid.current_key()] if grid.current_key() is not None else [])
        if not keys:
            return
        controller.set_labels([int(k) for k in keys], label)  # type: ignore[call-overload]
        if len(keys) == 1:
            idx = grid.currentIndex()
            nxt = grid.model().index(idx.row() + 1, 0)
            if nxt.isValid():
                grid.setCurrentIndex(nxt)
        if after is not None:
            after()

    def by_key(key: str) -> None:
        p = controller.project
        if p is None:
            return
        for cls, k in shortcut_of(p.classes).items():
            if k == key:
                apply(cls)
                return

    for key in [*(str(i) for i in range(1, 10)), "G"]:
        sc = QShortcut(QKeySequence(key), grid)
        sc.setContext(Qt.ShortcutContext.WidgetShortcut)
        sc.activated.connect(lambda k=key: by_key(k))
    for key in ("0", "Delete", "Backspace"):
        sc = QShortcut(QKeySequence(key), grid)
        sc.setContext(Qt.ShortcutContext.WidgetShortcut)
        sc.activated.connect(lambda: apply(None))
