"""The live plots of a pretraining run: one small plot per group of metrics, created when the first value arrives."""

from __future__ import annotations

from PySide6.QtWidgets import QGridLayout, QScrollArea, QWidget

from app.widgets.metric_plot import MetricPlot
from sslinspect.events import Metric

# (title, metric names, log-y toggle default or None for no toggle, shown before any data)
GROUPS: tuple[tuple[str, tuple[str, ...], bool | None, bool], ...] = (
    ("Loss", ("loss", "epoch_loss"), False, True),
    ("Learning rate", ("lr",), None, True),
    ("Images / s", ("images_per_s",), None, True),
    ("Embedding spread (collapse below 0.05)", ("emb_std",), None, True),
    ("Effective rank", ("eff_rank",), None, False),
    ("Alignment / uniformity", ("alignment", "uniformity"), None, False),
    ("k-NN accuracy", ("knn_acc", "knn_accuracy"), None, False),
    ("GPU memory (GB)", ("gpu_mem_gb",), None, False),
    ("Waiting for data (share of time)", ("data_wait",), None, False),
)
COLUMNS = 2


class TrainingPlots(QScrollArea):
    """A grid of :class:`MetricPlot` s fed with ``Metric`` events (O(1) per event; plots redraw on their own timer)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self._inner = QWidget()
        self._grid = QGridLayout(self._inner)
        self.setWidget(self._inner)
        self.plots: dict[str, MetricPlot] = {}
        self._group_of = {name: title for title, names, _, _ in GROUPS for name in names}
        self._log_default = {title: log for title, _, log, _ in GROUPS}
        self.reset()

    def reset(self) -> None:
        """Remove all data, and the plots that only appear with data."""
        always = {title for title, _names, _log, shown in GROUPS if shown}
        for title in list(self.plots):
            plot = self.plots[title]
            if title in always:
                plot.clear()
                continue
            self._grid.removeWidget(plot)
            plot.hide()  # deleteLater waits for the event loop; never show a stale plot meanwhile
            plot.setParent(None)
            plot.deleteLater()
            del self.plots[title]
        for title, _names, _log, shown in GROUPS:
            if shown:
                self._plot(title)

    def _plot(self, title: str) -> MetricPlot:
        plot = self.plots.get(title)
        if plot is None:
            plot = MetricPlot(title, log_y=self._log_default.get(title))
            plot.setMinimumHeight(8 * self.fontMetrics().height())
            n = len(self.plots)
            self._grid.addWidget(plot, n // COLUMNS, n % COLUMNS)
            self.plots[title] = plot
        return plot

    def add(self, event: Metric) -> None:
        """Append one metric value (unknown metric names get a plot of their own)."""
        title = self._group_of.get(event.name, event.name)
        self._plot(title).append(event.name, float(event.step), float(event.value))

    def flush(self) -> None:
        """Draw everything pending now."""
        for plot in self.plots.values():
            plot.flush()

    def plot_for(self, metric: str) -> MetricPlot | None:
        """The plot that shows ``metric``."""
        return self.plots.get(self._group_of.get(metric, metric))
