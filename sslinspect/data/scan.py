"""Recursive scan of image folders into the project's index; every unreadable file is recorded with its reason.

The scan never stops on a bad file. Unchanged files (same size and mtime) are not decoded again, and rows are
updated in place, so labels survive rescans.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import DataConfig
from sslinspect.errors import Cancelled, ImageReadError
from sslinspect.events import Log, Progress, Reporter, null_reporter
from sslinspect.imageio import IMAGE_EXTENSIONS, read_image
from sslinspect.project import Project

BATCH = 64


@dataclass(slots=True)
class ScanResult:
    """Outcome of a scan over all sources."""

    total: int = 0
    ok: int = 0
    new: int = 0
    unchanged: int = 0
    missing: int = 0
    duplicates: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), files and folders

    @property
    def failed(self) -> int:
        """Number of unreadable files and folders."""
        return len(self.errors)


def walk_images(root: Path, cfg: DataConfig, problems: list[tuple[str, str]]) -> Iterator[Path]:
    """Yield image files below ``root`` in a stable order; folder problems go to ``problems``.

    Extensions are matched case-insensitively; hidden entries are skipped unless configured; folder symlink loops
    are detected by device/inode.
    """
    seen: set[tuple[int, int]] = set()

    def _walk(folder: Path) -> Iterator[Path]:
        try:
            st = folder.stat()
        except OSError as exc:
            problems.append((str(folder), f"folder unreadable ({exc.strerror or exc})"))
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            problems.append((str(folder), "symbolic link loop (folder already scanned)"))
            return
        seen.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            problems.append((str(folder), f"folder unreadable ({exc.strerror or exc})"))
            return
        for e in entries:
            if e.name.startswith(".") and not cfg.include_hidden:
                continue
            try:
                is_link = e.is_symlink()
                if e.is_dir(follow_symlinks=cfg.follow_symlinks):
                    if is_link and not cfg.follow_symlinks:
                        continue
                    yield from _walk(Path(e.path))
                elif Path(e.name).suffix.lower() in IMAGE_EXTENSIONS:
                    if is_link and not Path(e.path).exists():
                        problems.append((e.path, "broken symbolic link"))
                        continue
                    yield Path(e.path)
            except OSError as exc:
                problems.append((e.path, f"unreadable ({exc.strerror or exc})"))

    yield from _walk(Path(root))


def _probe(path: Path, rel: str, source: int, st: os.stat_result, cfg: DataConfig) -> dict[str, object]:
    """Decode one file fully (the only reliable validity check) and describe it as an index row."""
    row: dict[str, object] = {"source": source, "relpath": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        _, info = read_image(path, max_pixels=cfg.max_pixels, max_bytes=int(cfg.max_file_mb * 2**20))
    except ImageReadError as exc:
        return {**row, "status": "error", "error": exc.reason}
    except MemoryError:
        return {**row, "status": "error", "error": "out of memory while decoding"}
    return {
        **row,
        "status": "ok",
        "sha256": info.sha256,
        "width": info.width,
        "height": info.height,
        "channels": info.channels,
        "bit_depth": info.bit_depth,
        "format": info.format,
    }


def scan_project(
    project: Project,
    cfg: DataConfig | None = None,
    *,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
    workers: int = 0,
) -> ScanResult:
    """Scan every source folder of ``project`` into its image index.

    Args:
        project: The open project.
        cfg: Scan limits; defaults when None.
        report: Receives ``Progress`` per batch and one ``Log`` per unreadable file.
        cancel: Checked between batches; what was scanned so far is kept.
        workers: Decoder threads (0 = number of CPUs, at most 8).

    Raises:
        Cancelled: when ``cancel`` fires; rows written so far stay.
    """
    cfg = cfg or DataConfig()
    store = project.store
    result = ScanResult()
    problems: list[tuple[str, str]] = []
    todo: list[tuple[Path, str, int, os.stat_result]] = []
    for src in project.sources:
        folder = project.source_dir(src)
        if not folder.is_dir():
            problems.append((str(folder), "image folder not found (moved or unplugged?)"))
            continue
        known = store.known_files(src.id)
        present: set[str] = set()
        for path in walk_images(folder, cfg, problems):
            rel = path.relative_to(folder).as_posix()
            present.add(rel)
            try:
                st = path.stat()
            except OSError as exc:
                problems.append((str(path), f"unreadable ({exc.strerror or exc})"))
                continue
            if not stat.S_ISREG(st.st_mode):
                problems.append((str(path), "not a regular file"))
                continue
            old = known.get(rel)
            if old is not None and old[1] == st.st_size and old[2] == st.st_mtime_ns and old[3] != "missing":
                result.unchanged += 1
                continue
            result.new += old is None
            todo.append((path, rel, src.id, st))
        result.missing += store.mark_missing(
            src.id, [r for r, k in known.items() if r not in present and k[3] != "missing"]
        )

    total = len(todo)
    report(Progress(stage="scan", step=0, total=total, message="decoding new or changed files"))
    n_workers = workers or min(8, os.cpu_count() or 1)
    done, t0 = 0, time.monotonic()
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="scan") as pool:
        for start in range(0, total, BATCH):
            if cancel.is_cancelled():
                raise Cancelled(f"scan cancelled after {done} of {total} files")
            chunk = todo[start : start + BATCH]
            rows = list(pool.map(lambda t: _probe(t[0], t[1], t[2], t[3], cfg), chunk))
            store.upsert_images(rows)
            done += len(chunk)
            rate = done / max(time.monotonic() - t0, 1e-6)
            report(Progress(stage="scan", step=done, total=total, message=f"{rate:.0f} files/s"))
    result.duplicates = store.refresh_duplicates()
    counts = store.counts()
    result.ok = counts["ok"]
    result.total = counts["ok"] + counts["error"]
    bad_files = [
        (str(project.image_path(r.source, r.relpath)), r.error or "unreadable")
        for r in store.images(status="error", unique=False)
    ]
    result.errors = problems + bad_files
    for where, reason in result.errors:
        report(Log(level="WARNING", message=f"{where}: {reason}"))
    return result
