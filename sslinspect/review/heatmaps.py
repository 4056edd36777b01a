"""Held-out anomaly heatmaps of a few-shot run, as overlays (Qt-free and torch-free: the GUI and the report use it).

``sslinspect fit`` stores each image's raw patch-distance map, computed held out (no image is compared with
itself), in ``maps.npy`` with the row order of ``embedding_ids.npy``; the head holds the normalisation calibrated on
good images (0 = typical good patch, 1 = the threshold). Nothing is recomputed here: reading a map is a memory-mapped
row, so the GUI can show heatmaps for thousands of images without a model.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sslinspect.fewshot.model import InspectionHead
from sslinspect.infer.output import overlay


class RunHeatmaps:
    """The stored anomaly maps of one few-shot run, by image id.

    Examples:
        >>> # heat = RunHeatmaps.open(project.latest("fewshot"))
        >>> # bgr = heat.overlay(image_id, rgb) if heat and heat.has(image_id) else None  # doctest: +SKIP
    """

    def __init__(self, maps: np.ndarray, ids: np.ndarray, head: InspectionHead) -> None:
        self._maps = maps
        self._row = {int(i): k for k, i in enumerate(ids.tolist())}
        self.head = head

    @classmethod
    def open(cls, run_dir: Path | None) -> RunHeatmaps | None:
        """The run's maps, or None when it stored none (an image-level model, or no run yet)."""
        if run_dir is None:
            return None
        paths = run_dir / "maps.npy", run_dir / "embedding_ids.npy", run_dir / "head.npz"
        if not all(p.is_file() for p in paths):
            return None
        maps = np.load(paths[0], mmap_mode="r", allow_pickle=False)
        ids = np.load(paths[1], allow_pickle=False)
        if maps.ndim != 3 or len(maps) != len(ids):
            return None
        return cls(maps, ids, InspectionHead.load(paths[2]))

    def __len__(self) -> int:
        return len(self._row)

    def has(self, image_id: int) -> bool:
        """True when the run stored a map for ``image_id``."""
        return int(image_id) in self._row

    def normalised(self, image_id: int) -> np.ndarray | None:
        """The map of ``image_id`` on the calibrated scale (0 typical good, 1 threshold), at its stored size."""
        k = self._row.get(int(image_id))
        return None if k is None else self.head.anomaly.normalise(np.asarray(self._maps[k], np.float32))

    def overlay(self, image_id: int, rgb: np.ndarray) -> np.ndarray | None:
        """``rgb`` with the heatmap of ``image_id`` blended on top, as RGB (None without a map)."""
        m = self.normalised(image_id)
        if m is None:
            return None
        return cv2.cvtColor(overlay(rgb, m), cv2.COLOR_BGR2RGB)
