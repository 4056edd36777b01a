"""Time left: the remaining epochs or the time budget, whichever ends the run first (issue 12: "24 min left" on a
3-minute Quick check)."""

from __future__ import annotations

import math

import pytest

from sslinspect.train.eta import describe, mmss, time_left


def test_the_budget_caps_the_time_left_and_the_end_step() -> None:
    # the Quick-check preset: 200 epochs, a 3-minute budget, 20 s of it spent
    left = time_left(step=40, total_steps=4000, s_per_step=0.36, budget_left_s=160.0)
    assert left.by_budget and left.seconds == 160.0 and left.epochs_seconds == pytest.approx(1425.6)
    assert left.end_step == 40 + math.ceil(160.0 / 0.36)
    text = describe(left, epochs=200, max_minutes=3.0)
    assert text == "ETA 02:40 (3-min time limit; 200 epochs would take 23:45)"


def test_the_epochs_apply_when_they_end_first_or_no_budget_is_set() -> None:
    left = time_left(step=90, total_steps=100, s_per_step=0.5, budget_left_s=600.0)
    assert not left.by_budget and left.seconds == 5.0 and left.end_step == 100
    assert describe(left, epochs=20, max_minutes=15.0) == "ETA 00:05 (20 epochs, within the 15-min time limit)"
    unlimited = time_left(step=90, total_steps=100, s_per_step=0.5)
    assert unlimited.seconds == 5.0 and describe(unlimited, epochs=20, max_minutes=0.0) == "ETA 00:05"


def test_a_spent_budget_leaves_nothing() -> None:
    left = time_left(step=50, total_steps=4000, s_per_step=0.3, budget_left_s=-2.0)
    assert left.by_budget and left.seconds == 0.0 and left.end_step == 50
    assert mmss(3725) == "1:02:05" and mmss(-1) == "00:00"
