"""Watch a folder the line camera writes to: score each new image once, across restarts, never twice.

The state lives in SQLite next to the output (``<out>.watch.sqlite``): one row per processed file with its size,
modification time and result line, committed per batch. The output file is then brought up to date from the
state, exactly once: the state remembers how many rows and bytes the output holds, so after a kill the output is
cut back to the last recorded size and the missing rows are appended. A file is taken only when its size and
modification time stayed the same over two polls (the camera has finished writing). A frame that cannot be read
is recorded as failed and skipped; it is tried again only if the file changes.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.events import Log, Progress, Reporter, null_reporter
from sslinspect.infer.onnx_predictor import Prediction, Predictor, expand_inputs
from sslinspect.infer.output import csv_header, csv_row, format_for, json_record, write_heatmap
from sslinspect.infer.target import check_folder, check_target

_SCHEMA = """
CREATE TABLE IF NOT EXISTS processed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    line TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def state_path(out: Path) -> Path:
    """Where the watch state of output ``out`` lives."""
    return Path(out).with_name(Path(out).name + ".watch.sqlite")


@dataclass(slots=True)
class WatchResult:
    """What one watch session did (files handled in earlier sessions are not counted)."""

    processed: int = 0
    defects: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    out: str = ""
    state: str = ""
    provider: str = ""
    skipped_known: int = 0


class WatchState:
    """The SQLite record of processed files and of how far the output file has been written."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the state database at ``path``."""
        self.path = Path(path)
        self.con = sqlite3.connect(self.path, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=FULL")
        self.con.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self.con.close()

    def known(self) -> dict[str, tuple[int, int, str]]:
        """``path → (size, mtime_ns, status)`` of every recorded file."""
        rows = self.con.execute("SELECT path, size, mtime_ns, status FROM processed")
        return {p: (s, m, st) for p, s, m, st in rows}

    def record(self, rows: list[tuple[str, int, int, str, str, str]]) -> None:
        """Record ``(path, size, mtime_ns, status, error, line)`` rows in one transaction."""
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            for path, size, mtime, status, error, line in rows:
                self.con.execute("DELETE FROM processed WHERE path = ?", (path,))  # a changed failed frame
                self.con.execute(
                    "INSERT INTO processed (path, size, mtime_ns, status, error, line, at) VALUES (?,?,?,?,?,?,?)",
                    (path, size, mtime, status, error, line, now),
                )

    def _meta(self, key: str, default: int) -> int:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    def sync_output(self, out: Path, header: str) -> int:
        """Append the recorded result lines that ``out`` lacks (exactly once); returns how many were added."""
        size, upto = self._meta("out_bytes", 0), self._meta("out_upto", 0)
        new = self.con.execute(
            "SELECT id, line FROM processed WHERE id > ? AND line != '' ORDER BY id", (upto,)
        ).fetchall()
        exists = out.exists()
        if exists and out.stat().st_size < size:  # the output was replaced or cut by hand: start it again
            size, upto, exists = 0, 0, False
            new = self.con.execute("SELECT id, line FROM processed WHERE line != '' ORDER BY id").fetchall()
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


def _line(p: Prediction, kind: str, classes: tuple[str, ...], heatmap: str | None) -> str:
    if kind == "jsonl":
        return json_record(p, classes, heatmap) + "\n"
    buf = io.StringIO()
    csv.writer(buf).writerow(csv_row(p, len(classes)))
    return buf.getvalue()


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return 0, 0
    return st.st_size, st.st_mtime_ns


def _ready(folder: Path, known: dict[str, tuple[int, int, str]], pending: dict[str, tuple[int, int]]) -> list[Path]:
    """Files that are new (or changed after failing) and stood still since the previous poll."""
    ready: list[Path] = []
    seen: set[str] = set()
    for path in expand_inputs([folder]) if folder.is_dir() else []:
        key = str(path)
        seen.add(key)
        try:
            st = path.stat()
        except OSError:  # deleted between listing and stat
            continue
        stamp = (st.st_size, st.st_mtime_ns)
        prev = known.get(key)
        if prev is not None and (prev[2] == "ok" or prev[:2] == stamp):
            continue
        if pending.get(key) == stamp and st.st_size > 0:
            ready.append(path)
            pending.pop(key, None)
        else:
            pending[key] = stamp
    for gone in set(pending) - seen:
        pending.pop(gone, None)
    return ready


def run_watch(
    predictor: Predictor,
    folder: Path,
    out: Path,
    *,
    batch_size: int = 16,
    fmt: str | None = None,
    heatmaps: Path | None = None,
    poll_s: float = 1.0,
    idle_exit_s: float = 0.0,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> WatchResult:
    """Score new images in ``folder`` as they arrive, appending to ``out``, until cancelled.

    Args:
        predictor: The loaded model.
        folder: Folder to watch (recursively).
        out: CSV or JSON-lines output; its state database sits beside it.
        batch_size: Images per inference batch.
        fmt: ``csv`` or ``jsonl`` (default: from the suffix of ``out``).
        heatmaps: Folder for heatmap overlay PNGs (optional).
        poll_s: Seconds between folder scans.
        idle_exit_s: Stop after this many seconds without a new file (0 = run until cancelled).
        report: Receives a Log per failed frame and Progress per batch.
        cancel: Stops the loop between polls and batches.
    """
    out = Path(out)
    check_target(out, protected=[predictor.path, *([Path(folder)] if Path(folder).is_file() else [])], what="--out")
    if heatmaps is not None:
        check_folder(heatmaps)
    out.parent.mkdir(parents=True, exist_ok=True)
    kind = format_for(out, fmt)
    header = ",".join(csv_header(predictor.classes)) + "\r\n" if kind == "csv" else ""
    state = WatchState(state_path(out))
    result = WatchResult(out=str(out), state=str(state.path), provider=predictor.provider)
    keep_maps = heatmaps is not None and predictor.has_maps
    try:
        state.sync_output(out, header)  # finish what a killed session left
        known = state.known()
        result.skipped_known = len(known)
        pending: dict[str, tuple[int, int]] = {}
        idle_since = time.monotonic()
        while not cancel.is_cancelled():
            ready = _ready(Path(folder), known, pending)
            for start in range(0, len(ready), batch_size):
                if cancel.is_cancelled():
                    break
                chunk = ready[start : start + batch_size]
                stamps = {str(p): _stamp(p) for p in chunk}
                rows = []
                for pred in predictor.predict_paths(chunk, batch_size=batch_size, workers=1, keep_maps=keep_maps):
                    heat = write_heatmap(pred, heatmaps) if keep_maps and heatmaps is not None else None
                    size, mtime = stamps[pred.path]
                    status = "failed" if pred.error else "ok"
                    rows.append(
                        (pred.path, size, mtime, status, pred.error, _line(pred, kind, predictor.classes, heat))
                    )
                    known[pred.path] = (size, mtime, status)
                    result.processed += 1
                    if pred.error:
                        result.failed.append((pred.path, pred.error))
                        report(Log(level="WARNING", message=f"{pred.path}: {pred.error} (skipped)"))
                    else:
                        result.defects += pred.is_defect
                state.record(rows)
                state.sync_output(out, header)
                report(
                    Progress(
                        stage="watch", step=result.processed, total=0, message=f"{result.defects} defect(s) so far"
                    )
                )
            now = time.monotonic()
            if ready or pending:
                idle_since = now
            elif idle_exit_s and now - idle_since >= idle_exit_s:
                break
            deadline = time.monotonic() + poll_s
            while time.monotonic() < deadline and not cancel.is_cancelled():
                time.sleep(min(0.05, poll_s))
    finally:
        state.close()
    return result
