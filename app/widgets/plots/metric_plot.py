"""Live metric curves and static curves on pyqtgraph (only ``app.widgets.plots`` imports it).

``MetricPlot`` appends points in O(1) into a growing numpy buffer and redraws at most 10 times a second, only when
something changed, with peak downsampling and clip-to-view, so a job streaming metrics never stalls the window.
Pages use its small API (series, histogram, marker, movable line, note, range) and never reach into pyqtgraph.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from numpy.typing import ArrayLike
from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtGui import QColor, QShowEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from app.widgets.arrays import SeriesBuffer
from app.widgets.plots._style import SERIES_COLORS, style_plot

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
        self._colors: dict[str, str] = {}
        self._markers: dict[str, pg.PlotDataItem] = {}
        self._note = ""
        self._header = QLabel(title)
        self._header.setObjectName("plotTitle")
        # one line that never widens the page (a wrapping label would relayout the plot grid at every redraw)
        self._header.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._log = QToolButton()
        self._log.setText("log")
        self._log.setCheckable(True)
        self._log.setToolTip("Logarithmic y axis")
        self._log.setVisible(log_y is not None)
        self._log.setChecked(bool(log_y))
        self._log.toggled.connect(self._on_log_toggled)
        self._pw = pg.PlotWidget()
        self._pw.setMinimumHeight(120)
        self._pw.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        item = self._pw.getPlotItem()
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
        lay.addWidget(self._pw, 1)
        self.destroyed.connect(lambda _o=None, me=self: _redraws().forget(me))
        style_plot(self._pw, self.palette())

    # -- live series ----------------------------------------------------------------------------------------------
    def append(self, series: str, x: float, y: float) -> None:
        """Add one point to ``series`` (drawn at the next redraw tick). Non-finite values are counted, not plotted."""
        if not (math.isfinite(x) and math.isfinite(y)):
            self._nonfinite += 1
            return
        buf = self._buffers.get(series)
        if buf is None:
            buf = self._buffers[series] = SeriesBuffer()
            item = self._item(series)
            item.setSymbolSize(7)
            item.setSymbolPen(None)
            item.setSymbolBrush(self._colors[series])
        elif buf.n and x <= buf.x[-1]:  # a resumed run restarts from its checkpoint: redraw from there, never back
            buf.truncate(int(np.searchsorted(buf.x, x, side="left")))
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
            item = self._items[name]
            # a line needs two points: a lone first point is drawn as a dot, so a run's first loss shows at once
            dot = "o" if buf.n == 1 else None
            if item.opts["symbol"] != dot:
                item.setSymbol(dot)
            item.setData(buf.x, buf.y)
        self._dirty.clear()
        self._update_header()

    def _update_header(self) -> None:
        parts = []
        named = len(self._items) > 1 and self._legend
        for name in self._items:
            buf = self._buffers.get(name)
            value = f"{buf.y[-1]:.4g}" if buf is not None and buf.n else ""
            if named:  # swatch, name and value stay together (nowrap); no legend box over the curves
                swatch = f"<span style='color:{self._colors.get(name, '#888888')}'>&#9632;</span>"
                tail = f"&nbsp;{value}" if value else ""
                parts.append(f"<span style='white-space:nowrap'>{swatch}&nbsp;{name}{tail}</span>")
            elif value:
                parts.append(value)
        text = f"<b>{self._title}</b>" + (f" &nbsp; {' &nbsp; '.join(parts)}" if parts else "")
        if self._note:
            text += f" &nbsp; {self._note}"
        if self._nonfinite:
            text += f" &nbsp; <span style='color:#d62728'>{self._nonfinite} non-finite value(s)</span>"
        self._header.setText(text)

    def set_note(self, text: str) -> None:
        """A short note after the title (e.g. "AUROC 0.91"); plain text."""
        self._note = text.replace("&", "&amp;").replace("<", "&lt;")
        self._update_header()

    def note(self) -> str:
        """The note shown after the title."""
        return self._note

    def header_text(self) -> str:
        """The header as shown (rich text): title, series with swatches and last values, note."""
        return self._header.text()

    # -- static curves ------------------------------------------------------------------------------------------
    def set_curve(
        self, series: str, x: ArrayLike, y: ArrayLike, *, color: str | None = None, fill: bool = False
    ) -> None:
        """Replace ``series`` with ``(x, y)`` at once (ROC/PR curves, profiles)."""
        item = self._item(series, color)
        item.setData(np.asarray(x, np.float64), np.asarray(y, np.float64))
        self._update_header()
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
        self._update_header()

    def set_marker(self, series: str, x: float, y: float, *, color: str = "#d62728") -> None:
        """A single highlighted point (the operating point on a curve)."""
        item = self._markers.get(series)
        if item is None:
            item = self._markers[series] = self._pw.plot(
                [x], [y], pen=None, symbol="o", symbolSize=10, symbolBrush=color
            )
        item.setData([x], [y])

    def set_vline(self, x: float, *, movable: bool = False, color: str = "#d62728") -> None:
        """Show a vertical line at ``x``; a movable one emits ``line_moved`` while dragged."""
        if self._vline is None:
            self._vline = pg.InfiniteLine(angle=90, movable=movable, pen=pg.mkPen(color, width=2))
            self._vline.setHoverPen(pg.mkPen(color, width=4))
            self._vline.sigPositionChanged.connect(lambda line: self.line_moved.emit(float(line.value())))
            self._pw.addItem(self._vline)
        self._vline.blockSignals(True)
        self._vline.setValue(x)
        self._vline.blockSignals(False)

    def set_range(self, x: tuple[float, float] | None = None, y: tuple[float, float] | None = None) -> None:
        """Fix the visible range (curves in the unit square, for example)."""
        vb = self._pw.getPlotItem().getViewBox()
        if x is not None:
            vb.setXRange(*x, padding=0.02)
        if y is not None:
            vb.setYRange(*y, padding=0.02)

    # -- common -------------------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Remove every series and the vertical line."""
        for item in (*self._items.values(), *self._markers.values()):
            self._pw.removeItem(item)
        self._markers.clear()
        if self._vline is not None:
            self._pw.removeItem(self._vline)
            self._vline = None
        self._items.clear()
        self._buffers.clear()
        self._dirty.clear()
        self._nonfinite = 0
        self._colors.clear()
        self._note = ""
        self._header.setText(f"<b>{self._title}</b>")

    def series_names(self) -> list[str]:
        """Names of the series and markers shown."""
        return [*self._items, *self._markers]

    def series_data(self, series: str) -> tuple[np.ndarray, np.ndarray]:
        """The full data given to ``series`` or marker (not the downsampled view)."""
        item = self._items.get(series) or self._markers[series]
        if item.xData is None:
            return np.empty(0), np.empty(0)
        return np.asarray(item.xData), np.asarray(item.yData)

    def line_value(self) -> float | None:
        """Where the vertical line is (None: no line)."""
        return None if self._vline is None else float(self._vline.value())

    def view_range(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The visible x and y ranges."""
        (x0, x1), (y0, y1) = self._pw.getPlotItem().getViewBox().viewRange()
        return (float(x0), float(x1)), (float(y0), float(y1))

    def axis_labels(self) -> tuple[str, str]:
        """The x and y axis labels as shown."""
        item = self._pw.getPlotItem()
        return item.getAxis("bottom").labelText, item.getAxis("left").labelText

    def _item(self, series: str, color: str | None = None) -> pg.PlotDataItem:
        item = self._items.get(series)
        if item is None:
            color = color or SERIES_COLORS[len(self._items) % len(SERIES_COLORS)]
            item = self._pw.plot(pen=pg.mkPen(color, width=2))
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
            self._items[series] = item
            self._colors[series] = color
        return item

    def _on_log_toggled(self, on: bool) -> None:
        self._pw.getPlotItem().setLogMode(False, on)

    def changeEvent(self, event: QEvent) -> None:
        """Follow palette (theme) changes."""
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            style_plot(self._pw, self.palette())
        super().changeEvent(event)

    def showEvent(self, event: QShowEvent) -> None:
        """Draw what arrived while hidden."""
        super().showEvent(event)
        if self._dirty:
            _redraws().request(self)
