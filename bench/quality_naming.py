"""Quality benchmark: how confident predict's defect names are (its ``type_sure`` column), scored against the truth.

Held-out family (never labelled): a defect of it must not be *confidently mislabelled*, i.e. flagged NG and given a
labelled type with ``type_sure`` 1; ``unknown`` or ``type_sure`` 0 is the honest answer. Labelled families: how many
flagged defects are named sure (coverage) and how often those names are right (selective accuracy).

Every value is NaN when it cannot be measured: no such defects, or predict's CSV has no ``type_sure`` (older
predict, or a model without a typing head: its names have no calibrated confidence).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sslinspect.defects.typing_head import UNKNOWN

NAN = float("nan")


def _sure(x: dict[str, str]) -> bool | None:
    """``type_sure`` of a prediction row: True/False, None when absent or empty (the part was not named)."""
    cell = x.get("type_sure", "")
    return None if cell in ("", None) else cell == "1"


def _share(flags: Sequence[bool | None]) -> float:
    """The share of True; NaN when empty or when a value is unknown (None)."""
    if not flags or any(f is None for f in flags):
        return NAN
    return sum(bool(f) for f in flags) / len(flags)


def _confident_name(x: dict[str, str]) -> bool | None:
    """Whether a flagged part was named a type with confidence (None: the row says nothing about confidence)."""
    sure = _sure(x)
    return None if sure is None else sure and x["label"] != UNKNOWN


def score_naming(
    truth: Sequence[str], preds: Sequence[dict[str, str]], labelled: tuple[str, ...], held_out: str
) -> dict[str, Any]:
    """Confidence metrics of predict's rows ``preds`` (one per truth label, same order).

    Returns:
        ``held_out``: ``unknown_or_unsure_flagged`` (among the held-out defects flagged NG, the share named
        ``unknown`` or not sure), ``unknown_or_unsure`` (over all held-out defects, a part not flagged NG counting
        as not confidently mislabelled too) and ``confidently_mislabelled`` (over all held-out defects, the share
        flagged NG and named a type sure: 1 − ``unknown_or_unsure``); and over the labelled-family defects flagged
        NG, ``type_sure_coverage_flagged`` (the share named sure) and ``type_sure_accuracy_flagged`` (the share
        named right among those).
    """
    held = [x for t, x in zip(truth, preds, strict=True) if t == held_out]
    held_flagged = [x for x in held if x["is_defect"] == "1"]
    confident = [_confident_name(x) for x in held_flagged]
    not_confident = [None if c is None else not c for c in confident]
    # a held-out defect not flagged NG is not confidently mislabelled: count it with the honest answers
    over_all = [*not_confident, *[True] * (len(held) - len(held_flagged))]
    if not any(_sure(x) is not None for x in preds):  # no type_sure (older predict, no typing head): no score
        over_all = [None]
    typed = [(t, x) for t, x in zip(truth, preds, strict=True) if t in labelled and x["is_defect"] == "1"]
    sure = [_sure(x) for _, x in typed]
    right_sure = [x["label"] == t for (t, x), s in zip(typed, sure, strict=True) if s]
    coverage = _share(sure)
    all_share = _share(over_all)
    return {
        "held_out": {
            "unknown_or_unsure_flagged": _share(not_confident),
            "unknown_or_unsure": all_share,
            "confidently_mislabelled": 1.0 - all_share,
        },
        "type_sure_coverage_flagged": coverage,
        "type_sure_accuracy_flagged": _share(right_sure) if coverage == coverage else NAN,
    }
