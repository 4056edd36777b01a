"""The Fit page's "Defect types" view: how a flagged defect is named from its region (``metrics.json["typing"]``).

The type confusion (rows: the type you labelled, columns: the type the region typing gave it out-of-fold) and the
per-type table; clicking a cell shows the labelled images of that cell with their region box drawn. Good is not a
row: whether a part is defective is decided by the anomaly score (the "Anomaly score" tab).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QLabel, QListView, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from app.glossary import tip
from app.widgets.fit_confusion import ConfusionView
from app.widgets.thumbnails import to_qimage
from sslinspect.errors import SSLInspectError
from sslinspect.review import RegionExample, cuts_text, region_examples, region_thumbnail

PathOf = Callable[[int], Path | None]
MAX_EXAMPLES = 24  # a cell's example regions shown at once (each is read from its file)

TITLE = (
    "<b>How flagged defects are named from their regions.</b> Each labelled defect's region (where its anomaly map "
    "is high) was typed by a head fitted without it: rows are the type you labelled, columns the type it was given. "
    "Good parts are not rows here — the anomaly score decides OK / NG."
)


def typing_kind(typing: dict[str, Any]) -> str:
    """The typing classifier as a person reads it: a ``levels`` head is one ensemble per region cut."""
    kind = str(typing.get("classifier", "?"))
    if kind == "levels":
        n = len(typing.get("levels") or {})
        return f"ensemble per region cut ({n} cut{'s' if n != 1 else ''})"
    return kind


class TypingView(QWidget):
    """Defect-type confusion and per-type table from ``metrics["typing"]``, with the example regions of a cell."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.typing: dict[str, Any] = {}
        self.path_of: PathOf = lambda _i: None
        self.input_size = 0
        self.title = QLabel(TITLE)
        self.title.setWordWrap(True)
        tip(self.title, "defect types")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        tip(self.summary, "type accuracy")
        self.table = ConfusionView(
            heads=(
                "Defect types (rows: your label, columns: type named from the region; out-of-fold) — click a cell:",
                "Per defect type (cross-validated):",
            )
        )
        tip(self.table.confusion, "type confusion")
        self.examples_head = QLabel("Click a cell to see its example regions.")
        self.examples_head.setWordWrap(True)
        self.examples = QListWidget()
        self.examples.setViewMode(QListView.ViewMode.IconMode)
        self.examples.setResizeMode(QListView.ResizeMode.Adjust)
        self.examples.setWrapping(True)
        self.examples.setMovement(QListView.Movement.Static)
        side = max(96, 6 * self.fontMetrics().height())
        self.examples.setIconSize(QSize(side, side))
        self.examples.setMinimumHeight(side + 4 * self.fontMetrics().height())  # a row of thumbnails, captions
        tip(self.examples, "example regions")
        lay = QVBoxLayout(self)
        for w in (self.title, self.summary, self.table, self.examples_head, self.examples):
            lay.addWidget(w)
        lay.setStretch(4, 1)  # the tables take their size, the examples the rest
        self.table.confusion.cellClicked.connect(self.show_cell)

    def clear(self) -> None:
        """No typing head."""
        self.typing = {}
        self.summary.setText("")
        self.table.clear()
        self.examples.clear()
        self.examples_head.setText("Click a cell to see its example regions.")

    def show_typing(self, typing: dict[str, Any], input_size: int, path_of: PathOf) -> None:
        """Fill the view from ``metrics["typing"]``; ``path_of`` finds an image file by id (for the examples)."""
        self.clear()
        self.typing, self.input_size, self.path_of = typing, int(input_size), path_of
        classes = [str(c) for c in typing.get("classes") or []]
        self.table.show_cv(typing, classes)
        bal = typing.get("balanced_accuracy")
        parts = [
            f"Type accuracy {bal:.3f} (balanced; accuracy {typing.get('accuracy', 0):.3f}, {typing.get('folds')} folds)"
            if bal is not None
            else "Type accuracy n/a: label at least 2 defects of 2 types"
        ]
        parts.append(f"{typing_kind(typing)} over {', '.join(classes)}")
        levels = typing.get("levels")
        if typing.get("classifier") == "levels" and isinstance(levels, dict) and levels:
            parts.append(f"regions cut from {cuts_text([str(k) for k in levels])}; names averaged over the cuts")
        elif typing.get("level") is not None:
            parts.append(f"regions where the map exceeds {float(typing['level']):g} × the threshold")
        located = typing.get("located_share")
        if located is not None:
            parts.append(f"{located:.0%} of labelled defects located")
        self.summary.setText("; ".join(parts))

    def cell_examples(self, row: int, col: int) -> list[RegionExample]:
        """The labelled defects of confusion cell (``row``, ``col``)."""
        classes = [str(c) for c in self.typing.get("classes") or []]
        if not (0 <= row < len(classes) and 0 <= col < len(classes)):
            return []
        return region_examples(self.typing, classes[row], classes[col])

    def show_cell(self, row: int, col: int) -> None:
        """Show the example regions of confusion cell (``row``, ``col``) as thumbnails with the box drawn."""
        self.examples.clear()
        found = self.cell_examples(row, col)
        classes = [str(c) for c in self.typing.get("classes") or []]
        if not found:
            self.examples_head.setText("No labelled defect in this cell." if classes else "")
            return
        label, pred = classes[row], classes[col]
        verb = "named correctly" if row == col else f"taken for {pred!r}"
        more = f" (first {MAX_EXAMPLES})" if len(found) > MAX_EXAMPLES else ""
        self.examples_head.setText(f"{len(found)} labelled {label!r} defect(s) {verb}{more}; white box: the region.")
        side = self.examples.iconSize().width()
        for ex in found[:MAX_EXAMPLES]:
            item = QListWidgetItem(f"#{ex.image_id}")
            path = self.path_of(ex.image_id)
            item.setToolTip(f"{path or ex.image_id}\nlabel {label}, named {pred}")
            if path is not None:
                try:
                    rgb = region_thumbnail(path, ex.box, self.input_size, side)
                    item.setIcon(QPixmap.fromImage(to_qimage(rgb, side)))
                except SSLInspectError as exc:
                    item.setToolTip(str(exc))
            self.examples.addItem(item)
