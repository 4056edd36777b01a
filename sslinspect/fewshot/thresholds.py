"""A threshold the engineer types is checked against the scores it came from.

``sslinspect threshold P 42`` where every held-out score is below 0.8 would export a model that never rejects a
part; ``-5`` one that rejects every part; ``1e308`` becomes ``inf`` in the float32 graph. A value outside the
observed range of held-out anomaly scores (``scores.csv`` of the run) is refused unless forced, and recorded as
forced (the GUI and the QA report show it); a value float32 cannot hold is always refused.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from sslinspect.errors import ConfigError

#: The largest float32: the graph's threshold inputs are float32.
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True, slots=True)
class ScoreRange:
    """Held-out anomaly scores of a run: lowest, highest, how many."""

    low: float
    high: float
    count: int

    def contains(self, value: float) -> bool:
        """True when ``value`` lies within the observed scores."""
        return self.low <= value <= self.high


def observed_scores(run_dir: Path) -> ScoreRange | None:
    """The range of held-out anomaly scores in ``run_dir/scores.csv`` (None when there are none)."""
    path = Path(run_dir) / "scores.csv"
    if not path.is_file():
        return None
    values: list[float] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                v = float(row.get("anomaly_score") or "nan")
            except ValueError:
                continue
            if math.isfinite(v):
                values.append(v)
    return ScoreRange(min(values), max(values), len(values)) if values else None


def check_thresholds(
    run_dir: Path, threshold: float, review: float | None, *, force: bool = False, calibrated: object = None
) -> tuple[bool, ScoreRange | None]:
    """Check ``threshold`` (and ``review``) against the run's scores; returns ``(forced, observed range)``.

    The ``calibrated`` threshold of the run is always accepted (putting it back is never forced).

    Raises:
        ConfigError: for a value that is not a finite float32, or one outside the observed scores without
            ``force``.
    """
    values = [("threshold", threshold)] + ([("review threshold", review)] if review is not None else [])
    for what, v in values:
        if not math.isfinite(v) or abs(v) > FLOAT32_MAX:
            raise ConfigError(f"{what} {v:g} is not a finite 32-bit number (the exported model would hold inf)")
    seen = observed_scores(run_dir)
    outside = [(what, v) for what, v in values if seen is not None and not seen.contains(v) and v != calibrated]
    if not outside or seen is None:
        return False, seen
    if not force:
        what, v = outside[0]
        verdict = "NG" if what == "threshold" else "review or NG"
        effect = f"no part would be {verdict}" if v > seen.high else f"every part would be {verdict}"
        raise ConfigError(
            f"{what} {v:g} is outside the anomaly scores observed on {seen.count} images "
            f"({seen.low:.4f} to {seen.high:.4f}): {effect}; use --force to set it anyway"
        )
    return True, seen
