"""The project's SQLite database: the image index and the labels (WAL, one short transaction per edit).

A label is committed the moment it is given, so it survives a killed process; the GUI and a worker process may
both have the database open.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

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
        try:
            self._con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.execute("PRAGMA foreign_keys=ON")
            self._con.executescript(_SCHEMA)
            row = self._con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ProjectError(f"{self.path}: not a usable project database ({exc})") from exc
        if row is None:
            self._con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(DB_SCHEMA_VERSION),))
        elif int(row[0]) > DB_SCHEMA_VERSION:
            raise ProjectError(
                f"{self.path}: database schema {row[0]} is newer than this SSL Inspect supports ({DB_SCHEMA_VERSION})"
            )

    def close(self) -> None:
        """Close the connection."""
        self._con.close()

    # -- images -------------------------------------------------------------------------------------------------
    def known_files(self, source: int) -> dict[str, tuple[int, int, int, str]]:
        """``relpath -> (id, size, mtime_ns, status)`` for one source (used by rescans to skip unchanged files)."""
        rows = self._con.execute("SELECT relpath, id, size, mtime_ns, status FROM images WHERE source=?", (source,))
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

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
        """Point every readable image whose content equals an earlier one at that first copy. Returns the count."""
        with self._tx():
            self._con.execute("UPDATE images SET duplicate_of=NULL")
            self._con.execute(
                """UPDATE images SET duplicate_of = (
                       SELECT MIN(o.id) FROM images o WHERE o.sha256 = images.sha256 AND o.status='ok')
                   WHERE status='ok' AND sha256 IS NOT NULL AND id > (
                       SELECT MIN(o.id) FROM images o WHERE o.sha256 = images.sha256 AND o.status='ok')"""
            )
        return int(self._con.execute("SELECT COUNT(*) FROM images WHERE duplicate_of IS NOT NULL").fetchone()[0])

    def images(self, *, status: str | None = "ok", unique: bool = True, source: int | None = None) -> list[ImageRecord]:
        """Image rows ordered by id; ``unique`` drops content duplicates (keeps the first copy)."""
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
        return [ImageRecord(*r) for r in self._con.execute(sql, args)]

    def image(self, image_id: int) -> ImageRecord | None:
        """One row by id."""
        r = self._con.execute(f"SELECT {_COLS} FROM images WHERE id=?", (image_id,)).fetchone()
        return ImageRecord(*r) if r else None

    def find(self, source: int, relpath: str) -> ImageRecord | None:
        """One row by location."""
        r = self._con.execute(f"SELECT {_COLS} FROM images WHERE source=? AND relpath=?", (source, relpath)).fetchone()
        return ImageRecord(*r) if r else None

    def counts(self) -> dict[str, int]:
        """Number of images per status, plus ``duplicates`` and ``labelled``."""
        out = {"ok": 0, "error": 0, "missing": 0}
        for status, n in self._con.execute("SELECT status, COUNT(*) FROM images GROUP BY status"):
            out[status] = n
        out["duplicates"] = int(
            self._con.execute("SELECT COUNT(*) FROM images WHERE duplicate_of IS NOT NULL").fetchone()[0]
        )
        out["labelled"] = int(self._con.execute("SELECT COUNT(*) FROM labels").fetchone()[0])
        return out

    def delete_source(self, source: int) -> None:
        """Forget every image of one source (their labels go with them)."""
        with self._tx():
            self._con.execute("DELETE FROM images WHERE source=?", (source,))

    # -- labels -------------------------------------------------------------------------------------------------
    def set_label(self, image_id: int, label: str, *, origin: str = "user") -> None:
        """Label one image (replacing an earlier label); committed before returning."""
        self.set_labels([(image_id, label)], origin=origin)

    def set_labels(self, items: Iterable[tuple[int, str]], *, origin: str = "user") -> int:
        """Label several images in one transaction. Returns how many were written."""
        now, n = time.time(), 0
        with self._tx():
            for image_id, label in items:
                self._con.execute(
                    """INSERT INTO labels (image_id, label, sha256, origin, created_at)
                       VALUES (?, ?, (SELECT sha256 FROM images WHERE id=?), ?, ?)
                       ON CONFLICT(image_id) DO UPDATE SET label=excluded.label, origin=excluded.origin,
                                                           created_at=excluded.created_at""",
                    (image_id, label, image_id, origin, now),
                )
                n += 1
        return n

    def clear_label(self, image_id: int) -> None:
        """Remove the label of one image."""
        with self._tx():
            self._con.execute("DELETE FROM labels WHERE image_id=?", (image_id,))

    def labels(self) -> dict[int, str]:
        """``image_id -> label`` for every labelled image."""
        return dict(self._con.execute("SELECT image_id, label FROM labels ORDER BY image_id"))

    def label_counts(self) -> dict[str, int]:
        """Number of labelled images per class."""
        return dict(self._con.execute("SELECT label, COUNT(*) FROM labels GROUP BY label ORDER BY label"))

    def rename_label(self, old: str, new: str) -> int:
        """Rename (or merge into) a class in one transaction. Returns the number of labels changed."""
        with self._tx():
            return int(self._con.execute("UPDATE labels SET label=? WHERE label=?", (new, old)).rowcount)

    # -- helpers ------------------------------------------------------------------------------------------------
    def _tx(self) -> _Transaction:
        return _Transaction(self._con)

    def iter_ok_paths(self) -> Iterator[tuple[int, int, str]]:
        """``(id, source, relpath)`` of every readable, unique image."""
        yield from self._con.execute(
            "SELECT id, source, relpath FROM images WHERE status='ok' AND duplicate_of IS NULL ORDER BY id"
        )


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    def __enter__(self) -> None:
        self._con.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._con.execute("ROLLBACK" if exc_type else "COMMIT")
