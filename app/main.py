"""Start the desktop app: ``sslinspect-app [PROJECT] [--demo]`` or ``python -m app``.

Sets up logging, the theme (light/dark following the system), an excepthook that shows unexpected errors as a
dialog instead of killing the window, then the controller and the main window.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

if TYPE_CHECKING:
    from app.main_window import MainWindow

log = logging.getLogger("app")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the app."""
    parser = argparse.ArgumentParser(prog="sslinspect-app", description="SSL Inspect desktop app")
    parser.add_argument("project", nargs="?", help="project folder to open")
    parser.add_argument("--demo", action="store_true", help="create (or reopen) the demo project and open it")
    return parser.parse_args(argv)


def install_excepthook(window: object) -> None:
    """Show unexpected exceptions (from slots) in the error dialog, with the traceback as details."""
    from app.widgets.error_dialog import show_error

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unexpected error:\n%s", details)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        show_error(window, f"Unexpected error {exc_type.__name__}: {first}", details)  # type: ignore[arg-type]

    sys.excepthook = hook


def start(argv: Sequence[str] | None = None) -> tuple[QApplication, MainWindow]:
    """Create (or reuse) the QApplication, the controller and the shown main window; open what ``argv`` asks for."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    QApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setOrganizationName("SSL Inspect")
    app.setApplicationName("SSL Inspect")
    app.setApplicationDisplayName("SSL Inspect")

    from app.controller import AppController
    from app.main_window import MainWindow
    from app.theme import app_icon, follow_system_theme

    follow_system_theme(app)
    app.setWindowIcon(app_icon())
    controller = AppController()
    window = MainWindow(controller)
    install_excepthook(window)
    window.show()
    if args.demo:
        window.pages[0].open_demo()  # type: ignore[attr-defined]
    elif args.project:
        controller.open_project(Path(args.project))
    return app, window


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app until its window closes; returns the exit code."""
    app, _window = start(argv)
    return int(app.exec())
