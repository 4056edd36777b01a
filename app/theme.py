"""Light and dark themes that follow the system colour scheme, plus the app's style sheet and icon."""

from __future__ import annotations

import os
from importlib import resources

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication, QStyleFactory


def resource_text(*parts: str) -> str:
    """The text of a file under the ``resources`` package."""
    return resources.files("resources").joinpath(*parts).read_text(encoding="utf-8")


def app_icon() -> QIcon:
    """The application icon (SVG)."""
    data = resources.files("resources").joinpath("icons", "app.svg").read_bytes()
    renderer = QSvgRenderer(QByteArray(data))
    pm = QPixmap(256, 256)
    pm.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pm)
    renderer.render(painter)
    painter.end()
    return QIcon(pm)


def dark_palette() -> QPalette:
    """A dark palette for the Fusion style."""
    p = QPalette()
    base, window, text = QColor("#1e1f22"), QColor("#2b2d30"), QColor("#dfe1e5")
    roles = {
        QPalette.ColorRole.Window: window,
        QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base,
        QPalette.ColorRole.AlternateBase: QColor("#313338"),
        QPalette.ColorRole.ToolTipBase: QColor("#3c3f41"),
        QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.Text: text,
        QPalette.ColorRole.Button: QColor("#3c3f41"),
        QPalette.ColorRole.ButtonText: text,
        QPalette.ColorRole.BrightText: QColor("#ff6b6b"),
        QPalette.ColorRole.Highlight: QColor("#2f65ca"),
        QPalette.ColorRole.HighlightedText: QColor("#ffffff"),
        QPalette.ColorRole.Link: QColor("#6ea8fe"),
        QPalette.ColorRole.PlaceholderText: QColor("#9da0a8"),
        QPalette.ColorRole.Mid: QColor("#4e5157"),
        QPalette.ColorRole.Dark: QColor("#151618"),
        QPalette.ColorRole.Light: QColor("#4e5157"),
    }
    for role, color in roles.items():
        p.setColor(role, color)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6f737a"))
    return p


def is_dark() -> bool:
    """Whether to use the dark theme: ``SSLINSPECT_THEME=dark|light`` wins, else the system colour scheme."""
    forced = os.environ.get("SSLINSPECT_THEME", "").lower()
    if forced in ("dark", "light"):
        return forced == "dark"
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


def apply_theme(app: QApplication) -> None:
    """Fusion style, the palette for the current scheme, the style sheet; re-applied when the system scheme changes."""
    app.setStyle(QStyleFactory.create("Fusion"))
    app.setPalette(dark_palette() if is_dark() else app.style().standardPalette())
    app.setStyleSheet(resource_text("styles", "app.qss"))


def follow_system_theme(app: QApplication) -> None:
    """Apply the theme now and whenever the system switches between light and dark."""
    apply_theme(app)
    app.styleHints().colorSchemeChanged.connect(lambda _scheme: apply_theme(app))
