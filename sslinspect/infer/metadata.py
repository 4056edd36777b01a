"""The metadata of an exported model checked against its graph, and its outputs checked as they come.

A model file can be edited by hand or by anyone: the class list must match the width of the ``probabilities``
output, thresholds must be finite numbers, and a ``decision`` code must be one of OK/review/NG and agree with
``is_defect``. Anything else is a :class:`~sslinspect.errors.ModelError` (one line), never an ``IndexError``, an
"internal error", a CSV whose rows are longer than its header, or an NG that is not a defect.
"""

from __future__ import annotations

import math
from typing import Any

from sslinspect.errors import ModelError

DECISIONS = ("OK", "review", "NG")


def _number(meta: dict[str, Any], key: str, path: object) -> None:
    value = meta.get(key)
    if value is None and key == "review_threshold":
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise ModelError(f"{path}: the model's metadata has an invalid {key} {value!r} (expected a finite number)")


def check_metadata(meta: dict[str, Any], outputs: dict[str, list[Any]], path: object) -> None:
    """Check the fields the predictor relies on; ``outputs`` maps output names to their shapes.

    Raises:
        ModelError: naming the model file and the inconsistent field.
    """
    classes = meta.get("classes")
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ModelError(f"{path}: the model's metadata has no valid class list")
    _number(meta, "threshold", path)
    _number(meta, "review_threshold", path)
    size = meta.get("image_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ModelError(f"{path}: the model's metadata has an invalid image_size {size!r}")
    shape = outputs.get("probabilities")
    width = shape[1] if shape is not None and len(shape) == 2 else None
    if shape is None or len(shape) != 2 or (isinstance(width, int) and width != len(classes)):
        raise ModelError(
            f"{path}: the model's metadata names {len(classes)} class(es) but its probabilities output is {shape} wide"
        )


def check_probabilities(width: int, classes: tuple[str, ...], path: object) -> None:
    """A model whose probabilities output has a dynamic width: checked on the first batch."""
    if width != len(classes):
        raise ModelError(
            f"{path}: the model returned {width} probabilities per image but its metadata names "
            f"{len(classes)} class(es)"
        )


def decision_of(code: int, is_defect: bool, path: object) -> str:
    """The decision for a model's ``decision`` output ``code``, refused when out of range or contradicting
    ``is_defect`` (NG exactly when it is a defect)."""
    if code not in (0, 1, 2):
        raise ModelError(f"{path}: the model returned decision code {code} (expected 0 OK, 1 review or 2 NG)")
    if (code == 2) != bool(is_defect):
        raise ModelError(f"{path}: the model's decision {DECISIONS[code]} contradicts its is_defect {int(is_defect)}")
    return DECISIONS[code]
