"""The class manager: the project's classes with colour, shortcut key and label count; add, rename/merge, colour."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QColorDialog,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.widgets.label_keys import shortcut_of
from sslinspect.api import GOOD


def swatch(color: str, size: int = 14) -> QIcon:
    """A square colour icon."""
    pm = QPixmap(size, size)
    pm.fill(QColor(color))
    return QIcon(pm)


class ClassManager(QGroupBox):
    """Lists classes; merging is renaming onto an existing class (its labels move over)."""

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__("Classes", parent)
        self.controller = controller
        self.list = QListWidget()
        self.list.setAccessibleName("Classes")
        self.add_button = QPushButton("Add…")
        self.rename_button = QPushButton("Rename / merge…")
        self.color_button = QPushButton("Colour…")
        self.add_button.clicked.connect(self._on_add_clicked)
        self.rename_button.clicked.connect(self._on_rename_clicked)
        self.color_button.clicked.connect(self._on_color_clicked)
        self.list.currentRowChanged.connect(lambda _r: self._update_buttons())
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.rename_button)
        row.addWidget(self.color_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.list, 1)
        lay.addLayout(row)
        controller.classes_changed.connect(self.refresh)
        controller.status_changed.connect(lambda _s: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        """Re-read classes, colours and counts."""
        current = self.current_class()
        self.list.clear()
        p = self.controller.project
        st = self.controller.status
        if p is None:
            self._update_buttons()
            return
        counts = st.labels if st is not None else {}
        keys = shortcut_of(p.classes)
        for name, color in p.class_colors().items():
            key = keys.get(name, "")
            item = QListWidgetItem(swatch(color), f"{name}   [{key}]   {counts.get(name, 0)}" if key else name)
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setToolTip(f"{counts.get(name, 0)} labelled; press {key} in the grid to label" if key else "")
            self.list.addItem(item)
            if name == current:
                self.list.setCurrentItem(item)
        self._update_buttons()

    def current_class(self) -> str | None:
        """The selected class name."""
        item = self.list.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item else None

    def _update_buttons(self) -> None:
        has_project = self.controller.project is not None
        cur = self.current_class()
        self.add_button.setEnabled(has_project)
        self.rename_button.setEnabled(cur is not None and cur != GOOD)
        self.color_button.setEnabled(cur is not None)

    def _on_add_clicked(self) -> None:
        name, ok = QInputDialog.getText(self, "Add class", "Name of the defect class (e.g. scratch):")
        if ok and name.strip():
            self.controller.add_class(name.strip())

    def _on_rename_clicked(self) -> None:
        cur = self.current_class()
        if cur is None:
            return
        new, ok = QInputDialog.getText(
            self, "Rename or merge", f"New name for {cur!r} (an existing class name merges the two):", text=cur
        )
        if ok and new.strip() and new.strip() != cur:
            self.controller.rename_class(cur, new.strip())

    def _on_color_clicked(self) -> None:
        cur = self.current_class()
        if cur is None or self.controller.project is None:
            return
        color = QColorDialog.getColor(QColor(self.controller.project.class_colors()[cur]), self, f"Colour of {cur}")
        if color.isValid():
            self.controller.set_class_color(cur, color.name())
