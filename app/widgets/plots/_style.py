"""Shared look of the plots: series colours and palette-following axes (no SI-prefix scaling: axes read in the
units they name, never "(x0.001)")."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QPalette

SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def style_plot(widget: pg.PlotWidget, palette: QPalette) -> None:
    """Colours that follow the application palette (light or dark theme)."""
    widget.setBackground(palette.color(QPalette.ColorRole.Base))
    text = palette.color(QPalette.ColorRole.Text)
    for name in ("left", "bottom"):
        axis = widget.getPlotItem().getAxis(name)
        axis.setPen(pg.mkPen(text))
        axis.setTextPen(pg.mkPen(text))
        axis.enableAutoSIPrefix(False)
