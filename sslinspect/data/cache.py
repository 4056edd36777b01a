"""Decode each image once into a ``uint8`` array cache on disk (a memory-mapped ``.npy``), per image size.

Pretraining, embedding and previews read batches from it instead of decoding files again. Entries are keyed by
image id and content hash, so a rebuild after a rescan only decodes new or changed images.

Crash safety: the array and its index are two files, so they cannot be replaced together. Each build writes a new
array file with a fresh name (``u8_<size>-<token>.npy``), then atomically replaces the index (``u8_<size>.json``),
which names its array. A process killed in between leaves an unused array file (removed by the next build), never
an index that describes another array.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
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
STALE_AFTER_S = 3600.0


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


def _index_path(project: Project, size: int) -> Path:
    return project.root / CACHE_DIR / f"u8_{size}.json"


def _load_existing(project: Project, size: int) -> tuple[np.ndarray, list[int], list[str], str] | None:
    """The current cache at ``size`` (array, ids, hashes, array file name), or None if absent or inconsistent."""
    try:
        meta = json.loads(_index_path(project, size).read_text(encoding="utf-8"))
        name = str(meta["file"])
        if not re.fullmatch(rf"u8_{size}-[0-9a-f]{{16}}\.npy", name):  # the index is data: never follow a path
            return None
        arr = np.load(project.root / CACHE_DIR / name, mmap_mode="r")
        ids, hashes = [int(i) for i in meta["ids"]], [str(h) for h in meta["sha256"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if arr.shape != (len(ids), size, size, 3) or arr.dtype != np.uint8 or len(hashes) != len(ids):
        return None
    return arr, ids, hashes, name


def cached_sizes(project: Project) -> list[int]:
    """Image sizes (px) that have a cache on disk, smallest first."""
    found = (re.fullmatch(r"u8_(\d+)\.json", p.name) for p in (project.root / CACHE_DIR).glob("u8_*.json"))
    return sorted(int(m.group(1)) for m in found if m)


def open_cache(project: Project, size: int) -> ImageCache | None:
    """The cache at ``size`` px as it is on disk now, read-only, or None; never builds or changes anything.

    For readers such as the GUI's thumbnail grid: the index and the array file it names are read together (see
    the module docstring; never open ``u8_<size>*.npy`` files directly).
    """
    existing = _load_existing(project, size)
    if existing is None:
        return None
    images, ids, _, _ = existing
    return ImageCache(images, tuple(ids), size)


def _remove_stale_arrays(folder: Path, size: int, *, keep: str, replaced: str | None) -> None:
    """Delete the array this build replaced, and array files left by killed builds (older than an hour).

    Recent unreferenced arrays are left alone: another process may be between writing its array and its index.
    """
    cutoff = time.time() - STALE_AFTER_S
    for path in folder.glob(f"u8_{size}-*.npy"):
        if path.name == keep:
            continue
        with contextlib.suppress(OSError):  # gone already, or mapped by another process on Windows: next time
            if path.name == replaced or path.stat().st_mtime < cutoff:
                path.unlink()


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
    want = [(r.id, r.sha256 or "") for r in records]
    old_rows: dict[tuple[int, str], int] = {}
    old: np.ndarray | None = None
    old_name: str | None = None
    existing = _load_existing(project, size)
    if existing is not None:
        old, old_ids, old_hashes, old_name = existing
        if list(zip(old_ids, old_hashes, strict=True)) == want:
            return ImageCache(old, tuple(old_ids), size)
        old_rows = {key: k for k, key in enumerate(zip(old_ids, old_hashes, strict=True))}
    todo = [k for k, key in enumerate(want) if key not in old_rows]
    report(Progress(stage="cache", step=0, total=len(todo), message=f"decoding images at {size}px"))
    ok = np.ones(len(want), dtype=bool)
    folder = project.root / CACHE_DIR
    name = f"u8_{size}-{secrets.token_hex(8)}.npy"
    arr_path = folder / name
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
    if not ids:
        arr_path.unlink(missing_ok=True)
        raise DataError(f"{project.root}: no image could be decoded")
    cache = ImageCache(np.load(arr_path, mmap_mode="r"), tuple(ids), size)  # mapped before anyone may remove it
    atomic_write_json(_index_path(project, size), {"size": size, "file": name, "ids": ids, "sha256": hashes})
    del old
    _remove_stale_arrays(folder, size, keep=name, replaced=old_name)
    return cache
