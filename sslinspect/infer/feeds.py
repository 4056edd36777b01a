"""The inputs an exported graph takes besides the images: the NG and review thresholds, one value per image.

From format ``sslinspect.onnx/3`` the thresholds are plain graph inputs shaped like the batch (``float32 [N]``): no
initializer defaults, which only ONNX Runtime honours (OpenVINO drops them, Triton cannot batch them). Every caller
fills them, from the model's metadata unless the line overrides them. Older models take one value (``[1]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IMAGES, THRESHOLD, REVIEW = "images", "threshold", "review_threshold"
#: The graph's map outputs: the anomaly map, and the defect-aware model's map before spreading (models fitted since
#: 2026-12-05; the predictor cuts defect regions from both to name them).
ANOMALY_MAP, SHARP_MAP = "anomaly_map", "anomaly_map_sharp"
#: The defect-aware model's kind probabilities ``(N, K, S/4, S/4)`` (models fitted since 2026-12-06): what a located
#: defect looks like, pooled over its region into its description (:mod:`sslinspect.defects.describe`).
KIND_MAP = "defect_kinds"


def threshold_feeds(
    images: np.ndarray,
    threshold: float,
    review_threshold: float,
    *,
    names: Sequence[str] = (IMAGES, THRESHOLD, REVIEW),
    per_image: bool = True,
) -> dict[str, np.ndarray]:
    """``{images, threshold, review_threshold}`` for a batch; ``per_image=False`` for the one-value inputs of
    format 1/2 models. A ``names`` entry that is empty is left out (format 1 had no review input)."""
    n = len(images) if per_image else 1
    feeds = {names[0]: np.ascontiguousarray(images, dtype=np.uint8)}
    for name, value in zip(names[1:], (threshold, review_threshold), strict=True):
        if name:
            feeds[name] = np.full((n,), value, dtype=np.float32)
    return feeds
