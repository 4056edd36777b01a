"""The ``sslinspect-app`` entry point: starts the GUI, or says how to install it when the GUI extra is missing.

Imports nothing from Qt itself, so a line-side install (no PySide6) gets one line instead of a traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

#: What the desktop app needs beyond the base install (the ``gui`` extra, which includes ``train``).
GUI_MODULES = ("PySide6", "pyqtgraph", "superqt", "torch")
GUI_HINT = 'The SSL Inspect desktop app is not installed here: pip install "sslinspect[gui]" (or "sslinspect[all]")'


def missing_gui_modules() -> list[str]:
    """The modules of the GUI extra that cannot be found."""
    missing = []
    for name in GUI_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken or blocked package counts as missing
            found = False
        if not found:
            missing.append(name)
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app, or print which extra to install and return 1."""
    missing = missing_gui_modules()
    if missing:
        sys.stderr.write(f"{GUI_HINT} (missing: {', '.join(missing)})\n")
        return 1
    from app.main import main as run_app

    return run_app(argv)
