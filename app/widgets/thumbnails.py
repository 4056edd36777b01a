"""Lazy, cached thumbnails: requested by the views as items become visible, decoded in one background worker.

Requests are served newest first (what the user scrolled to), from the project's decoded-image cache when it has a
large enough one, else by decoding the file with the core's image reader. Decoded thumbnails are kept in an LRU.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage, QPixmap
from superqt.utils import create_worker

from sslinspect.errors import ImageReadError
from sslinspect.review import read_image

PathFn = Callable[[Hashable], Path | None]
ArrayFn = Callable[[Hashable], np.ndarray | None]
TransformFn = Callable[[Hashable, np.ndarray], np.ndarray]


def to_qimage(rgb: np.ndarray, size: int) -> QImage:
    """``uint8`` RGB ``(H, W, 3)`` → a QImage fitting in ``size``×``size`` (aspect kept; owns its memory)."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ThumbnailProvider(QObject):
    """Thumbnails by key (image id or path), loaded lazily off the GUI thread.

    Args:
        size: Edge of the thumbnails in device pixels.
        capacity: How many thumbnails the LRU keeps.

    Signals:
        thumbnail_ready(object): the thumbnail of this key is now available from :meth:`get`.
    """

    thumbnail_ready = Signal(object)

    def __init__(self, size: int = 128, capacity: int = 4000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.size = size
        self.capacity = capacity
        self._cache: OrderedDict[Hashable, QPixmap] = OrderedDict()
        self._failed: set[Hashable] = set()
        self._queue: deque[Hashable] = deque()
        self._queued: set[Hashable] = set()
        self._lock = threading.Lock()
        self._worker: Any = None
        self._path_of: PathFn = lambda key: Path(str(key))
        self._array_of: ArrayFn = lambda key: None
        self._transform: TransformFn | None = None
        self._generation = 0

    def set_source(self, path_of: PathFn, array_of: ArrayFn | None = None) -> None:
        """Where images come from; clears the cache (a different project or folder)."""
        with self._lock:
            self._queue.clear()
            self._queued.clear()
            self._generation += 1
        self._path_of = path_of
        self._array_of = array_of or (lambda key: None)
        self._cache.clear()
        self._failed.clear()

    def set_transform(self, fn: TransformFn | None) -> None:
        """Change every image before it is shrunk (e.g. a heatmap overlay; None: as read); clears the cache."""
        with self._lock:
            self._queue.clear()
            self._queued.clear()
            self._generation += 1
        self._transform = fn
        self._cache.clear()
        self._failed.clear()

    def get(self, key: Hashable) -> QPixmap | None:
        """The cached thumbnail, or None after queueing a load (``thumbnail_ready`` follows)."""
        pm = self._cache.get(key)
        if pm is not None:
            self._cache.move_to_end(key)
            return pm
        if key not in self._failed:
            self._request(key)
        return None

    def failed(self, key: Hashable) -> bool:
        """True when the image of ``key`` could not be read."""
        return key in self._failed

    def load_now(self, key: Hashable) -> QImage | None:
        """Decode one thumbnail synchronously (hover previews of a few images)."""
        return self._load(key)[1]

    def _request(self, key: Hashable) -> None:
        with self._lock:
            if key in self._queued:
                self._queue.remove(key)
            self._queue.append(key)
            self._queued.add(key)
        if self._worker is None:
            self._start_worker()

    def _start_worker(self) -> None:
        worker = create_worker(
            self._drain,
            self._generation,
            _start_thread=False,
            _connect={"yielded": self._on_worker_yielded, "finished": self._on_worker_finished},
        )
        self._worker = worker
        worker.start()

    def _drain(self, generation: int) -> Iterator[tuple[int, Hashable, QImage | None]]:
        while True:
            with self._lock:
                if not self._queue or generation != self._generation:
                    return
                key = self._queue.pop()  # newest request first: what is on screen now
                self._queued.discard(key)
            yield (generation, *self._load(key))

    def _load(self, key: Hashable) -> tuple[Hashable, QImage | None]:
        try:
            arr = self._array_of(key)
            if arr is None:
                path = self._path_of(key)
                if path is None:
                    return key, None
                arr, _ = read_image(path)
            transform = self._transform
            if transform is not None:
                arr = transform(key, np.asarray(arr))
            return key, to_qimage(np.asarray(arr), self.size)
        except (ImageReadError, OSError, ValueError, cv2.error):
            return key, None

    def _on_worker_yielded(self, item: tuple[int, Hashable, QImage | None]) -> None:
        generation, key, image = item
        if generation != self._generation:
            return
        if image is None:
            self._failed.add(key)
        else:
            self._cache[key] = QPixmap.fromImage(image)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        self.thumbnail_ready.emit(key)

    def _on_worker_finished(self) -> None:
        self._worker = None
        with self._lock:
            more = bool(self._queue)
        if more:
            self._start_worker()

    def shutdown(self, msecs: int = 3000) -> None:
        """Drop pending requests and wait for the loader thread (app exit, tests)."""
        with self._lock:
            self._queue.clear()
            self._queued.clear()
            self._generation += 1
        if self._worker is not None:
            self._worker.quit()
            from PySide6.QtCore import QThreadPool

            QThreadPool.globalInstance().waitForDone(msecs)
