"""GUI preferences in QSettings (window geometry and state, recent projects, last folders): never project config."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORG, APP = "SSL Inspect", "SSL Inspect"
MAX_RECENT = 10


class Settings:
    """Typed access to the app's QSettings.

    Args:
        qsettings: The store to use; tests pass an INI file in a temporary folder.
    """

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self._s = qsettings or QSettings(ORG, APP)

    # -- recent projects ----------------------------------------------------------------------------------------
    def recent_projects(self) -> list[Path]:
        """Recently opened projects, newest first, that still exist."""
        raw = self._s.value("recent_projects", [])
        items = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, (list, tuple)) else []
        return [Path(p) for p in items if p and Path(p).is_dir()]

    def add_recent_project(self, path: Path) -> None:
        """Put ``path`` first in the recent list."""
        path = Path(path).resolve()
        items = [str(path)] + [str(p) for p in self.recent_projects() if p.resolve() != path]
        self._s.setValue("recent_projects", items[:MAX_RECENT])

    def remove_recent_project(self, path: Path) -> None:
        """Forget ``path``."""
        self._s.setValue("recent_projects", [str(p) for p in self.recent_projects() if p != Path(path)])

    # -- window -------------------------------------------------------------------------------------------------
    def window_geometry(self) -> QByteArray | None:
        """Saved ``QMainWindow.saveGeometry()``."""
        v = self._s.value("window/geometry")
        return v if isinstance(v, QByteArray) else None

    def window_state(self) -> QByteArray | None:
        """Saved ``QMainWindow.saveState()`` (docks, toolbars)."""
        v = self._s.value("window/state")
        return v if isinstance(v, QByteArray) else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        """Remember the main window's geometry and dock state."""
        self._s.setValue("window/geometry", geometry)
        self._s.setValue("window/state", state)

    # -- misc -------------------------------------------------------------------------------------------------
    def last_folder(self, key: str) -> str:
        """The folder a file dialog for ``key`` last used (home by default)."""
        return str(self._s.value(f"folders/{key}", str(Path.home())))

    def set_last_folder(self, key: str, folder: Path) -> None:
        """Remember the folder a file dialog for ``key`` used."""
        self._s.setValue(f"folders/{key}", str(folder))

    def worker_threads(self) -> int:
        """torch threads for worker processes (1 keeps the window responsive on small machines)."""
        try:
            return max(0, int(str(self._s.value("jobs/threads", 1))))
        except (TypeError, ValueError):
            return 1

    def advanced_plots(self) -> bool:
        """Whether the Pretrain page shows its diagnostic plots (the Advanced toggle; closed by default)."""
        return str(self._s.value("pretrain/advanced_plots", "false")).lower() == "true"

    def set_advanced_plots(self, on: bool) -> None:
        """Remember the Pretrain page's Advanced toggle."""
        self._s.setValue("pretrain/advanced_plots", "true" if on else "false")

    def pretrain_preset(self, project: Path) -> str | None:
        """The Pretrain preset last chosen for ``project`` (None: never chosen)."""
        raw = self._s.value("pretrain/presets", "{}")
        try:
            chosen = json.loads(str(raw))
        except ValueError:
            return None
        value = chosen.get(str(Path(project).resolve())) if isinstance(chosen, dict) else None
        return value if isinstance(value, str) else None

    def set_pretrain_preset(self, project: Path, name: str) -> None:
        """Remember the Pretrain preset chosen for ``project`` (the page reopens on it)."""
        try:
            chosen = json.loads(str(self._s.value("pretrain/presets", "{}")))
        except ValueError:
            chosen = {}
        chosen = chosen if isinstance(chosen, dict) else {}
        chosen[str(Path(project).resolve())] = name
        self._s.setValue("pretrain/presets", json.dumps(chosen))

    def sync(self) -> None:
        """Write pending changes to disk."""
        self._s.sync()
