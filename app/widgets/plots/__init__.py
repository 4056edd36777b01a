"""Plot widgets with the small API the pages need; the only package in the app that imports pyqtgraph."""

from app.widgets.plots.metric_plot import MetricPlot
from app.widgets.plots.scatter_view import ScatterView
from app.widgets.plots.training_plots import TrainingPlots

__all__ = ["MetricPlot", "ScatterView", "TrainingPlots"]
