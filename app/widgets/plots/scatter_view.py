"""A large-scatter view on pyqtgraph: up to ~100,000 points (one item per colour group), hover and click picks, and
a Shift+drag lasso."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt, QTimer, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from app.widgets.arrays import points_in_polygon
from app.widgets.plots._style import style_plot


class _LassoViewBox(pg.ViewBox):
    """A ViewBox where Shift+drag draws a lasso and a click picks a point; plain drag still pans."""

    def __init__(self, view: ScatterView) -> None:
        super().__init__()
        self._view = view
        self._path: list[tuple[float, float]] = []
        self._curve = pg.PlotCurveItem(pen=pg.mkPen("#d62728", width=2, style=Qt.PenStyle.DashLine))
        self._curve.setZValue(10)
        self.addItem(self._curve, ignoreBounds=True)

    def mouseDragEvent(self, ev: Any, axis: int | None = None) -> None:
        if ev.button() == Qt.MouseButton.LeftButton and ev.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            if ev.isStart():
                self._path = []
            self._path.append((p.x(), p.y()))
            xs, ys = zip(*(self._path + self._path[:1]), strict=True)
            self._curve.setData(np.array(xs), np.array(ys))
            if ev.isFinish():
                self._curve.setData([], [])
                self._view.select_polygon(
                    np.array(self._path), add=bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier)
                )
                self._path = []
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev: Any) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self._view.click_at(p.x(), p.y(), add=bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier))
            return
        super().mouseClickEvent(ev)

    def mouseDoubleClickEvent(self, ev: Any) -> None:
        p = self.mapSceneToView(ev.scenePos())
        idx = self._view.pick(p.x(), p.y())
        if idx >= 0:
            self._view.activated.emit(idx)


class ScatterView(QWidget):
    """A pannable, zoomable scatter of many points coloured by group, with hover, click and lasso selection.

    Signals:
        hovered(int, QPoint): index of the point under the mouse (-1 for none) and the global mouse position.
        selection_changed(object): ``np.ndarray`` of selected indices.
        activated(int): a point was double-clicked.
    """

    hovered = Signal(int, QPoint)
    selection_changed = Signal(object)
    activated = Signal(int)

    def __init__(self, parent: QWidget | None = None, *, pick_radius_px: float = 8.0) -> None:
        super().__init__(parent)
        self._vb = _LassoViewBox(self)
        self._pw = pg.PlotWidget(viewBox=self._vb)
        self._pw.getPlotItem().hideAxis("left")
        self._pw.getPlotItem().hideAxis("bottom")
        self._pw.getPlotItem().setMenuEnabled(False)
        self._pw.getPlotItem().hideButtons()
        self._pw.setMouseTracking(True)
        self._xy = np.empty((0, 2), np.float64)
        self._groups: list[pg.ScatterPlotItem] = []
        self._selected = np.empty(0, np.int64)
        self._sel_item = pg.ScatterPlotItem(pen=pg.mkPen("#000000", width=1.5), brush=pg.mkBrush(255, 255, 0, 200))
        self._sel_item.setZValue(5)
        self._pw.addItem(self._sel_item)
        self._radius_px = pick_radius_px
        self._last_hover = -1
        self._pending_hover: QPointF | None = None
        self._hover_timer = QTimer(self)
        self._hover_timer.setSingleShot(True)
        self._hover_timer.setInterval(30)
        self._hover_timer.timeout.connect(self._do_hover)
        self._pw.scene().sigMouseMoved.connect(self._on_scene_mouse_moved)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self._pw)
        style_plot(self._pw, self.palette())

    def repaint_now(self) -> None:
        """Repaint the points synchronously (benchmarks measure a full redraw with it)."""
        self._pw.viewport().repaint()

    @property
    def count(self) -> int:
        """Number of points."""
        return len(self._xy)

    def set_points(self, xy: np.ndarray, groups: np.ndarray, colors: list[str], *, size: float | None = None) -> None:
        """Show ``xy`` (N×2); point ``i`` is drawn in ``colors[groups[i]]``. Selection is cleared."""
        self._xy = np.asarray(xy, np.float64)
        self._selected = np.empty(0, np.int64)
        self._sel_item.setData([], [])
        self.set_groups(groups, colors, size=size)
        self._vb.autoRange(padding=0.05)

    def set_groups(self, groups: np.ndarray, colors: list[str], *, size: float | None = None) -> None:
        """Recolour the points (one scatter item per colour keeps 100k points fast)."""
        for item in self._groups:
            self._pw.removeItem(item)
        self._groups = []
        size = size or (4.0 if len(self._xy) > 20_000 else 7.0)
        groups = np.asarray(groups)
        for g, color in enumerate(colors):
            rows = np.flatnonzero(groups == g)
            if not len(rows):
                continue
            item = pg.ScatterPlotItem(
                x=self._xy[rows, 0], y=self._xy[rows, 1], size=size, pen=None, brush=pg.mkBrush(color)
            )
            item.setZValue(1 + g / max(len(colors), 1))
            self._pw.addItem(item)
            self._groups.append(item)

    # -- picking ------------------------------------------------------------------------------------------------
    def _data_radius(self) -> tuple[float, float]:
        (x0, x1), (y0, y1) = self._vb.viewRange()
        w, h = max(self._vb.width(), 1.0), max(self._vb.height(), 1.0)
        return self._radius_px * (x1 - x0) / w, self._radius_px * (y1 - y0) / h

    def pick(self, x: float, y: float) -> int:
        """Index of the point nearest to ``(x, y)`` within the pick radius, or -1."""
        if not len(self._xy):
            return -1
        rx, ry = self._data_radius()
        d2 = ((self._xy[:, 0] - x) / rx) ** 2 + ((self._xy[:, 1] - y) / ry) ** 2
        i = int(np.argmin(d2))
        return i if d2[i] <= 1.0 else -1

    def click_at(self, x: float, y: float, *, add: bool = False) -> None:
        """Select the point at ``(x, y)`` (added to the selection with Ctrl); an empty click clears."""
        i = self.pick(x, y)
        if i < 0:
            self.select(np.empty(0, np.int64) if not add else self._selected)
        elif add:
            self.select(np.union1d(self._selected, [i]))
        else:
            self.select(np.array([i]))

    def select_polygon(self, poly: np.ndarray, *, add: bool = False) -> None:
        """Select the points inside the lasso polygon ``poly`` (data coordinates)."""
        rows = np.flatnonzero(points_in_polygon(self._xy, poly))
        self.select(np.union1d(self._selected, rows) if add else rows)

    def select(self, rows: np.ndarray) -> None:
        """Set the selection and highlight it."""
        self._selected = np.asarray(rows, np.int64)
        sel = self._xy[self._selected] if len(self._selected) else np.empty((0, 2))
        self._sel_item.setData(sel[:, 0], sel[:, 1], size=10)
        self.selection_changed.emit(self._selected)

    def selection(self) -> np.ndarray:
        """Selected indices."""
        return self._selected

    def _on_scene_mouse_moved(self, pos: QPointF) -> None:
        self._pending_hover = pos
        if not self._hover_timer.isActive():  # at most ~30 picks per second, whatever the mouse does
            self._hover_timer.start()

    def _do_hover(self) -> None:
        if self._pending_hover is None:
            return
        p = self._vb.mapSceneToView(self._pending_hover)
        i = self.pick(p.x(), p.y())
        if i != self._last_hover:
            self._last_hover = i
            view_pos = self._pw.mapFromScene(self._pending_hover)
            self.hovered.emit(i, self._pw.viewport().mapToGlobal(view_pos))

    def leaveEvent(self, event: QEvent) -> None:
        """The mouse left the view: nothing is hovered any more (a hover preview must not stay behind)."""
        self._hover_timer.stop()
        self._pending_hover = None
        if self._last_hover != -1:
            self._last_hover = -1
            self.hovered.emit(-1, QPoint())
        super().leaveEvent(event)

    def changeEvent(self, event: QEvent) -> None:
        """Follow palette (theme) changes."""
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            style_plot(self._pw, self.palette())
        super().changeEvent(event)
