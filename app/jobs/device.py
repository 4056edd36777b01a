"""Which device pretraining will use, asked of a short child process so the GUI process never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal
from superqt.utils import create_worker

from app.jobs.process_job import worker_environ

_CODE = "import json\nfrom sslinspect import api\nprint(json.dumps(api.device_info('auto')))\n"  # through the api only


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """The device ``auto`` resolves to: a readable name (GPU model and memory, or CPU threads); CUDA or not."""

    name: str
    cuda: bool


def probe_device(timeout: float = 120) -> DeviceInfo:
    """Ask a child Python which device ``--device auto`` picks (a few seconds: it imports torch)."""
    try:
        r = subprocess.run(
            [sys.executable, "-c", _CODE],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=worker_environ(1),
            check=False,
        )
        data = json.loads(r.stdout.strip().splitlines()[-1])
        return DeviceInfo(str(data["name"]), bool(data["cuda"]))
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError, KeyError):
        return DeviceInfo("unknown (could not start PyTorch; see the log when you start a job)", False)


class DeviceProbe(QObject):
    """Runs :func:`probe_device` once in a thread worker; emits ``detected(DeviceInfo)``."""

    detected = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.info: DeviceInfo | None = None
        self._worker: Any = None

    def start(self) -> None:
        """Probe unless done or running."""
        if self.info is not None or self._worker is not None:
            return
        self._worker = create_worker(probe_device, _connect={"returned": self._on_worker_returned})

    def _on_worker_returned(self, info: DeviceInfo) -> None:
        self.info = info
        self._worker = None
        self.detected.emit(info)
