"""Example regions of the defect-type confusion: which labelled defects fall in a cell, and their box drawn on a real
image file at the right place (model-input pixels scaled to the image, which the model input stretches)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sslinspect.review import draw_box, region_examples, region_thumbnail

TYPING = {
    "classes": ["crack", "scratch"],
    "region_boxes": {
        "ids": [3, 5, 8],
        "labels": ["crack", "crack", "scratch"],
        "boxes": [[0, 0, 0, 0], [8, 16, 24, 32], [1, 1, 4, 4]],
        "predicted": ["crack", "scratch", "scratch"],
    },
}


def test_a_cell_holds_the_defects_of_its_label_and_out_of_fold_type() -> None:
    (ex,) = region_examples(TYPING, "crack", "scratch")
    assert (ex.image_id, ex.label, ex.predicted, ex.box) == (5, "crack", "scratch", (8.0, 16.0, 24.0, 32.0))
    assert [e.image_id for e in region_examples(TYPING, "crack", "crack")] == [3]
    assert region_examples(TYPING, "scratch", "crack") == []
    no_oof = {"region_boxes": {**TYPING["region_boxes"], "predicted": None}}  # type: ignore[dict-item]
    assert region_examples(no_oof, "crack", "crack") == []


def test_the_box_is_drawn_where_the_region_is_on_a_real_file(tmp_path: Path) -> None:
    rgb = np.full((100, 200, 3), 80, np.uint8)  # wide image, model input 64 px square (stretched)
    path = tmp_path / "part.png"
    assert cv2.imwrite(str(path), rgb)
    thumb = region_thumbnail(path, (16.0, 16.0, 48.0, 48.0), 64, 100)
    assert thumb.shape == (50, 100, 3)  # aspect kept
    white = np.argwhere((thumb == 255).all(axis=2))
    assert len(white) > 0
    (y0, x0), (y1, x1) = white.min(axis=0), white.max(axis=0)
    assert abs(x0 - 25) <= 2 and abs(x1 - 75) <= 2 and abs(y0 - 12) <= 2 and abs(y1 - 37) <= 2
    plain = draw_box(rgb, (0.0, 0.0, 0.0, 0.0), 64, 100)  # nothing located: no box
    assert not (plain == 255).any()
    # a region touching the image's edges is drawn whole: white on every edge's line, dark outside it
    edge = draw_box(rgb, (0.0, 0.0, 64.0, 64.0), 64, 100)
    (y0, x0), (y1, x1) = (
        np.argwhere((edge == 255).all(axis=2)).min(axis=0),
        np.argwhere((edge == 255).all(axis=2)).max(axis=0),
    )
    assert y0 >= 1 and x0 >= 1 and y1 <= edge.shape[0] - 2 and x1 <= edge.shape[1] - 2
    dark = edge.max(axis=2) < 80  # the dark edge on both sides of the white line
    assert dark[y0 - 1, 50] and dark[y1 + 1, 50] and dark[25, x0 - 1] and dark[25, x1 + 1]
