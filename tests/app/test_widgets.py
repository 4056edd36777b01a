"""Widgets: MetricPlot with 10k points, the scatter view's picking and lasso, config forms from field metadata,
the capped log view, and the error dialog."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox

from app.widgets.arrays import SeriesBuffer, points_in_polygon
from app.widgets.config_form import ConfigForm
from app.widgets.error_dialog import error_box
from app.widgets.log_view import LogView
from app.widgets.plots import MetricPlot, ScatterView
from sslinspect.config import AugmentConfig, PretrainConfig
from sslinspect.errors import ConfigError

pytestmark = pytest.mark.gui


def test_metric_plot_takes_10k_points(qtbot: Any) -> None:
    plot = MetricPlot("Loss", log_y=False)
    qtbot.addWidget(plot)
    plot.show()
    for i in range(10_000):
        plot.append("loss", float(i), 1.0 / (i + 1))
    plot.append("loss", 10_000.0, float("nan"))  # reported, not plotted
    plot.flush()
    x, y = plot.series_data("loss")
    assert len(x) == len(y) == 10_000 and y[-1] == pytest.approx(1e-4)
    assert "1 non-finite" in plot._header.text() and "0.0001" in plot._header.text()
    plot._log.setChecked(True)
    assert plot._pw.getPlotItem().ctrl.logYCheck.isChecked()
    plot.grab()  # renders with downsampling, no exception


def _painted(plot: MetricPlot, color: str) -> int:
    """Pixels of ``color`` (±30 a channel) in the plot as rendered."""
    img = plot._pw.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, : img.width() * 3]
    rgb = arr.reshape(img.height(), img.width(), 3).astype(int)
    want = QColor(color)
    return int((np.abs(rgb - [want.red(), want.green(), want.blue()]).max(-1) <= 30).sum())


def test_metric_plot_shows_a_series_first_point(qtbot: Any) -> None:
    plot = MetricPlot("Loss", log_y=False)
    qtbot.addWidget(plot)
    plot.resize(400, 300)
    plot.show()
    plot.append("loss", 10.0, 2.87)  # a run's first logged loss: a line needs two points, a dot shows at once
    plot.flush()
    color = plot._colors["loss"]
    assert _painted(plot, color) > 10
    plot.append("loss", 20.0, 2.5)
    plot.flush()
    x, _ = plot.series_data("loss")
    assert len(x) == 2 and _painted(plot, color) > 10 and plot._items["loss"].opts["symbol"] is None


def test_metric_plot_static_curves_and_movable_line(qtbot: Any) -> None:
    plot = MetricPlot("ROC")
    qtbot.addWidget(plot)
    plot.set_curve("roc", np.array([0, 0.5, 1]), np.array([0, 0.9, 1]))
    plot.set_histogram("h", np.linspace(0, 1, 11), np.arange(10))
    plot.set_marker("op", 0.5, 0.9)
    plot.set_vline(0.3, movable=True)
    vline = plot._vline
    assert vline is not None
    with qtbot.waitSignal(plot.line_moved) as moved:
        vline.setValue(0.6)
    assert moved.args == [pytest.approx(0.6)]
    assert set(plot.series_names()) == {"roc", "h", "op"}
    plot.clear()
    assert plot.series_names() == [] and plot._vline is None


def test_series_buffer_grows() -> None:
    b = SeriesBuffer(capacity=2)
    for i in range(5):
        b.append(i, 2 * i)
    assert b.x.tolist() == [0, 1, 2, 3, 4] and b.y.tolist() == [0, 2, 4, 6, 8]


def test_scatter_picks_selects_and_lassos(qtbot: Any) -> None:
    view = ScatterView()
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.show()
    rng = np.random.default_rng(0)
    xy = rng.uniform(-1, 1, (5000, 2))
    xy[0] = (-0.5, -0.5)
    view.set_points(xy, (xy[:, 0] > 0).astype(int), ["#ff0000", "#0000ff"])
    assert view.count == 5000 and len(view._groups) == 2
    view._vb.setRange(xRange=(-0.51, -0.49), yRange=(-0.51, -0.49), padding=0)
    assert view.pick(-0.4999, -0.5) == 0
    assert view.pick(0.9, 0.9) == -1 or np.hypot(*(xy[view.pick(0.9, 0.9)] - 0.9)) < 0.05
    with qtbot.waitSignal(view.selection_changed) as sel:
        view.click_at(-0.5, -0.5)
    assert sel.args[0].tolist() == [0]
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    view.select_polygon(square)
    expected = np.flatnonzero((xy[:, 0] > 0) & (xy[:, 1] > 0))
    assert set(view.selection().tolist()) == set(expected.tolist())
    view.select_polygon(-square, add=True)
    assert len(view.selection()) > len(expected)


def test_points_in_polygon_matches_a_triangle() -> None:
    tri = np.array([[0, 0], [2, 0], [0, 2]], float)
    pts = np.array([[0.5, 0.5], [1.5, 1.5], [-0.1, 0.5], [0.1, 1.8]])
    assert points_in_polygon(pts, tri).tolist() == [True, False, False, True]


def test_config_form_is_built_from_field_metadata(qtbot: Any) -> None:
    form = ConfigForm(PretrainConfig, choices={"method": ["simclr", "byol"], "backbone": ["resnet18", "tiny_cnn"]})
    qtbot.addWidget(form)
    epochs = cast(QSpinBox, form.editor("epochs"))
    assert (epochs.minimum(), epochs.maximum(), epochs.value()) == (1, 10_000, 50)
    assert epochs.toolTip() == "Passes over the images."
    assert cast(QComboBox, form.editor("device")).count() == 3
    cast(QComboBox, form.editor("backbone")).setCurrentText("tiny_cnn")
    cast(QCheckBox, form.editor("augment.flip")).setChecked(False)
    cast(QLineEdit, form.editor("temperature")).setText("0.1")
    cfg = form.value()
    assert cfg.backbone == "tiny_cnn" and cfg.augment == AugmentConfig(flip=False) and cfg.temperature == 0.1
    cast(QLineEdit, form.editor("temperature")).setText(
        "0.0001"
    )  # below the field's minimum: the core says so, naming the field
    with pytest.raises(ConfigError, match=r"pretrain\.temperature must be ≥ 0\.001"):
        form.value()
    cast(QLineEdit, form.editor("temperature")).setText("abc")
    with pytest.raises(ConfigError, match=r"Temperature: 'abc' is not a number"):
        form.value()
    form.set_value(PretrainConfig(epochs=7))
    assert epochs.value() == 7 and cast(QLineEdit, form.editor("temperature")).text() == "0.2"


def test_log_view_is_capped(qtbot: Any) -> None:
    log = LogView(max_lines=100)
    qtbot.addWidget(log)
    for i in range(1000):
        log.add("INFO", f"line {i}")
    log.add("WARNING", "careful")
    lines = log.lines()
    assert len(lines) == 100 and lines[-1].endswith("WARNING: careful") and lines[0].endswith("line 901")


def test_error_box_has_one_line_and_details(qtbot: Any) -> None:
    box = error_box(None, "a.png: truncated\nsecond line", "Traceback ...")
    qtbot.addWidget(box)
    assert box.text() == "a.png: truncated" and box.detailedText() == "Traceback ..."


def test_legend_lists_each_series_once_after_clearing(qtbot: Any) -> None:
    plot = MetricPlot("Scores")
    qtbot.addWidget(plot)
    for _ in range(2):
        plot.clear()
        plot.set_histogram("good", np.linspace(0, 1, 5), np.ones(4))
        plot.set_histogram("defects", np.linspace(0, 1, 5), np.ones(4))
    header = plot.header_text()
    assert header.count("good") == 1 and header.count("defects") == 1
    assert plot._pw.getPlotItem().legend is None  # no legend box over the curves


def test_legend_swatch_stays_with_its_name(qtbot: Any) -> None:
    """Issue 12: legend swatches wrapped away from their names; the header keeps swatch + name in one nowrap run."""
    plot = MetricPlot("Alignment / uniformity")
    qtbot.addWidget(plot)
    plot.append("alignment", 1, 0.5)
    plot.append("uniformity", 1, -2.0)
    plot.flush()
    h = plot.header_text()
    assert "<span style='white-space:nowrap'><span style='color:#1f77b4'>&#9632;</span>&nbsp;alignment" in h


def test_axes_never_show_an_si_scale_factor(qtbot: Any) -> None:
    """Issue 12: axes read "score (x0.001)"; the axis names its unit and shows the values as they are."""
    plot = MetricPlot("Anomaly scores", x_label="anomaly score", y_label="images")
    qtbot.addWidget(plot)
    plot.set_histogram("good", np.linspace(0, 0.004, 5), np.ones(4))
    plot.show()
    qtbot.waitExposed(plot)
    axis = plot._pw.getPlotItem().getAxis("bottom")
    assert not axis.autoSIPrefix and "x0.001" not in axis.labelString()


def test_a_resumed_run_redraws_from_its_checkpoint_not_backwards(qtbot: Any) -> None:
    """Issue 12: a resumed run restarts at an earlier step; the line went backwards. Points from there are replaced."""
    plot = MetricPlot("Loss")
    qtbot.addWidget(plot)
    for s in range(1, 11):
        plot.append("loss", s, 10 - s)
    for s in range(6, 9):  # resumed from the step-5 checkpoint
        plot.append("loss", s, 1.0)
    plot.flush()
    x, y = plot.series_data("loss")
    assert list(x) == [1, 2, 3, 4, 5, 6, 7, 8] and np.all(np.diff(x) > 0)
    assert list(y[-3:]) == [1.0, 1.0, 1.0]


def test_hover_preview_goes_when_the_mouse_leaves_the_map(qtbot: Any) -> None:
    """Issue 12: hover thumbnails stayed after the mouse left the embedding map."""
    from PySide6.QtCore import QEvent, QPoint
    from PySide6.QtWidgets import QApplication

    from app.widgets.embedding_map import EmbeddingMap
    from app.widgets.thumbnails import ThumbnailProvider

    provider = ThumbnailProvider(size=32)
    emap = EmbeddingMap(provider)
    qtbot.addWidget(emap)
    emap.show()
    emap.set_map(np.arange(5, dtype=np.int64), np.random.default_rng(0).normal(size=(5, 2)))
    emap.view._last_hover = 2
    emap.view.hovered.emit(2, QPoint(10, 10))
    assert emap._popup.isVisible()
    QApplication.sendEvent(emap.view, QEvent(QEvent.Type.Leave))
    assert not emap._popup.isVisible()
    emap._popup.close()
    provider.shutdown(0)
