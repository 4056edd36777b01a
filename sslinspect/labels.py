"""Importing label CSVs (``path,label``) into the project database, tolerant of what spreadsheets produce.

Accepted: a UTF-8 (with or without BOM), UTF-16 or Windows-1252 file; comma, semicolon or tab delimiters; an
optional header row. Paths are relative to the CSV's folder or absolute. Every rejected row is reported with its
line number and reason; the valid rows are imported in one transaction.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from sslinspect.errors import DataError, ProjectError
from sslinspect.project import Project, check_class_name

MAX_CSV_BYTES = 64 * 2**20
MAX_ROWS = 1_000_000


@dataclass(slots=True)
class LabelImportResult:
    """What an import did."""

    imported: int = 0
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)  # "labels.csv:12: unknown image 'x.png'"
    counts: dict[str, int] = field(default_factory=dict)  # labels per class in the project afterwards


def _decode(raw: bytes, path: Path) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{path}: not a text file in a known encoding (UTF-8, UTF-16, Windows-1252)")


def read_label_rows(path: Path) -> tuple[list[tuple[int, str, str]], list[str]]:
    """Parse a label CSV into ``(line, path, label)`` rows plus problem messages.

    Raises:
        DataError: if the file is missing, too large, binary, or has no usable rows structure.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CSV_BYTES:
            raise DataError(f"{path}: label file too large ({size / 2**20:.0f} MB > {MAX_CSV_BYTES / 2**20:.0f} MB)")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read label file ({exc.strerror or exc})") from None
    if b"\x00" in raw and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: binary data, not a CSV file")
    text = _decode(raw, path)
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delim = max((",", ";", "\t"), key=first.count) if first else ","
    rows: list[tuple[int, str, str]] = []
    problems: list[str] = []
    name = path.name
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    header_seen = False
    for rec in reader:
        line = reader.line_num
        if not rec or all(not c.strip() for c in rec):
            continue
        cells = [c.strip() for c in rec]
        if not header_seen:
            header_seen = True
            if [c.lower() for c in cells[:2]] in (
                ["path", "label"],
                ["file", "label"],
                ["filename", "label"],
                ["image", "label"],
            ):
                continue
        if len(rows) >= MAX_ROWS:
            problems.append(f"{name}:{line}: more than {MAX_ROWS:,} rows; the rest is ignored")
            break
        if len(cells) < 2:
            problems.append(f"{name}:{line}: expected 'path{delim}label', got {len(cells)} column(s)")
            continue
        if not cells[0]:
            problems.append(f"{name}:{line}: empty path")
            continue
        if not cells[1]:
            problems.append(f"{name}:{line}: empty label for {cells[0]!r}")
            continue
        rows.append((line, cells[0], cells[1]))
    return rows, problems


def import_labels(project: Project, csv_path: Path) -> LabelImportResult:
    """Import ``csv_path`` into ``project``: valid rows are labelled, the rest listed in ``problems``.

    A row naming a content duplicate labels the first copy (an image is labelled once). A path listed twice with
    different labels is a problem; the first label wins.

    Raises:
        DataError: if the file cannot be read at all.
    """
    csv_path = Path(csv_path)
    rows, problems = read_label_rows(csv_path)
    base = csv_path.resolve().parent
    index: dict[str, tuple[int, int | None]] = {}
    for rec in project.store.images(status=None, unique=False):
        full = os.path.normcase(os.path.normpath(project.image_path(rec.source, rec.relpath)))
        index[full] = (rec.id if rec.status == "ok" else -1, rec.duplicate_of)
    name = csv_path.name
    chosen: dict[int, tuple[int, str]] = {}
    new_classes: list[str] = []
    existing = project.store.labels()
    result = LabelImportResult()
    for line, p, label in rows:
        full = os.path.normcase(os.path.normpath(p if Path(p).is_absolute() else base / p))
        hit = index.get(full)
        if hit is None:
            problems.append(f"{name}:{line}: unknown image {p!r} (not in the project's scanned folders)")
            continue
        image_id, dup_of = hit
        if image_id < 0:
            problems.append(f"{name}:{line}: image {p!r} is unreadable and cannot be labelled")
            continue
        image_id = dup_of or image_id
        try:
            label = check_class_name(label)
        except ProjectError as exc:
            problems.append(f"{name}:{line}: {exc}")
            continue
        if image_id in chosen:
            if chosen[image_id][1] != label:
                problems.append(
                    f"{name}:{line}: {p!r} already labelled {chosen[image_id][1]!r} on line "
                    f"{chosen[image_id][0]}; {label!r} ignored"
                )
            continue
        chosen[image_id] = (line, label)
        if label not in project.classes and label not in new_classes:
            new_classes.append(label)
    if new_classes:
        project.add_classes(new_classes)
    todo = [(i, lab) for i, (_, lab) in chosen.items() if existing.get(i) != lab]
    result.unchanged = len(chosen) - len(todo)
    result.imported = project.store.set_labels(todo, origin=f"import:{name}")
    result.problems = problems
    result.counts = project.store.label_counts()
    return result
