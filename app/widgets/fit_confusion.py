"""The Fit page's classifier view: the out-of-fold confusion matrix and per-class precision / recall."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from app.glossary import tip


def _item(text: str, color: QColor | None = None) -> QTableWidgetItem:
    it = QTableWidgetItem(text)
    it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
    if color is not None:
        it.setBackground(color)
        it.setForeground(QColor("#000000") if color.lightness() > 140 else QColor("#ffffff"))
    return it


class ConfusionView(QWidget):
    """Confusion matrix (rows: your label, columns: predicted) and a per-class table, both cross-validated."""

    def __init__(
        self,
        parent: QWidget | None = None,
        heads: tuple[str, str] = (
            "Confusion matrix (rows: your label, columns: predicted; out-of-fold):",
            "Per class (cross-validated):",
        ),
    ) -> None:
        super().__init__(parent)
        self.confusion = QTableWidget()
        self.confusion.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.per_class = QTableWidget(0, 4)
        self.per_class.setHorizontalHeaderLabels(["Precision", "Recall", "F1", "Labels"])
        self.per_class.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.per_class.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        for col, term in enumerate(("precision", "recall", "F1", "labels")):
            header = self.per_class.horizontalHeaderItem(col)
            if header is not None:
                header.setToolTip(tip(None, term))
        tip(self.confusion, "confusion matrix")
        tip(self.per_class, "per-class table")
        for table in (self.confusion, self.per_class):
            table.setSizeAdjustPolicy(QAbstractItemView.SizeAdjustPolicy.AdjustToContents)
        lay = QGridLayout(self)
        self.heads = [QLabel(text) for text in heads]
        for head in self.heads:
            head.setWordWrap(True)
        lay.addWidget(self.heads[0], 0, 0)  # stacked: both tables get the tab's full width (no sideways scrolling)
        lay.addWidget(self.confusion, 1, 0)
        lay.addWidget(self.heads[1], 2, 0)
        lay.addWidget(self.per_class, 3, 0)
        lay.setRowStretch(4, 1)

    def clear(self) -> None:
        """Nothing fitted."""
        self.confusion.clear()
        self.confusion.setRowCount(0)
        self.confusion.setColumnCount(0)
        self.per_class.setRowCount(0)

    def show_cv(self, cv: dict[str, Any], classes: list[str]) -> None:
        """Fill both tables from a run's cross-validation report (``metrics.json["cv"]``)."""
        conf = np.array(cv.get("confusion") or np.zeros((0, 0)), dtype=float)
        self.confusion.clear()
        self.confusion.setRowCount(len(conf))
        self.confusion.setColumnCount(len(conf))
        self.confusion.setHorizontalHeaderLabels(classes[: len(conf)])
        self.confusion.setVerticalHeaderLabels(classes[: len(conf)])
        for i, row in enumerate(conf):
            total = max(row.sum(), 1)
            for j, n in enumerate(row):
                share = n / total
                color = QColor.fromHsvF(0.33 if i == j else 0.0, min(1.0, share) * 0.8, 0.95)
                self.confusion.setItem(i, j, _item(f"{int(n)}", color if n else None))
        self.confusion.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        per = cv.get("per_class") or {}
        self.per_class.setRowCount(len(per))
        self.per_class.setVerticalHeaderLabels(list(per))
        for i, stats in enumerate(per.values()):
            for j, key in enumerate(("precision", "recall", "f1")):
                self.per_class.setItem(i, j, _item(f"{stats[key]:.2f}"))
            self.per_class.setItem(i, 3, _item(str(stats.get("support", ""))))
