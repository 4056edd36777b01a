"""Where defect names are lost: the same typing, fitted on the labelled defects and scored on test defects, with the
regions cut from the exported model's maps (as ``predict`` does) against the true masks. Prints one JSON object.

Every test defect is described and named, flagged or not (``particle``, the benchmark's held-out family, and any
family without labels are left out of the score); balanced accuracy over the labelled families, per-family recall.
The typing head is the product's (``fit_typing``, kind ``ensemble``, one head per cut, probabilities averaged)
without the flipped views ``fit`` adds, so figures are a few hundredths below ``bench/quality.py``'s. Rows:

- ``maps``: the model's cuts (``SHARP_CUTS``: spread map, sharp map, its core, its region redrawn by the image) for the
  labelled and the test defects;
- ``true_masks``: each defect's true mask (the cuts all equal), labelled and test alike: the descriptor's ceiling;
- ``true_masks_labelled_only``: true masks for the labelled defects, the maps' cuts for the test ones;
- ``box_labelled``: the labelled defects' maps restricted to a box round the true mask (as if a person drew one).

A ``bench/quality.py --work W`` run keeps the model and the labelled defects' data (with masks); name a development
set, never the test sets you tune on, e.g. seed 7 made by ``bench/quality_data.py``
(``generate_surface(Path("dev"), SetParams("brick", seed=7, n_train=60))``)::

    python bench/naming_regions.py --model W/models/brick-s0/model.onnx --labelled W/data/seed0/brick --test dev/brick
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import numpy as np

from bench.machine import describe as describe_machine
from bench.quality_data import frame_at
from bench.quality_defects import DEFAULT_HELD_OUT as HELD_OUT
from sslinspect.defects.describe import DESCRIPTOR_NAMES, describe
from sslinspect.defects.naming import SHARP_CUTS, describe_cuts
from sslinspect.defects.typing_head import KIND_SOURCE, MAP_SOURCE, SHARP_SOURCE
from sslinspect.infer.onnx_predictor import Predictor

BOX_PAD = 8  # px round the true mask's bounding box
Part = dict[str, Any]


def _rows(root: Path, table: str, keep: set[str] | None = None) -> list[dict[str, str]]:
    with (root / table).open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] not in ("good", "")]
    return [r for r in rows if keep is None or r["path"] in keep]


def _parts(predictor: Predictor, root: Path, rows: list[dict[str, str]], masks: dict[str, str]) -> list[Part]:
    """Each defect's image at the model's input size, its maps from the exported graph and its true mask."""
    size = predictor.image_size
    parts: list[Part] = []
    for start in range(0, len(rows), 16):
        chunk = rows[start : start + 16]
        frames = [frame_at(root, r["path"], masks[r["path"]], size) for r in chunk]
        images = np.stack([f for f, _ in frames])
        out = predictor.run_all(images, ["anomaly_map", "anomaly_map_sharp", "defect_kinds"])
        for k, (r, (_, mask)) in enumerate(zip(chunk, frames, strict=True)):
            maps = {MAP_SOURCE: out["anomaly_map"][k], SHARP_SOURCE: out["anomaly_map_sharp"][k]}
            parts.append({"label": r["label"], "image": images[k], "maps": maps | {KIND_SOURCE: out["defect_kinds"][k]},
                          "mask": mask})  # fmt: skip
    return parts


def _from_maps(part: Part) -> np.ndarray:
    return describe_cuts(part["image"], part["maps"], SHARP_CUTS, 1.0)[0]


def _from_mask(part: Part) -> np.ndarray:
    maps = part["maps"]
    x = describe(part["image"], part["mask"], kinds=maps[KIND_SOURCE], weight=maps[SHARP_SOURCE])
    return np.tile(x, len(SHARP_CUTS))


def _from_box(part: Part) -> np.ndarray:
    ys, xs = np.nonzero(part["mask"])
    box = np.zeros_like(part["mask"])
    if len(ys):
        y0, x0 = max(ys.min() - BOX_PAD, 0), max(xs.min() - BOX_PAD, 0)
        box[y0 : ys.max() + BOX_PAD + 1, x0 : xs.max() + BOX_PAD + 1] = 1
    maps = dict(part["maps"])
    for key in (MAP_SOURCE, SHARP_SOURCE):
        maps[key] = np.where(box, maps[key], min(float(maps[key].min()), 0.0))
    return describe_cuts(part["image"], maps, SHARP_CUTS, 1.0)[0]


def score(labelled: list[Part], test: list[Part], describe_labelled: Callable[[Part], np.ndarray],
          describe_test: Callable[[Part], np.ndarray]) -> dict[str, Any]:  # fmt: skip
    """Balanced accuracy and per-family recall of test defects named by heads fitted on the labelled ones."""
    from sslinspect.fewshot.typing_fit import fit_typing

    n = len(DESCRIPTOR_NAMES)
    xl = np.stack([describe_labelled(p) for p in labelled])
    xt = np.stack([describe_test(p) for p in test])
    ylab = [p["label"] for p in labelled]
    fits = [fit_typing(xl[:, c * n : (c + 1) * n], ylab, kinds=("ensemble",), seed=0) for c in range(len(SHARP_CUTS))]
    proba = np.mean([f.head.predict(xt[:, c * n : (c + 1) * n]).proba for c, f in enumerate(fits)], 0)
    named = np.array(fits[0].head.classes)[proba.argmax(1)]
    truth = np.array([p["label"] for p in test])
    recall = {c: float(np.mean(named[truth == c] == c)) for c in sorted(set(truth))}
    return {"balanced_accuracy": float(np.mean(list(recall.values()))), "recall": recall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="an exported defect-aware model (model.onnx)")
    ap.add_argument("--labelled", type=Path, required=True,
                    help="quality data folder of the model's project: labels.csv, train_truth.csv, masks/")  # fmt: skip
    ap.add_argument("--test", type=Path, required=True, help="quality data folder to name: test.csv, masks/")
    args = ap.parse_args(argv)
    predictor = Predictor(args.model, device="cpu")
    if predictor.typing is None or not predictor.typing.needs_sharp:
        ap.error(f"{args.model}: not a defect-aware model with a typing head (no sharp map to cut)")
    with (args.labelled / "labels.csv").open(newline="") as fh:
        chosen = {r["path"] for r in csv.DictReader(fh) if r["label"] != "good"}
    truth_rows = _rows(args.labelled, "train_truth.csv", chosen)
    labelled = _parts(predictor, args.labelled, truth_rows, {r["path"]: r["mask"] for r in truth_rows})
    kinds = {p["label"] for p in labelled}
    test_rows = [r for r in _rows(args.test, "test.csv") if r["label"] in kinds and r["label"] != HELD_OUT]
    test = _parts(predictor, args.test, test_rows, {r["path"]: r["mask"] for r in test_rows})
    result = {
        "model": str(args.model),
        "labelled": len(labelled),
        "test": len(test),
        "cuts": [list(c) for c in SHARP_CUTS],
        "maps": score(labelled, test, _from_maps, _from_maps),
        "true_masks": score(labelled, test, _from_mask, _from_mask),
        "true_masks_labelled_only": score(labelled, test, _from_mask, _from_maps),
        "box_labelled": score(labelled, test, _from_box, _from_maps),
        "machine": describe_machine(),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
