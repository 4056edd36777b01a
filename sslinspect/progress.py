"""The command line's progress display: a bar that fits the terminal, with rate and ETA; plain lines otherwise.

Standard library only (it is on the line-side ``predict`` path too). Redrawn in place with ``\\r``, so the line
never reaches the terminal's last column (a wrapped line cannot be redrawn), and at most ~10 times a second.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from sslinspect.events import Event, Progress

log = logging.getLogger("sslinspect")

#: Seconds between redraws of the same stage (the final 100 % is always drawn).
REDRAW_S = 0.1


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to (``COLUMNS`` wins; 80 when unknown)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return 80


def _duration(seconds: float) -> str:
    s = round(seconds)
    h, m = s // 3600, s % 3600 // 60
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def _rate(per_s: float) -> str:
    if per_s < 1:  # slow steps (a pretraining step on a CPU): seconds per step reads better than 0.0/s
        return f"{1 / per_s:.1f}s/step"
    return f"{per_s:.1f}/s" if per_s < 100 else f"{per_s:.0f}/s"


def render(stage: str, step: int, total: int, message: str, per_s: float | None, width: int) -> str:
    """One bar line of at most ``width - 1`` characters: stage, bar, percent, rate, ETA, then the message."""
    frac = min(1.0, step / total) if total > 0 else 0.0
    tail = f" {100 * frac:5.1f}%"
    if per_s:
        eta = (total - step) / per_s if step < total else 0.0
        tail += f" {_rate(per_s)} ETA {_duration(eta)}"
    head = f"{stage[:12]:<9} "
    room = width - 1 - len(head) - len(tail)
    bar_w = max(0, min(30, room - 2 - 12))  # leave ~12 characters for the message when the terminal allows
    bar = f"[{'#' * int(frac * bar_w):<{bar_w}}]" if bar_w >= 5 else ""
    line = head + bar + tail
    left = width - 1 - len(line)
    if left > 2 and message:
        line += "  " + message[: left - 2]
    return line[: width - 1].ljust(width - 1)


class ProgressBar:
    """Progress events as a bar on a terminal, or a log line every 10 % when not a terminal."""

    def __init__(self, stream: Any = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Draw on ``stream`` (stderr by default); ``clock`` is injectable for tests."""
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock
        self._last: dict[str, int] = {}
        self._start: dict[str, tuple[float, int]] = {}
        self._drawn: dict[str, float] = {}

    def rate(self, stage: str, step: int) -> float | None:
        """Steps per second of ``stage`` since its first event (None until measurable)."""
        now = self.clock()
        t0, s0 = self._start.setdefault(stage, (now, step))
        return (step - s0) / (now - t0) if now > t0 and step > s0 else None

    def __call__(self, event: Event) -> None:
        """Draw ``Progress`` events; ignore the rest."""
        if not isinstance(event, Progress) or event.total <= 0:
            return
        per_s = self.rate(event.stage, event.step)
        done = event.step >= event.total
        if self.tty:
            now = self.clock()
            if not done and now - self._drawn.get(event.stage, -1e9) < REDRAW_S:
                return
            self._drawn[event.stage] = now
            width = terminal_columns(self.stream)
            line = render(event.stage, event.step, event.total, event.message, per_s, width)
            self.stream.write("\r" + line + ("\n" if done else ""))
            self.stream.flush()
            return
        frac = min(1.0, event.step / event.total)
        decile = int(frac * 10)
        if decile > self._last.get(event.stage, -1):
            self._last[event.stage] = decile
            speed = f" ({_rate(per_s)})" if per_s else ""
            log.info("%s %3.0f%%%s %s", event.stage, 100 * frac, speed, event.message)
