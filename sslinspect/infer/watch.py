"""Watch a folder the line camera writes to: score each completed frame once, across restarts and watchers.

The state lives in SQLite next to the output (``<out>.watch.sqlite``, see :mod:`sslinspect.infer.watch_state`):
one row per scored frame, identified by (device, inode, size, mtime) under its canonical path, so a new frame renamed
into place under a name already scored is scored, a scored frame moved or hard-linked within the folder is not
scored again, and ``cam`` and ``/abs/cam`` are the same folder. A frame is taken when its identity stayed the same
over two polls (the camera has finished writing) and is recorded only if it is still the same after it was read. A
frame that cannot be decoded is held back, not recorded: if it changes (a camera that stalled mid-file and then
finished), it is scored as a new frame; only a frame that stays unreadable and unchanged for ``settle_s`` seconds is
recorded as failed (once). Each poll runs under the state's lock, so two watchers on one output take turns and never
score a frame twice. Outputs never feed the input: heatmaps or the output inside the watched folder are refused.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.errors import ConfigError
from sslinspect.events import Log, Progress, Reporter, null_reporter
from sslinspect.infer.onnx_predictor import Prediction, Predictor, expand_inputs
from sslinspect.infer.output import csv_header, csv_row, format_for, json_record, write_heatmap
from sslinspect.infer.target import check_folder, check_target
from sslinspect.infer.watch_state import FrameRow, Identity, WatchState, state_path

__all__ = ["SETTLE_S", "WatchResult", "WatchState", "Watcher", "check_watch_paths", "run_watch", "state_path"]

#: Seconds an unreadable frame must stay unchanged before it is recorded as failed (a stalled camera resumes).
SETTLE_S = 5.0


@dataclass(slots=True)
class WatchResult:
    """What one watch session did (frames handled in earlier sessions or by another watcher are not counted)."""

    processed: int = 0
    defects: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    out: str = ""
    state: str = ""
    provider: str = ""
    skipped_known: int = 0


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_watch_paths(folder: Path, out: Path, heatmaps: Path | None = None) -> tuple[Path, Path, Path | None]:
    """Canonical ``(folder, out, heatmaps)`` for a watch, refused when the target is wrong or outputs feed it.

    Raises:
        ConfigError: for a missing folder, a file instead of a folder, or heatmaps/output inside the folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise ConfigError(f"{folder}: no such folder to watch")
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder (--watch takes the folder the camera writes to)")
    canon = folder.resolve()
    out = Path(out).parent.resolve() / Path(out).name
    if _inside(out, canon):
        raise ConfigError(f"{out}: the output must not be inside the watched folder {canon}")
    maps = Path(heatmaps).resolve() if heatmaps is not None else None
    if maps is not None and _inside(maps, canon):
        raise ConfigError(f"{heatmaps}: the heatmaps folder must not be inside the watched folder {canon}")
    return canon, out, maps


def _line(p: Prediction, kind: str, classes: tuple[str, ...], heatmap: str | None) -> str:
    if kind == "jsonl":
        return json_record(p, classes, heatmap) + "\n"
    buf = io.StringIO()
    csv.writer(buf).writerow(csv_row(p, len(classes)))
    return buf.getvalue()


