"""The project's SQLite database: the image index and the labels (WAL, one short transaction per edit).

A label is committed the moment it is given (``synchronous=FULL``: it also survives a power cut); the GUI and a
worker process may both have the database open, and threads of one process share a connection under a lock.
Labels follow their image's content (SHA-256): a moved or renamed file keeps its label, and a content duplicate
is labelled once, on its original (the oldest copy, see :meth:`ImageStore.refresh_duplicates`).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sslinspect.errors import ProjectError

DB_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id          INTEGER PRIMARY KEY,
    source      INTEGER NOT NULL,
    relpath     TEXT NOT NULL,
    size        INTEGER NOT NULL DEFAULT 0,
    mtime_ns    INTEGER NOT NULL DEFAULT 0,
    sha256      TEXT,
    width       INTEGER,
    height      INTEGER,
    channels    INTEGER,
    bit_depth   INTEGER,
    format      TEXT,
    status      TEXT NOT NULL CHECK (status IN ('ok', 'error', 'missing')),
    error       TEXT,
    duplicate_of INTEGER,
    scanned_at  REAL NOT NULL,
    UNIQUE (source, relpath)
);
CREATE INDEX IF NOT EXISTS images_sha ON images(sha256);
CREATE INDEX IF NOT EXISTS images_status ON images(status);
CREATE TABLE IF NOT EXISTS labels (
    image_id    INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    sha256      TEXT,
    origin      TEXT NOT NULL DEFAULT 'user',
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_label ON labels(label);
"""


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One row of the image index."""

    id: int
    source: int
    relpath: str
    size: int
    mtime_ns: int
    sha256: str | None
    width: int | None
    height: int | None
    channels: int | None
    bit_depth: int | None
    format: str | None
    status: str
    error: str | None
    duplicate_of: int | None


_COLS = (
    "id, source, relpath, size, mtime_ns, sha256, width, height, channels, bit_depth, format, status, error, "
    "duplicate_of"
)


class ImageStore:
    """Thin typed wrapper over ``project.sqlite``."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database at ``path``.

        Raises:
            ProjectError: if the file is not a database of this product or of a newer schema.
        """
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self._con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ProjectError(f"{self.path}: cannot open the project database ({_why(exc, self.path)})") from exc
        try:
            self._con.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before set_label returns (NORMAL in WAL mode may lose the last commits
            # on a power cut); labels are single clicks, so the extra fsync is not noticed.
            self._con.execute("PRAGMA synchronous=FULL")
            self._con.execute("PRAGMA foreign_keys=ON")
            self._con.executescript(_SCHEMA)
            row = self._con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(DB_SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            self._con.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise ProjectError(f"{self.path}: cannot open the project database ({_why(exc, self.path)})") from exc
            raise ProjectError(f"{self.path}: not a usable project database ({exc})") from exc
        if row is not None and int(row[0]) > DB_SCHEMA_VERSION:
            raise ProjectError(
                f"{self.path}: database schema {row[0]} is newer than this SSL Inspect supports ({DB_SCHEMA_VERSION})"
            )

    def close(self) -> None:
        """Close the connection."""
        self._con.close()

    def _rows(self, sql: str, args: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        """Run one read under the lock (so it never sees another thread's open transaction)."""
        with self._lock:
            try:
                return self._con.execute(sql, tuple(args)).fetchall()
            except sqlite3.OperationalError as exc:
                raise ProjectError(f"{self.path}: cannot read ({_why(exc, self.path)})") from exc

    def _count(self, sql: str, args: Iterable[object] = ()) -> int:
        return int(self._rows(sql, args)[0][0])

    # -- images -------------------------------------------------------------------------------------------------
    def known_files(self, source: int) -> dict[str, tuple[int, int, int, str]]:
        """``relpath -> (id, size, mtime_ns, status)`` for one source (used by rescans to skip unchanged files)."""
        rows = self._rows("SELECT relpath, id, size, mtime_ns, status FROM images WHERE source=?", (source,))
        return {str(r[0]): (int(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in rows}

    def upsert_images(self, rows: Iterable[dict[str, object]]) -> None:
        """Insert or update image rows keyed by ``(source, relpath)``, in one transaction.

        Ids of existing rows are kept, so labels stay attached across rescans.
        """
        now = time.time()
        with self._tx():
            for r in rows:
                self._con.execute(
                    """INSERT INTO images (source, relpath, size, mtime_ns, sha256, width, height, channels,
                                           bit_depth, format, status, error, scanned_at)
                       VALUES (:source, :relpath, :size, :mtime_ns, :sha256, :width, :height, :channels,
                               :bit_depth, :format, :status, :error, :now)
                       ON CONFLICT(source, relpath) DO UPDATE SET
                           size=excluded.size, mtime_ns=excluded.mtime_ns, sha256=excluded.sha256,
                           width=excluded.width, height=excluded.height, channels=excluded.channels,
                           bit_depth=excluded.bit_depth, format=excluded.format, status=excluded.status,
                           error=excluded.error, scanned_at=excluded.scanned_at""",
                    {
                        "sha256": None,
                        "width": None,
                        "height": None,
                        "channels": None,
                        "bit_depth": None,
                        "format": None,
                        "error": None,
                        **r,
                        "now": now,
                    },
                )

    def mark_missing(self, source: int, relpaths: Iterable[str]) -> int:
        """Flag files that disappeared from disk; their rows (and labels) are kept. Returns how many."""
        n = 0
        with self._tx():
            for rel in relpaths:
                n += self._con.execute(
                    "UPDATE images SET status='missing', error='file not found' WHERE source=? AND relpath=?",
                    (source, rel),
                ).rowcount
        return n

    def refresh_duplicates(self) -> int:
        """Group readable images by content and point every copy but the original at it. Returns the count.

        The original (the copy that is kept, used and labelled) is, among images with the same SHA-256, the one
        with the oldest modification time (``cp`` gives a copy a new one); on a tie (Windows Explorer keeps the
        time) the one whose path does not look like a copy (:func:`looks_like_copy`: ``x - Copy.png``,
        ``x (1).png``, ``copy of x.png``, a ``backup`` folder), then the shortest path, then path order. Scan
        order plays no part: ``x (1).png`` sorts, and is scanned, before ``x.png``.
        """
        with self._tx():  # read and write in one transaction: a worker process may be scanning too
            rows = self._con.execute(
                "SELECT id, source, relpath, mtime_ns, sha256 FROM images WHERE status='ok' AND sha256 IN (SELECT "
                "sha256 FROM images WHERE status='ok' AND sha256 IS NOT NULL GROUP BY sha256 HAVING COUNT(*) > 1)"
            ).fetchall()
            groups: dict[str, list[tuple[int, int, str, int]]] = {}
            for image_id, source, relpath, mtime_ns, sha in rows:
                groups.setdefault(str(sha), []).append((int(image_id), int(source), str(relpath), int(mtime_ns)))
            pairs: list[tuple[int, int]] = []  # (original id, duplicate id)
            for copies in groups.values():
                copies.sort(key=lambda c: (c[3], looks_like_copy(c[2]), len(c[2]), c[2], c[1], c[0]))
                pairs += [(copies[0][0], dup[0]) for dup in copies[1:]]
            self._con.execute("UPDATE images SET duplicate_of=NULL WHERE duplicate_of IS NOT NULL")
            self._con.executemany("UPDATE images SET duplicate_of=? WHERE id=?", pairs)
        return len(pairs)

    def duplicate_pairs(self) -> list[tuple[int, int]]:
        """``(duplicate id, original id)`` for every content duplicate (see :meth:`refresh_duplicates`)."""
        rows = self._rows("SELECT id, duplicate_of FROM images WHERE duplicate_of IS NOT NULL ORDER BY id")
        return [(int(a), int(b)) for a, b in rows]

    def images(self, *, status: str | None = "ok", unique: bool = True, source: int | None = None) -> list[ImageRecord]:
        """Image rows ordered by id; ``unique`` drops content duplicates (keeps the original)."""
        where: list[str] = ["1=1"]
        args: list[object] = []
        if status is not None:
            where.append("status=?")
            args.append(status)
        if unique:
            where.append("duplicate_of IS NULL")
        if source is not None:
            where.append("source=?")
            args.append(source)
        sql = f"SELECT {_COLS} FROM images WHERE {' AND '.join(where)} ORDER BY id"
        return [ImageRecord(*r) for r in self._rows(sql, args)]

    def image(self, image_id: int) -> ImageRecord | None:
        """One row by id."""
        rows = self._rows(f"SELECT {_COLS} FROM images WHERE id=?", (image_id,))
        return ImageRecord(*rows[0]) if rows else None

    def find(self, source: int, relpath: str) -> ImageRecord | None:
        """One row by location."""
        rows = self._rows(f"SELECT {_COLS} FROM images WHERE source=? AND relpath=?", (source, relpath))
        return ImageRecord(*rows[0]) if rows else None

    def counts(self) -> dict[str, int]:
        """Number of images per status, plus ``duplicates``, ``unique`` and ``labelled``.

        ``unique`` (readable images less their content duplicates) is the one count of usable images: the scan
        line, the Images page's Statistics and the pretraining minimum all read it from here.
        """
        out = {"ok": 0, "error": 0, "missing": 0}
        for status, n in self._rows("SELECT status, COUNT(*) FROM images GROUP BY status"):
            out[str(status)] = int(n)
        out["duplicates"] = self._count("SELECT COUNT(*) FROM images WHERE duplicate_of IS NOT NULL")
        out["unique"] = self._count("SELECT COUNT(*) FROM images WHERE status='ok' AND duplicate_of IS NULL")
        out["labelled"] = self._count("SELECT COUNT(*) FROM labels")
        return out

    def delete_source(self, source: int) -> None:
        """Forget every image of one source (their labels go with them)."""
        with self._tx():
            self._con.execute("DELETE FROM images WHERE source=?", (source,))

    # -- labels -------------------------------------------------------------------------------------------------
    def set_label(self, image_id: int, label: str, *, origin: str = "user") -> None:
        """Label one image (replacing an earlier label); committed before returning.

        Raises:
            ProjectError: for an unknown image id, or when the database cannot be written (disk full, read-only).
        """
        self.set_labels([(image_id, label)], origin=origin)

    def set_labels(self, items: Iterable[tuple[int, str]], *, origin: str = "user") -> int:
        """Label several images in one transaction (all or none). Returns how many were written.

        A content duplicate is labelled on its original, so each image content carries one label.

        Raises:
            ProjectError: for an unknown image id, or when the database cannot be written (disk full, read-only).
        """
        now, n = time.time(), 0
        with self._tx():
            for image_id, label in items:
                row = self._con.execute(
                    "SELECT COALESCE(duplicate_of, id), sha256 FROM images WHERE id=?", (image_id,)
                ).fetchone()
                if row is None:
                    raise ProjectError(f"{self.path}: no image with id {image_id} to label")
                self._con.execute(
                    """INSERT INTO labels (image_id, label, sha256, origin, created_at) VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT(image_id) DO UPDATE SET label=excluded.label, sha256=excluded.sha256,
                                                           origin=excluded.origin, created_at=excluded.created_at""",
                    (row[0], label, row[1], origin, now),
                )
                n += 1
        return n

    def clear_label(self, image_id: int) -> None:
        """Remove the label of one image (of its original when it is a content duplicate)."""
        with self._tx():
            self._con.execute(
                "DELETE FROM labels WHERE image_id IN (SELECT COALESCE(duplicate_of, id) FROM images WHERE id=?)",
                (image_id,),
            )

    def labels(self) -> dict[int, str]:
        """``image_id -> label`` for every labelled image."""
        return {int(i): str(lab) for i, lab in self._rows("SELECT image_id, label FROM labels ORDER BY image_id")}

    def label_counts(self) -> dict[str, int]:
        """Number of labelled images per class."""
        rows = self._rows("SELECT label, COUNT(*) FROM labels GROUP BY label ORDER BY label")
        return {str(lab): int(n) for lab, n in rows}

    def rename_label(self, old: str, new: str) -> int:
        """Rename (or merge into) a class in one transaction. Returns the number of labels changed."""
        with self._tx():
            return int(self._con.execute("UPDATE labels SET label=? WHERE label=?", (new, old)).rowcount)

    def reconcile_labels(self) -> list[LabelChange]:
        """Make labels follow image content after a scan; returns what changed or needs a look.

        - ``moved``: the labelled file disappeared and an unlabelled readable file has the labelled content (the
          file was moved or renamed): the label moves to it.
        - ``merged``: the labelled image became a content duplicate: the label moves to the original (or is
          dropped when the original already has the same label).
        - ``conflict``: as ``merged``, but the original has another label; both are kept, the original's counts.
        - ``content_changed``: the labelled file now has different content; the label is kept.
        """
        changes: list[LabelChange] = []
        with self._tx():
            con = self._con
            gone = con.execute(
                """SELECT l.image_id, l.label, l.sha256 FROM labels l JOIN images i ON i.id = l.image_id
                   WHERE i.status = 'missing' AND l.sha256 IS NOT NULL ORDER BY l.image_id"""
            ).fetchall()
            for image_id, label, sha in gone:
                target = con.execute(
                    """SELECT i.id FROM images i LEFT JOIN labels l ON l.image_id = i.id
                       WHERE i.sha256 = ? AND i.status = 'ok' AND i.duplicate_of IS NULL AND l.image_id IS NULL""",
                    (sha,),
                ).fetchone()
                if target is not None:
                    con.execute("UPDATE labels SET image_id=? WHERE image_id=?", (target[0], image_id))
                    changes.append(LabelChange("moved", target[0], image_id, label))
            dups = con.execute(
                """SELECT l.image_id, l.label, i.duplicate_of FROM labels l JOIN images i ON i.id = l.image_id
                   WHERE i.duplicate_of IS NOT NULL ORDER BY l.image_id"""
            ).fetchall()
            for image_id, label, first in dups:
                row = con.execute("SELECT label FROM labels WHERE image_id=?", (first,)).fetchone()
                first_label = row[0] if row else None  # read now: an earlier duplicate may have moved its label
                if first_label is None:
                    con.execute("UPDATE labels SET image_id=? WHERE image_id=?", (first, image_id))
                    changes.append(LabelChange("merged", first, image_id, label))
                elif first_label == label:
                    con.execute("DELETE FROM labels WHERE image_id=?", (image_id,))
                    changes.append(LabelChange("merged", first, image_id, label))
                else:
                    changes.append(LabelChange("conflict", first, image_id, label))
        changed = self._rows(
            """SELECT l.image_id, l.label FROM labels l JOIN images i ON i.id = l.image_id
               WHERE i.status = 'ok' AND l.sha256 IS NOT NULL AND i.sha256 IS NOT l.sha256 ORDER BY l.image_id"""
        )
        changes += [LabelChange("content_changed", int(i), None, str(lab)) for i, lab in changed]
        return changes

    # -- helpers ------------------------------------------------------------------------------------------------
    def _tx(self) -> _Transaction:
        return _Transaction(self)

    def iter_ok_paths(self) -> Iterator[tuple[int, int, str]]:
        """``(id, source, relpath)`` of every readable, unique image."""
        rows = self._rows(
            "SELECT id, source, relpath FROM images WHERE status='ok' AND duplicate_of IS NULL ORDER BY id"
        )
        yield from ((int(i), int(s), str(r)) for i, s, r in rows)


@dataclass(frozen=True, slots=True)
class LabelChange:
    """What :meth:`ImageStore.reconcile_labels` did to one label (see there for the kinds)."""

    kind: str
    image_id: int  # where the label is now
    other_id: int | None  # where it was (moved/merged), or the duplicate's own id (conflict)
    label: str


# What file managers, browsers and people append to a copied file or folder: "x - Copy", "x - Copy (2)",
# "Copy of x", "Copy (2) of x" (Windows), "x copy", "x copy 2" (macOS), "x (1)" (browsers), "x_copy2", "x.bak", "x~".
_COPY_NAME = re.compile(
    r"(^copy( \(\d+\))? of )|( - copy( \(\d+\))?$)|( copy( \d+)?$)|( ?\(\d+\)$)|([ _.-](copy|bak|backup)\d*$)|(~$)",
    re.IGNORECASE,
)
_COPY_FOLDERS = frozenset({"copy", "copies", "backup", "backups", "bak", "duplicates"})


def looks_like_copy(relpath: str) -> bool:
    """True when the file name or one of its folders reads like a copy (``x - Copy.png``, ``backup/x.png``)."""
    parts = PurePosixPath(relpath.replace("\\", "/")).parts
    if not parts:
        return False
    folders, stem = parts[:-1], PurePosixPath(parts[-1]).stem
    return any(f.casefold() in _COPY_FOLDERS for f in folders) or any(_COPY_NAME.search(n) for n in (*folders, stem))


def _why(exc: sqlite3.Error, path: Path) -> str:
    """SQLite's message, with what it usually means for a user."""
    msg = str(exc)
    if "disk is full" in msg or ("disk I/O error" in msg and _free_bytes(path) < 2**20):
        return "the disk is full; free some space and try again"
    if "readonly" in msg or "read-only" in msg:
        return "the project folder is read-only"
    if "unable to open" in msg:
        return "the project folder is missing, read-only or not accessible"
    if "locked" in msg:
        return "the database is busy in another program; try again"
    return msg


def _free_bytes(path: Path) -> int:
    """Free space where ``path`` lives (SQLite reports a full disk while creating its WAL files as an I/O error)."""
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return 2**62


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection, under the store's lock.

    A write that SQLite refuses (disk full, read-only folder, I/O error) becomes a :class:`ProjectError`; the
    transaction is rolled back, so the database keeps its previous content.
    """

    def __init__(self, store: ImageStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._lock.acquire()
        try:
            self._store._con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._store._lock.release()
            raise ProjectError(f"{self._store.path}: cannot save ({_why(exc, self._store.path)})") from exc

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        con = self._store._con
        try:
            if exc_type is None:
                try:
                    con.execute("COMMIT")
                    return
                except sqlite3.Error as commit_exc:
                    exc_type, exc = type(commit_exc), commit_exc
            if con.in_transaction:
                con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise ProjectError(f"{self._store.path}: cannot save ({_why(exc, self._store.path)})") from exc
        finally:
            self._store._lock.release()
