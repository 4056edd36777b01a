"""Label-page suggestions: for each defect type, the unlabelled images whose main region the typing head names
nearest to it (read from the few-shot run's ``typing_suggestions.csv``; Qt-free and torch-free).

Ranked per type by the type's probability, then by novelty (lowest first); images named ``unknown`` (far from
every type, or nothing located) are listed apart, highest probability first. Images labelled since the fit are
left out by the caller passing ``labelled``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from sslinspect.defects.typing_head import UNKNOWN
from sslinspect.errors import DataError
from sslinspect.runs import TYPING_SUGGESTIONS


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One unlabelled image suggested for a type.

    Attributes:
        image_id: The image.
        type: The type it is suggested for (``unknown``: the ones listed apart).
        probability: The typing head's probability of that type (for ``unknown``: of its nearest type).
        novelty: Distance to the nearest type over that type's radius (above 1 is ``unknown``).
        box: Its main region ``x0, y0, x1, y1`` in model-input pixels (all zero: nothing located).
    """

    image_id: int
    type: str
    probability: float
    novelty: float
    box: tuple[float, float, float, float]


def load_suggestions(run_dir: Path | None, labelled: Collection[int] = ()) -> dict[str, list[Suggestion]]:
    """Per type (in the head's order, then ``unknown``), the suggested images, nearest first; empty without the
    file (fewer than two types, too many images to keep their maps, or an older run).

    Raises:
        DataError: if the file is malformed.
    """
    path = run_dir / TYPING_SUGGESTIONS if run_dir is not None else None
    if path is None or not path.is_file():
        return {}
    out: dict[str, list[Suggestion]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            types = [f[2:] for f in reader.fieldnames or () if f.startswith("p_")]
            for t in types:
                out[t] = []
            for row in reader:
                image_id = int(row["image_id"])
                if image_id in labelled:
                    continue
                box = (float(row["x0"]), float(row["y0"]), float(row["x1"]), float(row["y1"]))
                novelty = float(row["novelty"])
                label = row["type"]
                if label == UNKNOWN or label not in out:
                    p = max((float(row[f"p_{t}"]) for t in types), default=0.0)
                    out.setdefault(UNKNOWN, []).append(Suggestion(image_id, UNKNOWN, p, novelty, box))
                else:
                    out[label].append(Suggestion(image_id, label, float(row[f"p_{label}"]), novelty, box))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: unreadable suggestions ({exc})") from exc
    for items in out.values():
        items.sort(key=lambda s: (-s.probability, s.novelty if math.isfinite(s.novelty) else math.inf, s.image_id))
    return out
