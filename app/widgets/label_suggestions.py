"""The Label page's "Suggested types" tab: per defect type, the unlabelled images whose main region the typing head
names nearest to it (``typing_suggestions.csv`` of the latest fit, via :mod:`sslinspect.review.suggestions`), as
thumbnails with the region outlined. Clicking one selects that image in the grid, ready for a label key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.widgets.thumbnails import to_qimage
from sslinspect.errors import SSLInspectError
from sslinspect.review import Suggestion, region_thumbnail

PathOf = Callable[[int], Path | None]
MAX_SHOWN = 24  # suggestions shown per type (each thumbnail is read from its file)
EMPTY = "No suggestions: fit with at least two defect types labelled (Fit step or Update suggestions)."


class SuggestionsView(QWidget):
    """A type chooser and the top suggestions of that type; ``image_chosen`` on a click."""

    image_chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.suggestions: dict[str, list[Suggestion]] = {}
        self.path_of: PathOf = lambda _i: None
        self.input_size = 0
        self.type_combo = QComboBox()
        self.type_combo.setAccessibleName("Suggested type")
        self.type_combo.setToolTip("Unlabelled images whose main region is named nearest to this type come first")
        self.type_combo.currentIndexChanged.connect(lambda _i: self._fill())
        self.head = QLabel(EMPTY)
        self.head.setWordWrap(True)
        self.items = QListWidget()
        self.items.setAccessibleName("Suggested images")
        self.items.setViewMode(QListView.ViewMode.IconMode)
        self.items.setResizeMode(QListView.ResizeMode.Adjust)
        self.items.setWrapping(True)
        self.items.setMovement(QListView.Movement.Static)
        side = max(96, 6 * self.fontMetrics().height())
        self.items.setIconSize(QSize(side, side))
        self.items.itemClicked.connect(self._on_item_clicked)
        self.items.itemActivated.connect(self._on_item_clicked)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Suggested:"))
        bar.addWidget(self.type_combo)
        bar.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.head)
        lay.addWidget(self.items, 1)

    def set_suggestions(self, suggestions: dict[str, list[Suggestion]], input_size: int, path_of: PathOf) -> None:
        """Show ``suggestions`` (per type, nearest first); keeps the chosen type when it is still there."""
        current = self.type_combo.currentData()
        self.suggestions, self.input_size, self.path_of = suggestions, int(input_size), path_of
        self.type_combo.blockSignals(True)
        self.type_combo.clear()
        for t, items in suggestions.items():
            self.type_combo.addItem(f"{t} ({len(items)})" if t != "unknown" else f"no known type ({len(items)})", t)
        idx = self.type_combo.findData(current)
        self.type_combo.setCurrentIndex(max(idx, 0))
        self.type_combo.blockSignals(False)
        self._fill()

    def shown_ids(self) -> list[int]:
        """The image ids listed now, in order."""
        return [int(self.items.item(r).data(Qt.ItemDataRole.UserRole)) for r in range(self.items.count())]

    def _fill(self) -> None:
        self.items.clear()
        t = self.type_combo.currentData()
        found = self.suggestions.get(t, []) if t is not None else []
        if not self.suggestions:
            self.head.setText(EMPTY)
            return
        if t == "unknown":
            text = f"{len(found)} flagged image(s) far from every type (a new type?)"
        else:
            text = f"{len(found)} unlabelled image(s) named {t!r}, most likely first"
        more = f"; first {MAX_SHOWN} shown" if len(found) > MAX_SHOWN else ""
        self.head.setText(f"{text}{more}. White box: the region. Click one, then press its label key.")
        side = self.items.iconSize().width()
        for s in found[:MAX_SHOWN]:
            item = QListWidgetItem(f"#{s.image_id} {s.probability:.0%}")
            item.setData(Qt.ItemDataRole.UserRole, s.image_id)
            path = self.path_of(s.image_id)
            item.setToolTip(f"{path or s.image_id}\n{s.type}: p {s.probability:.2f}, novelty {s.novelty:.2f}")
            if path is not None:
                try:
                    item.setIcon(
                        QPixmap.fromImage(to_qimage(region_thumbnail(path, s.box, self.input_size, side), side))
                    )
                except SSLInspectError as exc:
                    item.setToolTip(str(exc))
            self.items.addItem(item)

    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        self.image_chosen.emit(int(item.data(Qt.ItemDataRole.UserRole)))
