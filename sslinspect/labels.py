"""Importing label CSVs (``path,label``) into the project database, tolerant of what spreadsheets produce.

Accepted: a UTF-8 (with or without BOM), UTF-16/32 (with BOM) or Windows-1252 file; comma, semicolon or tab
delimiters; an optional header row; extra columns are ignored. Paths are absolute, relative to the CSV's folder, or
relative to one of the project's image folders; Windows ``\\`` separators work everywhere. Labels match existing
classes case-insensitively (``Good`` is ``good``). Every rejected row is reported with its line number and reason;
the valid rows are imported in one transaction.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from sslinspect.errors import DataError, ProjectError
from sslinspect.imageio import IMAGE_EXTENSIONS
from sslinspect.project import Project, check_class_name
from sslinspect.safeio import FileRefused, read_bounded

MAX_CSV_BYTES = 64 * 2**20
MAX_ROWS = 1_000_000
_PATH_HEADERS = {"path", "file", "filename", "file name", "filepath", "image", "image_path", "name"}
_LABEL_HEADERS = {"label", "class", "defect", "category", "class_name", "label_name"}


@dataclass(slots=True)
class LabelImportResult:
    """What an import did."""

    imported: int = 0
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)  # "labels.csv:12: unknown image 'x.png'"
    counts: dict[str, int] = field(default_factory=dict)  # labels per class in the project afterwards


def _decode(raw: bytes, path: Path) -> str:
    if raw.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return raw.decode("utf-32")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{path}: not a text file in a known encoding (UTF-8, UTF-16, Windows-1252)")


def _delimiter(text: str) -> str:
    """The delimiter (``,`` ``;`` or tab) that splits the first rows into two or more columns most consistently.

    Parsing (rather than counting characters) respects quoting: ``"a;b",good`` is comma-separated.
    """
    head = "\n".join(text[: 1 << 16].splitlines()[:50])

    def score(delim: str) -> tuple[int, int, int]:
        rows = [r for r in csv.reader(io.StringIO(head, newline=""), delimiter=delim) if any(c.strip() for c in r)]
        widths = [len(r) for r in rows]
        multi = sum(w >= 2 for w in widths)
        # a tie (e.g. `a,b.png;good` without a header) goes to the split whose first column names image files
        paths = sum(Path(r[0].strip()).suffix.lower() in IMAGE_EXTENSIONS for r in rows if len(r) >= 2)
        return multi, max((widths.count(w) for w in set(widths) if w >= 2), default=0), paths

    return max((",", ";", "\t"), key=score)  # remaining ties go to the first: comma


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
        raw = read_bounded(path, MAX_CSV_BYTES)  # a FIFO or device has no size to check: refused
    except FileRefused as exc:
        raise DataError(f"{path}: cannot read label file ({exc.reason})") from None
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read label file ({exc.strerror or exc})") from None
    if b"\x00" in raw and not raw.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        raise DataError(f"{path}: binary data, not a CSV file")
    try:
        text = _decode(raw, path)
    except UnicodeDecodeError as exc:  # a BOM followed by invalid data
        raise DataError(f"{path}: not a text file in a known encoding ({exc.reason})") from None
    delim = _delimiter(text)
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
            if len(cells) >= 2 and cells[0].lower() in _PATH_HEADERS and cells[1].lower() in _LABEL_HEADERS:
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


def _line_of(message: str, name: str) -> int:
    """The line number of a ``name:line: ...`` problem message."""
    head = message[len(name) + 1 :].split(":", 1)[0]
    return int(head) if head.isdigit() else 0


class _PathIndex:
    """Finds an indexed image from a path written in a CSV: absolute, CSV-relative or source-relative."""

    def __init__(self, project: Project, csv_dir: Path) -> None:
        self._csv_dir = csv_dir
        self._sources = [project.source_dir(s) for s in project.sources]
        # normalised full path -> (image id, status, original's id when a duplicate)
        self._by_path: dict[str, tuple[int, str, int | None]] = {}
        for rec in project.store.images(status=None, unique=False):
            key = self._key(project.image_path(rec.source, rec.relpath))
            self._by_path[key] = (rec.id, rec.status, rec.duplicate_of)

    @staticmethod
    def _key(path: Path | str) -> str:
        return os.path.normcase(os.path.normpath(path))

    def find(self, written: str) -> tuple[int, str, int | None] | None:
        text = written.replace("\\", "/") if os.sep == "/" else written
        p = Path(text)
        if p.is_absolute():
            return self._by_path.get(self._key(p))
        hit = self._by_path.get(self._key(self._csv_dir / p))
        if hit is not None:
            return hit
        hits = {h for h in (self._by_path.get(self._key(src / p)) for src in self._sources) if h is not None}
        return hits.pop() if len(hits) == 1 else None


def import_labels(project: Project, csv_path: Path) -> LabelImportResult:
    """Import ``csv_path`` into ``project``: valid rows are labelled, the rest listed in ``problems``.

    A row naming a content duplicate labels its original (an image is labelled once). A path listed twice with
    different labels is a problem; the first label wins.

    Raises:
        DataError: if the file cannot be read at all.
        ProjectError: if the labels cannot be saved (disk full, read-only project folder).
    """
    csv_path = Path(csv_path)
    rows, problems = read_label_rows(csv_path)
    index = _PathIndex(project, csv_path.resolve().parent)
    name = csv_path.name
    chosen: dict[int, tuple[int, str]] = {}
    known = project.classes
    classes = {c.casefold(): c for c in known}  # existing spelling wins: "Good" is "good"
    new_classes: list[str] = []
    existing = project.store.labels()
    result = LabelImportResult()
    for line, p, written_label in rows:
        hit = index.find(p)
        if hit is None:
            problems.append(f"{name}:{line}: unknown image {p!r} (not in the project's scanned folders)")
            continue
        image_id, status, dup_of = hit
        if status != "ok":
            why = "is missing on disk" if status == "missing" else "is unreadable"
            problems.append(f"{name}:{line}: image {p!r} {why} and cannot be labelled")
            continue
        image_id = dup_of or image_id
        try:
            label = check_class_name(written_label, classes.values())  # NFC; look-alikes of a class refused
        except ProjectError as exc:
            problems.append(f"{name}:{line}: {exc}")
            continue
        label = classes.setdefault(label.casefold(), label)
        if image_id in chosen:
            if chosen[image_id][1] != label:
                problems.append(
                    f"{name}:{line}: {p!r} already labelled {chosen[image_id][1]!r} on line "
                    f"{chosen[image_id][0]}; {label!r} ignored"
                )
            continue
        chosen[image_id] = (line, label)
        if label not in new_classes and label not in known:
            new_classes.append(label)
    if new_classes:
        project.add_classes(new_classes)
    todo = [(i, lab) for i, (_, lab) in chosen.items() if existing.get(i) != lab]
    result.unchanged = len(chosen) - len(todo)
    result.imported = project.store.set_labels(todo, origin=f"import:{name}")
    result.problems = sorted(problems, key=lambda m: _line_of(m, name))  # file order, as the user reads it
    result.counts = project.store.label_counts()
    return result
