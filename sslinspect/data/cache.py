"""Decode each image once into a ``uint8`` array cache on disk (a memory-mapped ``.npy``), per image size.

Pretraining, embedding and previews read batches from it instead of decoding files again. Entries are keyed by
image id and content hash, so a rebuild after a rescan only decodes new or changed images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.errors import Cancelled, DataError, ImageReadError
from sslinspect.events import Log, Progress, Reporter, null_reporter
from sslinspect.fsutil import atomic_path, atomic_write_json
from sslinspect.imageio import read_image, resize_square
from sslinspect.project import Project

CACHE_DIR = "cache"


@dataclass(frozen=True, slots=True)
class ImageCache:
    """A read-only view of the cache: ``images[i]`` is the ``(S, S, 3)`` uint8 image of ``ids[i]``."""

    images: np.ndarray
    ids: tuple[int, ...]
    size: int

    def __len__(self) -> int:
        """Number of cached images."""
        return len(self.ids)

    def index_of(self) -> dict[int, int]:
        """``image_id -> row``."""
        return {i: k for k, i in enumerate(self.ids)}


def _paths(project: Project, size: int) -> tuple[Path, Path]:
    d = project.root / CACHE_DIR
    return d / f"u8_{size}.npy", d / f"u8_{size}.json"


def build_cache(
    project: Project,
    size: int,
    *,
    max_pixels: int = 120_000_000,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
    workers: int = 0,
) -> ImageCache:
    """Return the cache of every readable, unique indexed image at ``size`` px, building what is missing.

    Raises:
        DataError: if the project has no readable images.
        Cancelled: when ``cancel`` fires (the old cache, if any, is left intact).
    """
    records = project.store.images(status="ok", unique=True)
    if not records:
        raise DataError(f"{project.root}: no readable images in the project (add a folder and scan it)")
    arr_path, idx_path = _paths(project, size)
    want = [(r.id, r.sha256 or "") for r in records]
    old_rows: dict[tuple[int, str], int] = {}
    old: np.ndarray | None = None
    if arr_path.exists() and idx_path.exists():
        try:
            meta = json.loads(idx_path.read_text(encoding="utf-8"))
            old = np.load(arr_path, mmap_mode="r")
            if old.shape[1:] == (size, size, 3) and len(meta["ids"]) == old.shape[0]:
                old_rows = {
                    (int(i), str(h)): k for k, (i, h) in enumerate(zip(meta["ids"], meta["sha256"], strict=True))
                }
                if [tuple(x) for x in zip(meta["ids"], meta["sha256"], strict=True)] == want:
                    return ImageCache(old, tuple(i for i, _ in want), size)
        except (OSError, ValueError, KeyError):
            old, old_rows = None, {}
    todo = [k for k, key in enumerate(want) if key not in old_rows]
    report(Progress(stage="cache", step=0, total=len(todo), message=f"decoding images at {size}px"))
    ok = np.ones(len(want), dtype=bool)
    with atomic_path(arr_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(want), size, size, 3))
        for k, key in enumerate(want):
            if key in old_rows and old is not None:
                out[k] = old[old_rows[key]]

        def _load(k: int) -> tuple[int, np.ndarray | None, str]:
            r = records[k]
            try:
                rgb, _ = read_image(project.image_path(r.source, r.relpath), max_pixels=max_pixels)
            except ImageReadError as exc:
                return k, None, str(exc)
            return k, resize_square(rgb, size), ""

        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
            for n, (k, img, err) in enumerate(pool.map(_load, todo), 1):
                if img is None:
                    ok[k] = False
                    report(Log(level="WARNING", message=f"{err} (skipped; rescan the project)"))
                else:
                    out[k] = img
                if n % 64 == 0 or n == len(todo):
                    if cancel.is_cancelled():
                        raise Cancelled("image cache build cancelled")
                    report(Progress(stage="cache", step=n, total=len(todo), message=f"decoding images at {size}px"))
        if not ok.all():
            kept = np.flatnonzero(ok)
            compact = np.array(out[kept])
            del out
            with tmp.open("wb") as fh:
                np.save(fh, compact)
        else:
            out.flush()
            del out
    ids = [i for (i, _), good in zip(want, ok, strict=True) if good]
    hashes = [h for (_, h), good in zip(want, ok, strict=True) if good]
    atomic_write_json(idx_path, {"size": size, "ids": ids, "sha256": hashes})
    if not ids:
        raise DataError(f"{project.root}: no image could be decoded")
    return ImageCache(np.load(arr_path, mmap_mode="r"), tuple(ids), size)


def load_rows(project: Project, cache: ImageCache, image_ids: Sequence[int]) -> np.ndarray:
    """Images for ``image_ids`` as ``(N, S, S, 3)`` uint8, from the cache when present, else decoded now."""
    index = cache.index_of()
    out = np.empty((len(image_ids), cache.size, cache.size, 3), dtype=np.uint8)
    for k, i in enumerate(image_ids):
        if i in index:
            out[k] = cache.images[index[i]]
        else:
            rec = project.store.image(i)
            if rec is None:
                raise DataError(f"image id {i} is not in the project index")
            rgb, _ = read_image(project.image_path(rec.source, rec.relpath))
            out[k] = resize_square(rgb, cache.size)
    return out
