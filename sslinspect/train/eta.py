"""Time left in a pretraining run: its remaining epochs or its time budget (``max_minutes``), whichever ends it first.

Torch-free and pure, so the rule is tested without training. The loop reports the result as the ``eta_s`` metric
and in its ``Progress`` events, whose ``total`` is the step the run is expected to end at: a 3-minute budget on a
200-epoch run shows the progress bar and the time left of the 3 minutes, not of the 200 epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimeLeft:
    """What ends the run and when."""

    seconds: float  # the time left: min(epochs estimate, budget remaining)
    end_step: int  # the step the run is expected to end at (the last step of its epochs, or where the budget ends)
    by_budget: bool  # the time budget ends the run before its epochs
    epochs_seconds: float  # the time the remaining epochs would take at the current speed


def time_left(step: int, total_steps: int, s_per_step: float, budget_left_s: float = math.inf) -> TimeLeft:
    """Time left after ``step`` of ``total_steps`` at ``s_per_step``, with ``budget_left_s`` of the budget left.

    Examples:
        >>> time_left(40, 4000, 0.36, budget_left_s=160.0)
        TimeLeft(seconds=160.0, end_step=485, by_budget=True, epochs_seconds=1425.6)
        >>> time_left(40, 100, 0.5).seconds
        30.0
    """
    epochs_s = max(0, total_steps - step) * s_per_step
    if budget_left_s >= epochs_s:  # no budget (inf), or the epochs end first
        return TimeLeft(epochs_s, total_steps, False, epochs_s)
    budget = max(0.0, budget_left_s)
    end = min(total_steps, step + math.ceil(budget / s_per_step)) if s_per_step > 0 else total_steps
    return TimeLeft(budget, end, True, epochs_s)


def describe(left: TimeLeft, *, epochs: int, max_minutes: float) -> str:
    """``ETA mm:ss``, and, when a time budget is set, which of the epochs and the budget ends the run."""
    eta = f"ETA {mmss(left.seconds)}"
    if max_minutes <= 0:
        return eta
    if left.by_budget:
        return f"{eta} ({max_minutes:g}-min time limit; {epochs} epochs would take {mmss(left.epochs_seconds)})"
    return f"{eta} ({epochs} epochs, within the {max_minutes:g}-min time limit)"


def mmss(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on."""
    s = max(0, int(seconds))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"
