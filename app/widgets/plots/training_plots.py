"""The live plots of a pretraining run: one small plot per group of metrics, created when the first value arrives.

Every plot names its axes in human units (training step, epoch, minutes, GB) and its series in words; the raw
metric names of the event stream (``epoch_loss``, ``eta_s``) never reach the screen. The loss is always shown; the
training-health diagnostics (embedding spread, effective rank, k-NN accuracy, …) sit behind an *Advanced* toggle,
collapsed unless the page opens it (hidden plots keep their data and are not redrawn).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QScrollArea, QToolButton, QVBoxLayout, QWidget

from app.widgets.plots.metric_plot import MetricPlot
from sslinspect.events import Metric


@dataclass(frozen=True)
class Group:
    """One plot: its title, the metrics it shows (name → series name), axes, and how values are scaled."""

    title: str
    series: dict[str, str]
    y_label: str
    log_y: bool | None = None  # None: no log toggle
    shown: bool = False  # shown before any data arrives
    per_epoch: bool = False  # x is the epoch (the metric is measured once per epoch)
    scale: float = 1.0
    tip: str = ""
    advanced: bool = True  # a diagnostic, behind the Advanced toggle


GROUPS: tuple[Group, ...] = (
    Group(
        "Loss",
        {"loss": "per step", "epoch_loss": "epoch mean"},
        "loss",
        False,
        True,
        tip="The training objective; it should fall and then level off.",
        advanced=False,
    ),
    Group(
        "Learning rate",
        {"lr": "learning rate"},
        "learning rate",
        None,
        True,
        tip="How big each training step is (warm-up, then a cosine decay).",
    ),
    Group("Images / s", {"images_per_s": "images per second"}, "images / s", None, True, tip="Training speed."),
    Group(
        "Embedding spread (collapse below 0.05)",
        {"emb_std": "spread"},
        "spread",
        None,
        True,
        tip="How different the images' embeddings are; near 0 means every image looks the same to the "
        "network (collapse).",
    ),
    Group(
        "Effective rank",
        {"eff_rank": "effective rank"},
        "dimensions",
        tip="How many directions of the embedding the images really use; higher is a richer representation.",
    ),
    Group(
        "Alignment / uniformity",
        {"alignment": "alignment", "uniformity": "uniformity"},
        "value",
        tip="Alignment: two views of one image land close (lower is better). Uniformity: images spread over "
        "the sphere (more negative is better).",
    ),
    Group(
        "k-NN accuracy",
        {"knn_acc": "k-NN accuracy", "knn_accuracy": "k-NN accuracy"},
        "share correct",
        per_epoch=True,
        tip="Accuracy of labelling each labelled image like its nearest labelled neighbours, "
        "measured once per epoch: higher is better.",
    ),
    Group("GPU memory", {"gpu_mem_gb": "peak memory"}, "GB", tip="Peak GPU memory of the run."),
    Group(
        "Waiting for data (share of time)",
        {"data_wait": "waiting"},
        "share of time",
        tip="Share of the time the GPU/CPU waited for images; high means image decoding is the bottleneck.",
    ),
    Group(
        "Time left", {"eta_s": "estimated time left"}, "minutes", scale=1 / 60, tip="Estimated time until the run ends."
    ),
)
COLUMNS = 2
ADVANCED_TIP = (
    "Diagnostic plots for checking how training goes: learning rate, speed, embedding spread, effective rank, "
    "alignment/uniformity, k-NN accuracy, GPU memory, waiting for data, time left. A warning appears above "
    "without them if the embedding spread collapses."
)


class TrainingPlots(QScrollArea):
    """The loss plot, then the diagnostic plots in a grid behind an *Advanced* toggle, fed with ``Metric`` events.

    O(1) per event; plots redraw on their own timer. ``advanced_toggled`` tells the page to remember the choice.
    """

    advanced_toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self._inner = QWidget()
        self._basic = QWidget()
        self._row = QHBoxLayout(self._basic)
        self._row.setContentsMargins(0, 0, 0, 0)
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced: training-health plots")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setToolTip(ADVANCED_TIP)
        self.advanced_toggle.toggled.connect(self._on_advanced_toggled)
        self._advanced = QWidget()
        self._grid = QGridLayout(self._advanced)
        self._grid.setContentsMargins(0, 0, 0, 0)
        lay = QVBoxLayout(self._inner)
        lay.addWidget(self._basic, 1)
        lay.addWidget(self.advanced_toggle, 0, Qt.AlignmentFlag.AlignLeft)
        lay.addWidget(self._advanced, 2)
        self._advanced.setVisible(False)
        self.setWidget(self._inner)
        self.plots: dict[str, MetricPlot] = {}
        self._group_of = {name: g for g in GROUPS for name in g.series}
        self._groups = {g.title: g for g in GROUPS}
        self.reset()

    def advanced_shown(self) -> bool:
        """Whether the diagnostic plots are open."""
        return self.advanced_toggle.isChecked()

    def set_advanced(self, on: bool) -> None:
        """Open or close the diagnostic plots (as a click on the toggle does)."""
        self.advanced_toggle.setChecked(on)

    def _on_advanced_toggled(self, on: bool) -> None:
        self._advanced.setVisible(on)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.advanced_toggled.emit(on)

    def reset(self) -> None:
        """Remove all data, and the plots that only appear with data."""
        always = {g.title for g in GROUPS if g.shown}
        for title in list(self.plots):
            plot = self.plots[title]
            if title in always:
                plot.clear()
                continue
            self._grid.removeWidget(plot)
            self._row.removeWidget(plot)
            plot.hide()  # deleteLater waits for the event loop; never show a stale plot meanwhile
            plot.setParent(None)
            plot.deleteLater()
            del self.plots[title]
        for g in GROUPS:
            if g.shown:
                self._plot(g.title)

    def _plot(self, title: str) -> MetricPlot:
        plot = self.plots.get(title)
        if plot is None:
            g = self._groups.get(title)
            x_label = "epoch" if g is not None and g.per_epoch else "training step"
            plot = MetricPlot(title, x_label=x_label, y_label=g.y_label if g else "value", log_y=g.log_y if g else None)
            plot.setToolTip(g.tip if g and g.tip else title)
            plot.setMinimumHeight(8 * self.fontMetrics().height())
            if g is not None and not g.advanced:
                self._row.addWidget(plot)
            else:  # diagnostics and metrics without a group
                n = self._grid.count()
                self._grid.addWidget(plot, n // COLUMNS, n % COLUMNS)
            self.plots[title] = plot
        return plot

    def add(self, event: Metric) -> None:
        """Append one metric value (unknown metric names get a plot of their own)."""
        g = self._group_of.get(event.name)
        if g is None:
            self._plot(event.name.replace("_", " ")).append(event.name.replace("_", " "), event.step, event.value)
            return
        x = float(event.epoch if g.per_epoch else event.step)
        self._plot(g.title).append(g.series[event.name], x, float(event.value) * g.scale)

    def flush(self) -> None:
        """Draw everything pending now."""
        for plot in self.plots.values():
            plot.flush()

    def plot_for(self, metric: str) -> MetricPlot | None:
        """The plot that shows ``metric``."""
        g = self._group_of.get(metric)
        return self.plots.get(g.title if g else metric.replace("_", " "))

    def series_for(self, metric: str) -> str:
        """The series name (in words) that shows ``metric``."""
        g = self._group_of.get(metric)
        return g.series[metric] if g else metric.replace("_", " ")
