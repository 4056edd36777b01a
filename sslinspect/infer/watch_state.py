"""The watcher's record of scored frames (SQLite beside the output) and the lock that serialises watchers.

A frame is identified by its canonical path and the file's (device, inode, size, mtime): a new frame renamed into
place under a name already scored is a new frame; the same file seen through ``cam`` and ``/abs/cam`` is one. Every
scored frame is a row (history is kept, so the output can be rebuilt); ``meta`` remembers how many rows and bytes
the output holds, so after a kill the output is cut back to the last recorded size and the missing rows are
appended, exactly once. Two watchers on one output take turns under :meth:`WatchState.lock`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sslinspect.fsutil import file_lock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    line TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS frames_path ON frames (path, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: ``dev``/``ino`` of rows migrated from the first state format (path, size, mtime only).
LEGACY = -1


@dataclass(frozen=True, slots=True)
class Identity:
    """What makes a file the same frame: (device, inode, size, modification time)."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> Identity | None:
        """The identity of the file at ``path`` now (None if it is gone)."""
        try:
            st = Path(path).stat()
        except OSError:
            return None
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def same(self, other: Identity) -> bool:
        """True for the same frame (a legacy record knows only size and mtime)."""
        if LEGACY in (self.dev, other.dev):
            return (self.size, self.mtime_ns) == (other.size, other.mtime_ns)
        return self == other


@dataclass(frozen=True, slots=True)
class FrameRow:
    """One scored (or finally failed) frame."""

    path: str
    ident: Identity
    status: str  # "ok" or "failed"
    error: str = ""
    line: str = ""  # what it adds to the output ('' for a failed frame in a CSV)


def state_path(out: Path) -> Path:
    """Where the watch state of output ``out`` lives."""
    return Path(out).with_name(Path(out).name + ".watch.sqlite")


class WatchState:
    """The SQLite record of processed frames and of how far the output file has been written."""

    def __init__(self, path: Path) -> None:
        """Open (or create, or migrate) the state database at ``path``."""
        self.path = Path(path)
        self.con = sqlite3.connect(self.path, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=FULL")
        self.con.execute("PRAGMA busy_timeout=60000")
        self._latest: dict[str, tuple[Identity, str]] = {}
        self._ids: set[Identity] = set()
        self._seen = 0
        with self.lock():
            self.con.executescript(_SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        """Bring rows of the first format (``processed``: one row per path as typed) over, ids kept."""
        old = self.con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='processed'").fetchone()
        if not old:
            return
        rows = self.con.execute("SELECT id, path, size, mtime_ns, status, error, line, at FROM processed").fetchall()
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            self.con.executemany(
                "INSERT INTO frames (id, path, dev, ino, size, mtime_ns, status, error, line, at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(r[0], str(Path(r[1]).resolve()), LEGACY, LEGACY, *r[2:]) for r in rows],
            )
            self.con.execute("DROP TABLE processed")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the cross-process lock of this state and its output (watchers on one output take turns)."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            yield

    def close(self) -> None:
        """Close the database."""
        self.con.close()

    def known(self) -> tuple[dict[str, tuple[Identity, str]], set[Identity]]:
        """``path → (identity, status)`` of the latest frame at each path, and every identity ever recorded.

        Rows are only ever appended, so each call reads just the rows added since the previous one (by this or
        another watcher).
        """
        rows = self.con.execute(
            "SELECT id, path, dev, ino, size, mtime_ns, status FROM frames WHERE id > ? ORDER BY id", (self._seen,)
        ).fetchall()
        for rid, path, dev, ino, size, mtime, status in rows:
            ident = Identity(dev, ino, size, mtime)
            self._latest[path] = (ident, status)
            if dev != LEGACY:
                self._ids.add(ident)
            self._seen = rid
        return self._latest, self._ids

    def record(self, rows: list[FrameRow]) -> None:
        """Record frames in one transaction."""
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            self.con.executemany(
                "INSERT INTO frames (path, dev, ino, size, mtime_ns, status, error, line, at) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (r.path, r.ident.dev, r.ident.ino, r.ident.size, r.ident.mtime_ns, r.status, r.error, r.line, now)
                    for r in rows
                ],
            )

    def _meta(self, key: str, default: int) -> int:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    def sync_output(self, out: Path, header: str) -> int:
        """Append the recorded result lines that ``out`` lacks (exactly once); returns how many were added."""
        size, upto = self._meta("out_bytes", 0), self._meta("out_upto", 0)
        new = self.con.execute(
            "SELECT id, line FROM frames WHERE id > ? AND line != '' ORDER BY id", (upto,)
        ).fetchall()
        exists = out.exists()
        if exists and out.stat().st_size < size:  # the output was replaced or cut by hand: start it again
            size, upto, exists = 0, 0, False
            new = self.con.execute("SELECT id, line FROM frames WHERE line != '' ORDER BY id").fetchall()
        if not new and exists:
            return 0
        with out.open("r+b" if exists else "wb") as fh:
            fh.truncate(size)  # drop a tail written after the last recorded size (a kill mid-append)
            fh.seek(size)
            if size == 0 and header:
                fh.write(header.encode("utf-8"))
            for _, line in new:
                fh.write(line.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
            end = fh.tell()
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            last = new[-1][0] if new else upto
            self.con.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("out_bytes", str(end)), ("out_upto", str(last))],
            )
        return len(new)
