"""Example regions of the region typing's confusion cells (Qt-free and torch-free: the GUI's Fit page uses it).

``sslinspect fit`` stores, per labelled defect, its image id, its type, its region box (model-input pixels) and the
type the typing head gave it out-of-fold (``metrics.json["typing"]["region_boxes"]``). A cell of the type confusion
(row: label, column: predicted) is the list of those defects; each is shown as a thumbnail with its box drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sslinspect.imageio import read_image


@dataclass(frozen=True, slots=True)
class RegionExample:
    """One labelled defect of a confusion cell.

    Attributes:
        image_id: Its image.
        label: Its type (the cell's row).
        predicted: The type the typing head gave it out-of-fold (the cell's column).
        box: Its region ``x0, y0, x1, y1`` in model-input pixels (all zero: nothing located).
    """

    image_id: int
    label: str
    predicted: str
    box: tuple[float, float, float, float]


def region_examples(typing: Mapping[str, Any], label: str, predicted: str) -> list[RegionExample]:
    """The labelled defects of type ``label`` that the typing head named ``predicted`` out-of-fold (one confusion
    cell), in fit order; empty when the metrics hold no out-of-fold predictions."""
    rb = typing.get("region_boxes") or {}
    ids, labels, boxes, preds = (rb.get(k) or [] for k in ("ids", "labels", "boxes", "predicted"))
    rows = zip(ids, labels, boxes, preds, strict=False)
    out: list[RegionExample] = []
    for i, lab, box, pred in rows:  # no out-of-fold predictions: nothing
        if lab == label and pred == predicted:
            x0, y0, x1, y1 = (float(v) for v in box)
            out.append(RegionExample(int(i), str(lab), str(pred), (x0, y0, x1, y1)))
    return out


def draw_box(rgb: np.ndarray, box: tuple[float, float, float, float], input_size: int, side: int) -> np.ndarray:
    """``rgb`` scaled to fit ``side`` px with ``box`` (model-input pixels of a ``input_size`` square input, which is
    the whole image stretched) drawn as a white rectangle with a dark edge, kept inside the thumbnail so a region at
    the image's edge is drawn whole; no rectangle for an all-zero box."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    out = np.ascontiguousarray(
        cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    )
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2RGB)
    if any(box) and input_size > 0:
        oh, ow = out.shape[:2]
        x0, y0, x1, y1 = box
        thick = max(1, round(side / 128))
        pad = (thick + 3) // 2  # half the dark edge: the whole line stays on the thumbnail
        p0 = (max(pad, int(x0 * ow / input_size)), max(pad, int(y0 * oh / input_size)))
        p1 = (min(ow - 1 - pad, round(x1 * ow / input_size)), min(oh - 1 - pad, round(y1 * oh / input_size)))
        cv2.rectangle(out, p0, p1, (0, 0, 0), thick + 2)
        cv2.rectangle(out, p0, p1, (255, 255, 255), thick)
    return out


def region_thumbnail(path: Path, box: tuple[float, float, float, float], input_size: int, side: int) -> np.ndarray:
    """The image at ``path`` as a ``side``-px RGB thumbnail with its region ``box`` drawn (see :func:`draw_box`).

    Raises:
        ImageReadError: when the file cannot be read.
    """
    rgb, _ = read_image(path)
    return draw_box(rgb, box, input_size, side)
