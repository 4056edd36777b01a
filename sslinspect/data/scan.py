"""Recursive scan of image folders into the project's index; every unreadable file is recorded with its reason.

The scan never stops on a bad file. Unchanged readable files (same size and mtime) are not decoded again (files
that failed are retried: the pixel limit may have changed), rows are updated in place, and labels follow the image
content afterwards (:meth:`~sslinspect.store.ImageStore.reconcile_labels`), so labels survive rescans, moved or
renamed files and content duplicates.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import DataConfig
from sslinspect.data.frames import dominant_frame_size
from sslinspect.errors import Cancelled, ImageReadError
from sslinspect.events import Log, Progress, Reporter, null_reporter
from sslinspect.imageio import IMAGE_EXTENSIONS, extension_mismatch, read_image
from sslinspect.project import Project
from sslinspect.store import LabelChange

BATCH = 64
MAX_NOTES_REPORTED = 200  # Log events for notes; the full list is in ScanResult.notes


@dataclass(slots=True)
class ScanResult:
    """Outcome of a scan over all sources."""

    total: int = 0
    ok: int = 0  # readable files, content duplicates included
    unique: int = 0  # readable images less their duplicates: the images used (ImageStore.counts()["unique"])
    new: int = 0
    unchanged: int = 0
    missing: int = 0
    duplicates: int = 0
    relabelled: int = 0  # labels that followed their image content to another file
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), files and folders
    notes: list[tuple[str, str]] = field(default_factory=list)  # (path, note): readable but worth a look
    frame_size: tuple[int, int] | None = None  # the dominant (width, height): what the presets size the model from

    @property
    def failed(self) -> int:
        """Number of unreadable files and folders."""
        return len(self.errors)


def _outside(link: str, roots: Sequence[Path]) -> bool:
    """True when the symbolic link ``link`` leads out of every folder in ``roots`` (canonical paths)."""
    target = Path(os.path.realpath(link))  # never raises on a loop (Path.resolve does in 3.11)
    return not any(target == r or r in target.parents for r in roots)


def walk_images(
    root: Path, cfg: DataConfig, problems: list[tuple[str, str]], roots: Sequence[Path] = ()
) -> Iterator[Path]:
    """Yield image files below ``root`` in a stable order; folder problems go to ``problems``.

    Extensions are matched case-insensitively; hidden entries (``.name``, e.g. macOS ``._x.png`` resource forks)
    are skipped unless configured; folders are identified by device/inode, so a symbolic link loop is reported
    and a folder reached through two links is scanned once. A symbolic link (to a folder or a file) is followed
    only when it stays inside ``root``: a link into another of the folders the user gave (``roots``) is left to
    that folder's scan, and a link out of all of them (to ``/proc``, ``/``) is reported and skipped.
    """
    seen: dict[tuple[int, int], str] = {}
    allowed = [Path(root).resolve()] + [Path(r).resolve() for r in roots]

    def _walk(folder: Path, parents: frozenset[tuple[int, int]]) -> Iterator[Path]:
        where = display_path(folder)
        try:
            st = folder.stat()
        except OSError as exc:
            problems.append((where, f"folder unreadable ({exc.strerror or exc})"))
            return
        key = (st.st_dev, st.st_ino)
        if key in parents:
            problems.append((where, "symbolic link loop (points back to a parent folder; skipped)"))
            return
        if key in seen:
            problems.append((where, f"same folder as {seen[key]} (scanned once)"))
            return
        seen[key] = where
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            problems.append((where, f"folder unreadable ({exc.strerror or exc})"))
            return
        for e in entries:
            if e.name.startswith(".") and not cfg.include_hidden:
                continue
            try:
                is_image_name = Path(e.name).suffix.lower() in IMAGE_EXTENSIONS
                if not _utf8(e.name):
                    if is_image_name or e.is_dir():
                        problems.append((display_path(e.path), "name is not valid UTF-8 (rename it to scan it)"))
                    continue
                if e.is_symlink() and (e.is_dir() or is_image_name) and _outside(e.path, allowed[:1]):
                    if _outside(e.path, allowed):  # into another given folder: scanned there, once
                        problems.append((display_path(e.path), "symbolic link out of the image folders (skipped)"))
                    continue
                if e.is_dir(follow_symlinks=cfg.follow_symlinks):
                    yield from _walk(Path(e.path), parents | {key})
                elif is_image_name:
                    if e.is_symlink() and not Path(e.path).exists():
                        problems.append((e.path, "broken or looping symbolic link"))
                        continue
                    yield Path(e.path)
            except OSError as exc:
                problems.append((display_path(e.path), f"unreadable ({exc.strerror or exc})"))

    yield from _walk(Path(root), frozenset())


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in a POSIX file name (surrogate escapes)
        return False
    return True


def display_path(path: str | Path) -> str:
    """``path`` as printable text even when the file name holds bytes that are not UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
        "note": extension_mismatch(path, info.format),
        "status": "ok",
        "sha256": info.sha256,
        "width": info.width,
        "height": info.height,
        "channels": info.channels,
        "bit_depth": info.bit_depth,
        "format": info.format,
    }


