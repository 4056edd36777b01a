"""Plot widgets on pyqtgraph (the only module that imports it): live metric curves and a large-scatter view.

``MetricPlot`` appends points in O(1) into a growing numpy buffer and redraws at most 10 times a second, only when
something changed, with peak downsampling and clip-to-view, so a job streaming metrics never stalls the window.
``ScatterView`` shows up to ~100,000 points (one item per colour group), reports hover and click picks, and selects
with a Shift+drag lasso.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from numpy.typing import ArrayLike
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPalette, QShowEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from app.widgets.arrays import SeriesBuffer, points_in_polygon

SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
REDRAW_MS = 40  # the shared scheduler redraws one dirty plot per tick: ≤ 25 plots/s whatever the event rate


class _RedrawScheduler(QObject):
    """Redraws dirty, visible plots one per tick, round-robin.

    A page shows up to nine live plots; redrawing them together would block the event loop for the sum of their
    paint times. One plot per tick bounds a stall to one plot's paint; each plot still updates a few times a second.
    """

    def __init__(self) -> None:
        super().__init__()
        self._queue: list[MetricPlot] = []
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._tick)

    def request(self, plot: MetricPlot) -> None:
        if plot not in self._queue:
            self._queue.append(plot)
        if not self._timer.isActive():
            self._timer.start()

    def forget(self, plot: MetricPlot) -> None:
        if plot in self._queue:
            self._queue.remove(plot)

    def _tick(self) -> None:
        while self._queue:
            plot = self._queue.pop(0)
            if plot.isVisible():  # hidden ones are redrawn from their showEvent
                plot._redraw()
                break
        if not self._queue:
            self._timer.stop()


_scheduler: _RedrawScheduler | None = None


def _redraws() -> _RedrawScheduler:
    global _scheduler  # one per process, created with the first plot (a QApplication exists by then)
    if _scheduler is None:
        _scheduler = _RedrawScheduler()
    return _scheduler


def _style_plot(widget: pg.PlotWidget, palette: QPalette) -> None:
    """Colours that follow the application palette (light or dark theme)."""
    widget.setBackground(palette.color(QPalette.ColorRole.Base))
    text = palette.color(QPalette.ColorRole.Text)
    for name in ("left", "bottom"):
        axis = widget.getPlotItem().getAxis(name)
        axis.setPen(pg.mkPen(text))
        axis.setTextPen(pg.mkPen(text))


class MetricPlot(QWidget):
    """One titled plot of named series; live series are throttled, static curves are set at once.

    Signals:
        line_moved(float): the movable vertical line (see :meth:`set_vline`) was dragged to a new x.
    """

    line_moved = Signal(float)

    def __init__(
        self,
        title: str,
        *,
        x_label: str = "step",
        y_label: str = "",
        log_y: bool | None = None,
        legend: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._title = title
        self._legend = legend
        self._buffers: dict[str, SeriesBuffer] = {}
        self._items: dict[str, pg.PlotDataItem] = {}
        self._dirty: set[str] = set()
        self._nonfinite = 0
        self._vline: pg.InfiniteLine | None = None
        self._header = QLabel(title)
        self._header.setObjectName("plotTitle")
        self._log = QToolButton()
        self._log.setText("log")
        self._log.setCheckable(True)
        self._log.setToolTip("Logarithmic y axis")
        self._log.setVisible(log_y is not None)
        self._log.setChecked(bool(log_y))
        self._log.toggled.connect(self._on_log_toggled)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(120)
        self.plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        item = self.plot.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setLabel("bottom", x_label)
        if y_label:
            item.setLabel("left", y_label)
        item.setMenuEnabled(False)
        item.hideButtons()
        item.setLogMode(False, bool(log_y))
        head = QHBoxLayout()
        head.setContentsMargins(0, 0, 0, 0)
        head.addWidget(self._header, 1)
        head.addWidget(self._log)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(head)
        lay.addWidget(self.plot, 1)
        self.destroyed.connect(lambda _o=None, me=self: _redraws().forget(me))
        _style_plot(self.plot, self.palette())

    # -- live series ----------------------------------------------------------------------------------------------
    def append(self, series: str, x: float, y: float) -> None:
        """Add one point to ``series`` (drawn at the next redraw tick). Non-finite values are counted, not plotted."""
        if not (math.isfinite(x) and math.isfinite(y)):
            self._nonfinite += 1
            return
        buf = self._buffers.get(series)
        if buf is None:
            buf = self._buffers[series] = SeriesBuffer()
            self._item(series)
        buf.append(x, y)
        if not self._dirty:
            _redraws().request(self)
        self._dirty.add(series)

    def flush(self) -> None:
        """Hand pending points to the plot now, visible or not (end of a job, replayed runs, tests)."""
        _redraws().forget(self)
        self._redraw()

    def _redraw(self) -> None:
        if not self._dirty:
            return
        for name in self._dirty:
            buf = self._buffers[name]
            self._items[name].setData(buf.x, buf.y)
        self._dirty.clear()
        self._update_header()

    def _update_header(self) -> None:
        parts = []
        for name, buf in self._buffers.items():
            if buf.n:
                label = name if len(self._buffers) > 1 else ""
                parts.append(f"{label} {buf.y[-1]:.4g}".strip())
        text = f"<b>{self._title}</b>" + (f" &nbsp; {', '.join(parts)}" if parts else "")
        if self._nonfinite:
            text += f" &nbsp; <span style='color:#d62728'>{self._nonfinite} non-finite value(s)</span>"
        self._header.setText(text)

    # -- static curves ------------------------------------------------------------------------------------------
    def set_curve(
        self, series: str, x: ArrayLike, y: ArrayLike, *, color: str | None = None, fill: bool = False
    ) -> None:
        """Replace ``series`` with ``(x, y)`` at once (ROC/PR curves, profiles)."""
        item = self._item(series, color)
        item.setData(np.asarray(x, np.float64), np.asarray(y, np.float64))
        if fill:
            item.setFillLevel(0)
            item.setBrush(pg.mkBrush(QColor(color or SERIES_COLORS[0]).lighter(150)))

    def set_histogram(self, series: str, edges: np.ndarray, counts: np.ndarray, *, color: str | None = None) -> None:
        """Show ``counts`` over bin ``edges`` as a filled step histogram."""
        item = self._item(series, color)
        item.setData(np.asarray(edges, np.float64), np.asarray(counts, np.float64), stepMode="center")
        c = QColor(color or SERIES_COLORS[0])
        c.setAlpha(90)
        item.setFillLevel(0)
        item.setBrush(pg.mkBrush(c))

    def set_marker(self, series: str, x: float, y: float, *, color: str = "#d62728") -> None:
        """A single highlighted point (the operating point on a curve)."""
        item = self._items.get(series)
        if item is None:
            item = self._items[series] = self.plot.plot(
                [x], [y], pen=None, symbol="o", symbolSize=10, symbolBrush=color, name=series
            )
        item.setData([x], [y])

    def set_vline(self, x: float, *, movable: bool = False, color: str = "#d62728") -> None:
        """Show a vertical line at ``x``; a movable one emits ``line_moved`` while dragged."""
        if self._vline is None:
            self._vline = pg.InfiniteLine(angle=90, movable=movable, pen=pg.mkPen(color, width=2))
            self._vline.setHoverPen(pg.mkPen(color, width=4))
            self._vline.sigPositionChanged.connect(lambda line: self.line_moved.emit(float(line.value())))
            self.plot.addItem(self._vline)
        self._vline.blockSignals(True)
        self._vline.setValue(x)
        self._vline.blockSignals(False)

    def set_range(self, x: tuple[float, float] | None = None, y: tuple[float, float] | None = None) -> None:
        """Fix the visible range (curves in the unit square, for example)."""
        vb = self.plot.getPlotItem().getViewBox()
        if x is not None:
            vb.setXRange(*x, padding=0.02)
        if y is not None:
            vb.setYRange(*y, padding=0.02)

    # -- common -------------------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Remove every series and the vertical line."""
        for item in self._items.values():
            self.plot.removeItem(item)
        if self._vline is not None:
            self.plot.removeItem(self._vline)
            self._vline = None
        self._items.clear()
        self._buffers.clear()
        self._dirty.clear()
        self._nonfinite = 0
        self._header.setText(f"<b>{self._title}</b>")

    def series_names(self) -> list[str]:
        """Names of the series shown."""
        return list(self._items)

    def series_data(self, series: str) -> tuple[np.ndarray, np.ndarray]:
        """The full data given to ``series`` (not the downsampled view)."""
        item = self._items[series]
        if item.xData is None:
            return np.empty(0), np.empty(0)
        return np.asarray(item.xData), np.asarray(item.yData)

    def _item(self, series: str, color: str | None = None) -> pg.PlotDataItem:
        item = self._items.get(series)
        if item is None:
            if len(self._items) == 1 and self._legend and self.plot.getPlotItem().legend is None:
                # a second series: now a legend helps (items made later join it by themselves)
                legend = self.plot.getPlotItem().addLegend(
                    offset=(-10, 10), labelTextColor=self.palette().text().color()
                )
                first_name, first = next(iter(self._items.items()))
                legend.addItem(first, first_name)
            color = color or SERIES_COLORS[len(self._items) % len(SERIES_COLORS)]
            item = self.plot.plot(name=series, pen=pg.mkPen(color, width=2))
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
            self._items[series] = item
        return item

    def _on_log_toggled(self, on: bool) -> None:
        self.plot.getPlotItem().setLogMode(False, on)

    def changeEvent(self, event: QEvent) -> None:
        """Follow palette (theme) changes."""
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            _style_plot(self.plot, self.palette())
        super().changeEvent(event)

    def showEvent(self, event: QShowEvent) -> None:
        """Draw what arrived while hidden."""
        super().showEvent(event)
        if self._dirty:
            _redraws().request(self)


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
        self.plot = pg.PlotWidget(viewBox=self._vb)
        self.plot.getPlotItem().hideAxis("left")
        self.plot.getPlotItem().hideAxis("bottom")
        self.plot.getPlotItem().setMenuEnabled(False)
        self.plot.getPlotItem().hideButtons()
        self.plot.setMouseTracking(True)
        self._xy = np.empty((0, 2), np.float64)
        self._groups: list[pg.ScatterPlotItem] = []
        self._selected = np.empty(0, np.int64)
        self._sel_item = pg.ScatterPlotItem(pen=pg.mkPen("#000000", width=1.5), brush=pg.mkBrush(255, 255, 0, 200))
        self._sel_item.setZValue(5)
        self.plot.addItem(self._sel_item)
        self._radius_px = pick_radius_px
        self._last_hover = -1
        self._pending_hover: QPointF | None = None
        self._hover_timer = QTimer(self)
        self._hover_timer.setSingleShot(True)
        self._hover_timer.setInterval(30)
        self._hover_timer.timeout.connect(self._do_hover)
        self.plot.scene().sigMouseMoved.connect(self._on_scene_mouse_moved)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)
        _style_plot(self.plot, self.palette())

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
            self.plot.removeItem(item)
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
            self.plot.addItem(item)
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
            view_pos = self.plot.mapFromScene(self._pending_hover)
            self.hovered.emit(i, self.plot.viewport().mapToGlobal(view_pos))

    def changeEvent(self, event: QEvent) -> None:
        """Follow palette (theme) changes."""
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            _style_plot(self.plot, self.palette())
        super().changeEvent(event)
