"""A virtualised thumbnail grid: a QListView in icon mode over a model that holds only keys (100,000 stay smooth).

Thumbnails come lazily from a :class:`~app.widgets.thumbnails.ThumbnailProvider`; captions and a coloured label badge
come from callbacks, so the same grid shows project images (keys are image ids) and files under test (paths).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QPainter, QPalette, QPen
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from app.widgets.thumbnails import ThumbnailProvider

Badge = tuple[str, str]  # (text, "#rrggbb")
KeyRole = Qt.ItemDataRole.UserRole + 1
BadgeRole = Qt.ItemDataRole.UserRole + 2
_Index = QModelIndex | QPersistentModelIndex


class ImageGridModel(QAbstractListModel):
    """Rows are keys; everything else is computed on demand for the visible rows only."""

    def __init__(self, provider: ThumbnailProvider, parent: Any = None) -> None:
        super().__init__(parent)
        self.provider = provider
        self._keys: list[Hashable] = []
        self._row_of: dict[Hashable, int] | None = None
        self.caption: Callable[[Hashable], str] = lambda key: ""
        self.badge: Callable[[Hashable], Badge | None] = lambda key: None
        self.tooltip: Callable[[Hashable], str] = lambda key: str(key)
        provider.thumbnail_ready.connect(self._on_provider_thumbnail_ready)

    def set_keys(self, keys: Sequence[Hashable]) -> None:
        """Replace the rows."""
        self.beginResetModel()
        self._keys = list(keys)
        self._row_of = None
        self.endResetModel()

    def keys(self) -> list[Hashable]:
        """The keys in row order."""
        return list(self._keys)

    def key(self, row: int) -> Hashable:
        """Key of ``row``."""
        return self._keys[row]

    def row_of(self, key: Hashable) -> int:
        """Row of ``key`` or -1."""
        if self._row_of is None:
            self._row_of = {k: i for i, k in enumerate(self._keys)}
        return self._row_of.get(key, -1)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        """Number of keys."""
        return 0 if parent.isValid() else len(self._keys)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Caption, thumbnail, tooltip, key and badge of one row."""
        if not index.isValid():
            return None
        key = self._keys[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self.caption(key)
        if role == Qt.ItemDataRole.DecorationRole:
            return self.provider.get(key)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltip(key)
        if role == KeyRole:
            return key
        if role == BadgeRole:
            return self.badge(key)
        return None

    def refresh(self, keys: Sequence[Hashable] | None = None) -> None:
        """Repaint captions and badges (after labels changed)."""
        if not self._keys:
            return
        if keys is None:
            self.dataChanged.emit(self.index(0), self.index(len(self._keys) - 1))
            return
        for k in keys:
            row = self.row_of(k)
            if row >= 0:
                self.dataChanged.emit(self.index(row), self.index(row))

    def _on_provider_thumbnail_ready(self, key: Hashable) -> None:
        row = self.row_of(key)
        if row >= 0:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


class ThumbDelegate(QStyledItemDelegate):
    """Thumbnail, one caption line and a coloured label badge; sizes follow the font (100–200 % scaling)."""

    def __init__(self, thumb_px: int, parent: Any = None) -> None:
        super().__init__(parent)
        self.thumb_px = thumb_px

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        """Uniform cell size."""
        line = option.fontMetrics.height()
        return QSize(self.thumb_px + 12, self.thumb_px + line + 14)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        """Draw one cell."""
        pal = option.palette
        rect: QRect = option.rect.adjusted(2, 2, -2, -2)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        if selected:
            painter.fillRect(rect, pal.color(QPalette.ColorRole.Highlight))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.fillRect(rect, pal.color(QPalette.ColorRole.AlternateBase))
        thumb = QRect(rect.x() + (rect.width() - self.thumb_px) // 2, rect.y() + 4, self.thumb_px, self.thumb_px)
        pm = index.data(Qt.ItemDataRole.DecorationRole)
        if pm is not None and not pm.isNull():
            size = pm.size().scaled(thumb.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(thumb.center())
            painter.drawPixmap(target, pm)
        else:
            painter.fillRect(thumb, pal.color(QPalette.ColorRole.Mid))
        badge = index.data(BadgeRole)
        if badge:
            text, color = badge
            pen = QPen(QColor(color))
            pen.setWidth(4)
            painter.setPen(pen)
            painter.drawRect(thumb.adjusted(1, 1, -2, -2))
            fm = option.fontMetrics
            tag = QRect(
                thumb.x() + 3, thumb.y() + 3, min(fm.horizontalAdvance(text) + 8, thumb.width() - 6), fm.height()
            )
            painter.fillRect(tag, QColor(color))
            painter.setPen(QColor("#ffffff") if QColor(color).lightness() < 170 else QColor("#000000"))
            painter.drawText(
                tag, Qt.AlignmentFlag.AlignCenter, fm.elidedText(text, Qt.TextElideMode.ElideRight, tag.width() - 4)
            )
        caption = index.data(Qt.ItemDataRole.DisplayRole) or ""
        text_rect = QRect(rect.x() + 2, thumb.bottom() + 4, rect.width() - 4, option.fontMetrics.height())
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        painter.setPen(pal.color(role))
        painter.drawText(
            text_rect,
            Qt.AlignmentFlag.AlignCenter,
            option.fontMetrics.elidedText(str(caption), Qt.TextElideMode.ElideMiddle, text_rect.width()),
        )
        if option.state & QStyle.StateFlag.State_HasFocus:
            painter.setPen(QPen(pal.color(QPalette.ColorRole.Highlight), 2, Qt.PenStyle.DotLine))
            painter.drawRect(rect.adjusted(0, 0, -1, -1))
        painter.restore()


class ImageGrid(QListView):
    """The thumbnail grid (keyboard: arrows, Shift/Ctrl selection, Home/End, PgUp/PgDn).

    Signals:
        current_key_changed(object): the focused item changed (its key, or None).
        selection_keys_changed(object): the list of selected keys.
        key_activated(object): an item was double-clicked or Enter was pressed on it.
    """

    current_key_changed = Signal(object)
    selection_keys_changed = Signal(object)
    key_activated = Signal(object)

    def __init__(self, provider: ThumbnailProvider, parent: QWidget | None = None, *, thumb_px: int | None = None):
        super().__init__(parent)
        px = thumb_px or max(96, 6 * self.fontMetrics().height())
        self.grid_model = ImageGridModel(provider, self)
        self.setModel(self.grid_model)
        self.setItemDelegate(ThumbDelegate(px, self))
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(2000)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setMouseTracking(True)
        self.setSpacing(2)
        self.setWordWrap(False)
        self.selectionModel().currentChanged.connect(self._on_selection_current_changed)
        self.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.activated.connect(lambda idx: self.key_activated.emit(self.grid_model.key(idx.row())))

    def set_keys(self, keys: Sequence[Hashable]) -> None:
        """Show ``keys`` (selection is cleared)."""
        self.grid_model.set_keys(keys)
        self.selection_keys_changed.emit([])
        self.current_key_changed.emit(None)

    def keys(self) -> list[Hashable]:
        """All keys in display order."""
        return self.grid_model.keys()

    def current_key(self) -> Hashable | None:
        """Key of the focused item."""
        idx = self.currentIndex()
        return self.grid_model.key(idx.row()) if idx.isValid() else None

    def selected_keys(self) -> list[Hashable]:
        """Keys of the selected items, in display order."""
        rows = sorted(i.row() for i in self.selectionModel().selectedIndexes())
        return [self.grid_model.key(r) for r in rows]

    def select_keys(self, keys: Sequence[Hashable], *, current: Hashable | None = None) -> None:
        """Select exactly ``keys`` and scroll to the first (or ``current``)."""
        sel = QItemSelection()
        rows = [r for r in (self.grid_model.row_of(k) for k in keys) if r >= 0]
        for r in rows:
            idx = self.grid_model.index(r)
            sel.select(idx, idx)
        sm = self.selectionModel()
        sm.select(sel, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        focus = self.grid_model.row_of(current) if current is not None else (rows[0] if rows else -1)
        if focus >= 0:
            sm.setCurrentIndex(self.grid_model.index(focus), QItemSelectionModel.SelectionFlag.NoUpdate)
            self.scrollTo(self.grid_model.index(focus))

    def refresh(self, keys: Sequence[Hashable] | None = None) -> None:
        """Repaint captions and badges."""
        self.grid_model.refresh(keys)

    def _on_selection_current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        self.current_key_changed.emit(self.grid_model.key(current.row()) if current.isValid() else None)

    def _on_selection_changed(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        self.selection_keys_changed.emit(self.selected_keys())
