"""The one event vocabulary shared by the core, the CLI (JSON lines) and the GUI.

Events are frozen dataclasses; a ``Reporter`` is any callable taking one. ``JsonlReporter`` writes one JSON object per
line with a ``"type"`` key, and ``decode_event`` turns such a line back into the same dataclass.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Literal, Protocol, TypeAlias

Status = Literal["ok", "cancelled", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    """A stage began; ``total_steps`` is 0 when unknown."""

    stage: str
    run_id: str = ""
    total_steps: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """``step`` of ``total`` units of work are done in ``stage``.

    For pretraining with a time budget that ends the run before its epochs, ``total`` is the step the budget is
    expected to reach (re-estimated at every report), so a bar and a time left follow the budget.
    """

    stage: str
    step: int
    total: int
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    """One scalar measurement (loss, lr, images/s, embedding std, ...)."""

    stage: str
    name: str
    value: float
    epoch: int = 0
    step: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Artifact:
    """A file was written; ``path`` is relative to the project root when inside a project."""

    kind: str
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Log:
    """A human-readable message; ``level`` is a logging level name."""

    level: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """A stage ended; on failure ``error_type`` / ``error_message`` say why in one line."""

    stage: str
    status: Status
    error_type: str = ""
    error_message: str = ""


Event: TypeAlias = Started | Progress | Metric | Artifact | Log | Finished
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls for cls in (Started, Progress, Metric, Artifact, Log, Finished)
}
_FIELD_TYPES: dict[str, dict[str, Any]] = {name: typing.get_type_hints(cls) for name, cls in EVENT_TYPES.items()}


class Reporter(Protocol):
    """Anything that accepts events."""

    def __call__(self, event: Event) -> None:
        """Consume one event."""


def null_reporter(event: Event) -> None:
    """Discard the event (the default reporter)."""


def encode_event(event: Event) -> str:
    """One JSON line (without newline) for ``event``, with its class name under ``"type"``."""
    return json.dumps({"type": type(event).__name__, **dataclasses.asdict(event)}, ensure_ascii=False)


def decode_event(line: str) -> Event:
    """Parse a line written by :func:`encode_event`, checking every field's type.

    Raises:
        ValueError: if the line is not an event (not JSON, unknown type, missing or mistyped fields).
    """
    try:
        obj = json.loads(line)
    except RecursionError:
        raise ValueError("not an SSL Inspect event: nested too deeply") from None
    if not isinstance(obj, dict) or obj.get("type") not in EVENT_TYPES:
        raise ValueError(f"not an SSL Inspect event: {line[:80]!r}")
    cls = EVENT_TYPES[obj.pop("type")]
    hints = _FIELD_TYPES[cls.__name__]
    kwargs = {k: v for k, v in obj.items() if k in hints}  # unknown keys: written by a newer version
    for key, value in kwargs.items():
        if not _fits(hints[key], value):
            raise ValueError(f"{cls.__name__}.{key} has the wrong type: {value!r:.60}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"incomplete {cls.__name__} event: {exc}") from None


def _fits(tp: Any, value: object) -> bool:
    if typing.get_origin(tp) is Literal:
        return value in typing.get_args(tp)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


class JsonlReporter:
    """Writes each event as one JSON line to a text stream and flushes (thread-safe)."""

    def __init__(self, stream: IO[str]) -> None:
        """Report to ``stream`` (stdout of a worker process, or an open ``events.jsonl``)."""
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """Write ``event``."""
        line = encode_event(event) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


class LoggingReporter:
    """Turns events into log records: the CLI's human-readable output."""

    def __init__(self, logger: logging.Logger | None = None, *, every: int = 1, progress: bool = True) -> None:
        """Log through ``logger``; Progress events (unless ``progress`` is False) every ``every``-th step."""
        self._log = logger or logging.getLogger("sslinspect")
        self._every = max(1, every)
        self._progress = progress

    def __call__(self, event: Event) -> None:
        """Log ``event`` at a level matching its kind."""
        if isinstance(event, Log):
            self._log.log(logging.getLevelNamesMapping().get(event.level.upper(), logging.INFO), event.message)
        elif isinstance(event, Progress):
            if self._progress and (event.step == event.total or event.step % self._every == 0):
                pct = f" {100 * event.step / event.total:5.1f}%" if event.total else ""
                self._log.info("%s%s %d/%d %s", event.stage, pct, event.step, event.total, event.message)
        elif isinstance(event, Finished) and event.status != "ok":
            self._log.warning("%s %s: %s", event.stage, event.status, event.error_message)
        elif isinstance(event, Artifact):
            self._log.info("wrote %s: %s", event.kind, event.path)


class TeeReporter:
    """Sends each event to several reporters in turn."""

    def __init__(self, *reporters: Reporter) -> None:
        """Fan out to ``reporters``."""
        self._reporters = reporters

    def __call__(self, event: Event) -> None:
        """Forward ``event`` to every reporter."""
        for r in self._reporters:
            r(event)


class CollectingReporter:
    """Keeps every event in a list (tests, and callers that want the metrics afterwards)."""

    def __init__(self) -> None:
        """Start with no events."""
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        """Append ``event``."""
        self.events.append(event)

    def of_type(self, cls: type[Event]) -> list[Event]:
        """The events of class ``cls``, in order."""
        return [e for e in self.events if isinstance(e, cls)]


ReporterFn: TypeAlias = Callable[[Event], None]