def _find_changed(
    project: Project, cfg: DataConfig, result: ScanResult, problems: list[tuple[str, str]]
) -> list[tuple[Path, str, int, os.stat_result]]:
    """Walk every source folder: files new or changed since the last scan (to decode); counts the unchanged and
    marks the missing in ``result``; folders and files that cannot be read go to ``problems``."""
    store = project.store
    todo: list[tuple[Path, str, int, os.stat_result]] = []
    roots = [project.source_dir(src).resolve() for src in project.sources]  # links may only lead among these
    for src in project.sources:
        folder = project.source_dir(src)
        if not folder.is_dir():
            problems.append((str(folder), "image folder not found (moved or unplugged?)"))
            continue
        known = store.known_files(src.id)
        present: set[str] = set()
        for path in walk_images(folder, cfg, problems, roots):
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
            if old is not None and old[1] == st.st_size and old[2] == st.st_mtime_ns and old[3] == "ok":
                result.unchanged += 1
                continue
            result.new += old is None
            todo.append((path, rel, src.id, st))
        result.missing += store.mark_missing(
            src.id, [r for r, k in known.items() if r not in present and k[3] != "missing"]
        )

    return todo


def _decode(
    project: Project,
    cfg: DataConfig,
    todo: list[tuple[Path, str, int, os.stat_result]],
    result: ScanResult,
    *,
    report: Reporter,
    cancel: CancelToken,
    workers: int,
) -> None:
    """Decode ``todo`` in batches on a thread pool and write the rows; checks ``cancel`` between batches."""
    store = project.store
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
            for (path, *_), row in zip(chunk, rows, strict=True):
                note = row.pop("note", None)
                if note:
                    result.notes.append((str(path), str(note)))
            store.upsert_images(rows)
            done += len(chunk)
            rate = done / max(time.monotonic() - t0, 1e-6)
            report(Progress(stage="scan", step=done, total=total, message=f"{rate:.0f} files/s"))


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
    todo = _find_changed(project, cfg, result, problems)
    _decode(project, cfg, todo, result, report=report, cancel=cancel, workers=workers)
    result.duplicates = store.refresh_duplicates()
    changes = store.reconcile_labels()
    result.relabelled = sum(c.kind in ("moved", "merged") for c in changes)
    result.notes += _describe(project, store.duplicate_pairs(), changes)
    counts = store.counts()
    result.ok = counts["ok"]
    result.unique = counts["unique"]
    result.total = counts["ok"] + counts["error"]
    bad_files = [
        (str(project.image_path(r.source, r.relpath)), r.error or "unreadable")
        for r in store.images(status="error", unique=False)
    ]
    result.errors = problems + bad_files
    result.frame_size = dominant_frame_size(store.images())
    for where, reason in result.errors:
        report(Log(level="WARNING", message=f"{where}: {reason}"))
    for where, note in result.notes[:MAX_NOTES_REPORTED]:
        report(Log(level="INFO", message=f"{where}: {note}"))
    if len(result.notes) > MAX_NOTES_REPORTED:
        report(Log(level="INFO", message=f"... and {len(result.notes) - MAX_NOTES_REPORTED} more notes"))
    return result


def _describe(project: Project, duplicates: list[tuple[int, int]], changes: list[LabelChange]) -> list[tuple[str, str]]:
    """Notes for content duplicates and for labels that moved, merged, conflict or describe older content."""
    store = project.store
    paths: dict[int, str] = {}

    def path(image_id: int | None) -> str:
        if image_id is None:
            return "?"
        if image_id not in paths:
            rec = store.image(image_id)
            paths[image_id] = str(project.image_path(rec.source, rec.relpath)) if rec else f"image {image_id}"
        return paths[image_id]

    notes = [(path(dup), f"same content as {path(first)} (used and labelled once)") for dup, first in duplicates]
    for c in changes:
        if c.kind == "moved":
            notes.append((path(c.image_id), f"label {c.label!r} followed the image from {path(c.other_id)}"))
        elif c.kind == "merged":
            notes.append((path(c.image_id), f"label {c.label!r} moved here from its duplicate {path(c.other_id)}"))
        elif c.kind == "conflict":
            notes.append((path(c.other_id), f"labelled {c.label!r} but its identical original has another label"))
        else:
            notes.append((path(c.image_id), f"file changed since it was labelled {c.label!r}; check the label"))
    return notes