class Watcher:
    """One watcher of ``folder`` writing ``out``; :meth:`poll` does one scan-and-score step (tests drive it)."""

    def __init__(
        self,
        predictor: Predictor,
        folder: Path,
        out: Path,
        *,
        batch_size: int = 16,
        fmt: str | None = None,
        heatmaps: Path | None = None,
        settle_s: float = SETTLE_S,
        report: Reporter = null_reporter,
    ) -> None:
        """Check the paths and open (or create) the state beside ``out``.

        Raises:
            ConfigError: see :func:`check_watch_paths`.
        """
        self.folder, self.out, self.heatmaps = check_watch_paths(folder, out, heatmaps)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.predictor, self.batch_size, self.settle_s, self.report = predictor, batch_size, settle_s, report
        self.kind = format_for(self.out, fmt)
        self.header = ",".join(csv_header(predictor.classes)) + "\r\n" if self.kind == "csv" else ""
        self.keep_maps = self.heatmaps is not None and predictor.has_maps
        self.state = WatchState(state_path(self.out))
        self.result = WatchResult(out=str(self.out), state=str(self.state.path), provider=predictor.provider)
        self.pending: dict[str, Identity] = {}  # seen once, waiting to stand still
        self.held: dict[str, tuple[Identity, float, str]] = {}  # unreadable: identity, since, reason
        self.gone = False
        with self.state.lock():
            self.state.sync_output(self.out, self.header)  # finish what a killed session left
            self.result.skipped_known = len(self.state.known()[0])

    def close(self) -> None:
        """Close the state (frames held back as unreadable are retried by the next session)."""
        self.state.close()

    @property
    def busy(self) -> bool:
        """True while frames are being written or held back (an idle exit waits for them)."""
        return bool(self.pending or self.held)

    def _ready(self, now: float) -> tuple[dict[Path, Identity], list[FrameRow]]:
        """Frames that stood still since the previous poll, and held frames whose failure is now final.

        A frame is known when its path's latest record has its identity, or its identity was recorded under
        another path (the same file renamed or hard-linked within the folder).
        """
        known, ids = self.state.known()
        ready: dict[Path, Identity] = {}  # frame → the identity that stood still
        final: list[FrameRow] = []
        seen: set[str] = set()
        if not self.folder.is_dir():  # an unplugged share or camera: wait for it to come back
            if not self.gone:
                self.report(Log(level="WARNING", message=f"{self.folder}: watched folder is gone; waiting for it"))
            self.gone = True
            return ready, final
        self.gone = False
        for path in expand_inputs([self.folder]):
            key = str(path)
            seen.add(key)
            ident = Identity.of(path)
            if ident is None:  # deleted between listing and stat
                continue
            prev = known.get(key)
            if (prev is not None and prev[0].same(ident)) or ident in ids:
                self.pending.pop(key, None)
                self.held.pop(key, None)
                continue
            held = self.held.get(key)
            if held is not None and held[0] == ident:
                if now - held[1] >= self.settle_s:
                    final.append(FrameRow(key, ident, "failed", held[2], self._error_line(key, held[2])))
                continue
            self.held.pop(key, None)
            if self.pending.get(key) == ident and ident.size > 0:
                ready[path] = ident
                self.pending.pop(key, None)
            else:
                self.pending[key] = ident
        for gone in (set(self.pending) | set(self.held)) - seen:
            self.pending.pop(gone, None)
            self.held.pop(gone, None)
        return ready, final

    def _error_line(self, path: str, error: str) -> str:
        return _line(Prediction(path, error=error), self.kind, self.predictor.classes, None)

    def poll(self, now: float | None = None) -> int:
        """Scan once and score what is ready, under the state's lock; returns the frames recorded."""
        now = time.monotonic() if now is None else now
        with self.state.lock():
            self.state.sync_output(self.out, self.header)
            ready, final = self._ready(now)
            for row in final:
                self.held.pop(row.path, None)
                self.result.failed.append((row.path, row.error))
                self.report(Log(level="WARNING", message=f"{row.path}: {row.error} (skipped)"))
            if final:
                self.state.record(final)
                self.state.sync_output(self.out, self.header)
            recorded = len(final)
            frames = list(ready.items())
            for start in range(0, len(frames), self.batch_size):
                recorded += self._score(dict(frames[start : start + self.batch_size]), now)
        return recorded

    def _score(self, chunk: dict[Path, Identity], now: float) -> int:
        """Score frames and record those whose identity is the one that stood still, before and after the read."""
        before: dict[str, Identity | None] = {str(p): i for p, i in chunk.items()}
        rows: list[FrameRow] = []
        paths = list(chunk)
        preds = self.predictor.predict_paths(paths, batch_size=self.batch_size, workers=1, keep_maps=self.keep_maps)
        for pred in preds:
            ident, after = before[pred.path], Identity.of(Path(pred.path))
            if ident is None or after != ident:  # changed while it was read: wait until it stands still again
                if after is not None:
                    self.pending[pred.path] = after
                continue
            if pred.error:  # maybe a camera that stalled mid-file: final only if it stays so (see _ready)
                self.held[pred.path] = (ident, now, pred.error)
                continue
            heat = write_heatmap(pred, self.heatmaps) if self.keep_maps and self.heatmaps is not None else None
            rows.append(FrameRow(pred.path, ident, "ok", "", _line(pred, self.kind, self.predictor.classes, heat)))
            self.result.processed += 1
            self.result.defects += pred.is_defect
        if rows:
            self.state.record(rows)
            self.state.sync_output(self.out, self.header)
            message = f"{self.result.defects} defect(s) so far"
            self.report(Progress(stage="watch", step=self.result.processed, total=0, message=message))
        return len(rows)


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
    settle_s: float = SETTLE_S,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> WatchResult:
    """Score new frames in ``folder`` as they arrive, appending to ``out``, until cancelled.

    Args:
        predictor: The loaded model.
        folder: Folder to watch (recursively); it must exist.
        out: CSV or JSON-lines output; its state database and lock sit beside it.
        batch_size: Images per inference batch.
        fmt: ``csv`` or ``jsonl`` (default: from the suffix of ``out``).
        heatmaps: Folder for heatmap overlay PNGs (optional; not inside ``folder``).
        poll_s: Seconds between folder scans (> 0).
        idle_exit_s: Stop after this many seconds without a new frame (0 = run until cancelled).
        settle_s: Seconds an unreadable frame must stay unchanged before it is recorded as failed.
        report: Receives a Log per failed frame and Progress per batch.
        cancel: Stops the loop between polls.

    Raises:
        ConfigError: for a missing or wrong watch target, overlapping outputs, or a poll interval ≤ 0.
    """
    check_target(
        Path(out), protected=[predictor.path, *([Path(folder)] if Path(folder).is_file() else [])], what="--out"
    )
    if heatmaps is not None:
        check_folder(heatmaps)
    if not poll_s > 0 or idle_exit_s < 0 or settle_s < 0:
        raise ConfigError(f"--poll must be > 0 and --idle-exit ≥ 0 (got {poll_s:g} and {idle_exit_s:g})")
    watcher = Watcher(
        predictor, folder, out, batch_size=batch_size, fmt=fmt, heatmaps=heatmaps, settle_s=settle_s, report=report
    )
    try:
        idle_since = time.monotonic()
        while not cancel.is_cancelled():
            if watcher.poll() or watcher.busy:
                idle_since = time.monotonic()
            elif idle_exit_s and time.monotonic() - idle_since >= idle_exit_s:
                break
            deadline = time.monotonic() + poll_s
            while time.monotonic() < deadline and not cancel.is_cancelled():
                time.sleep(min(0.05, poll_s))
    finally:
        watcher.close()
    return watcher.result
