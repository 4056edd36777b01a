"""Label-page suggestions, written by ``sslinspect fit``: the main region of each unlabelled image the anomaly model
flags (or that is among the highest-scoring ones), named by the typing head with
:func:`sslinspect.defects.naming.name_defect` on its held-out map, the code the line-side predictor runs.

File it leaves in the fewshot run folder: ``typing_suggestions.csv`` (one row per named image: image_id, type,
``p_<type>`` per type, novelty, region box in model-input pixels). :mod:`sslinspect.review.suggestions` reads it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sslinspect.defects.naming import NamedDefect, name_defect
from sslinspect.defects.typing_head import TypingHead
from sslinspect.fewshot.typing_step import SharpMaps, norm_map
from sslinspect.fsutil import atomic_path

#: Besides the flagged ones, at least this many of the highest-scoring unlabelled images are named...
MIN_CANDIDATES = 20
#: ...or this share of the unlabelled images, whichever is more.
CANDIDATE_SHARE = 0.1


def candidate_rows(scores: np.ndarray, labels: Sequence[str | None], threshold: float) -> np.ndarray:
    """Rows of the unlabelled images to name: those scored at or above ``threshold``, and the highest-scoring
    :data:`MIN_CANDIDATES` (or :data:`CANDIDATE_SHARE`) of them; highest score first."""
    free = np.array([i for i, lab in enumerate(labels) if lab is None], dtype=np.int64)
    if not len(free):
        return free
    order = free[np.argsort(-np.asarray(scores)[free], kind="stable")]
    top = max(MIN_CANDIDATES, math.ceil(CANDIDATE_SHARE * len(free)))
    flagged = int((np.asarray(scores)[order] >= threshold).sum())
    return order[: max(top, flagged)]


def suggest_types(
    head: TypingHead,
    images: np.ndarray,
    maps: np.ndarray,
    rows: np.ndarray,
    *,
    map_low: float,
    map_high: float,
    sharp: SharpMaps | None = None,
) -> list[NamedDefect]:
    """The main defect of each of ``rows`` named on its held-out maps (raw maps, normalised like the export's)."""
    return [
        name_defect(
            head,
            np.asarray(images[r]),
            norm_map(maps[r], map_low, map_high),
            sharp.normalised(r) if sharp is not None else None,
            sharp.kinds_of(r) if sharp is not None else None,
        )
        for r in rows.tolist()
    ]


def write_suggestions(path: Path, head: TypingHead, ids: np.ndarray, named: Sequence[NamedDefect]) -> None:
    """``typing_suggestions.csv`` (atomically): one row per named image; box all zero when nothing was located."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "type", *[f"p_{c}" for c in head.classes], "novelty", "x0", "y0", "x1", "y1"])
        for i, nd in zip(ids.tolist(), named, strict=True):
            box = nd.region.bbox if nd.region is not None else (0, 0, 0, 0)
            novelty = f"{nd.novelty:.5f}" if math.isfinite(nd.novelty) else "inf"
            w.writerow([int(i), nd.label, *[f"{p:.5f}" for p in nd.proba], novelty, *[int(v) for v in box]])
