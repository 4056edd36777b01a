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

``--draws N`` labels the development set's own defects instead: each draw picks 5 of each family (30 a family in a
development set) at random and names the other 25, N times (rows ``maps`` and ``true_masks``; balanced accuracy mean,
sd and per draw, mean per-family recall, the most frequent confusions a draw). A benchmark set has 6 training defects
a family, so its label draws (``bench/quality.py --label-draws``) share at least 4 of every 5 labels; these share
about 1 in 6, and one set of described defects serves every draw (10 draws of brick: about 3 minutes on a
2-core VM, two runs at a time)::

    python bench/naming_regions.py --model W/models/brick-s0/model.onnx --test dev/brick --draws 10
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import numpy as np

from bench.machine import describe as describe_machine
from bench.quality_data import frame_at
from bench.quality_defects import DEFAULT_HELD_OUT as HELD_OUT
from bench.quality_metrics import recall
from sslinspect.defects.describe import DESCRIPTOR_NAMES, describe
from sslinspect.defects.naming import SHARP_CUTS, describe_cuts
from sslinspect.defects.typing_head import KIND_SOURCE, MAP_SOURCE, SHARP_SOURCE
from sslinspect.infer.onnx_predictor import Predictor

BOX_PAD = 8  # px round the true mask's bounding box
SHOTS = 5  # labels per family in a --draws label draw (issue 11: 5 per type)
DRAW_SEED = 11  # the draws' random stream
Part = dict[str, Any]


def _rows(root: Path, table: str, keep: set[str] | None = None) -> list[dict[str, str]]:
    with (root / table).open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] not in ("good", "")]
    return [r for r in rows if keep is None or r["path"] in keep]


def _parts(predictor: Predictor, root: Path, rows: list[dict[str, str]]) -> list[Part]:
    """Each defect's image at the model's input size, its maps from the exported graph and its true mask (the
    row's ``mask``)."""
    size = predictor.image_size
    parts: list[Part] = []
    for start in range(0, len(rows), 16):
        chunk = rows[start : start + 16]
        frames = [frame_at(root, r["path"], r["mask"], size) for r in chunk]
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


def _name(xl: np.ndarray, ylab: list[str], xt: np.ndarray) -> np.ndarray:
    """Types of the rows ``xt`` named by one ``ensemble`` head per cut fitted on ``xl`` (probabilities averaged)."""
    from sslinspect.fewshot.typing_fit import fit_typing

    n = len(DESCRIPTOR_NAMES)
    fits = [fit_typing(xl[:, c * n : (c + 1) * n], ylab, kinds=("ensemble",), seed=0) for c in range(xl.shape[1] // n)]
    proba = np.mean([f.head.predict(xt[:, c * n : (c + 1) * n]).proba for c, f in enumerate(fits)], 0)
    return np.array(fits[0].head.classes)[proba.argmax(1)]


def score(labelled: list[Part], test: list[Part], describe_labelled: Callable[[Part], np.ndarray],
          describe_test: Callable[[Part], np.ndarray]) -> dict[str, Any]:  # fmt: skip
    """Balanced accuracy and per-family recall of test defects named by heads fitted on the labelled ones."""
    xl = np.stack([describe_labelled(p) for p in labelled])
    xt = np.stack([describe_test(p) for p in test])
    named = _name(xl, [p["label"] for p in labelled], xt)
    truth = [p["label"] for p in test]
    per_family = {c: recall(truth, named.tolist(), c) for c in sorted(set(truth))}
    return {"balanced_accuracy": float(np.mean(list(per_family.values()))), "recall": per_family}


def draw_split(labels: Sequence[str], draw: int, shots: int = SHOTS) -> np.ndarray:
    """Which of ``labels`` label draw ``draw`` labels: ``shots`` of each family at random (a function of ``draw``
    alone); the others are named. Every family needs more than ``shots`` rows, so that some are left to name."""
    y = np.asarray(labels)
    rng = np.random.default_rng([DRAW_SEED, draw])
    chosen = np.zeros(len(y), bool)
    for family in sorted(set(y.tolist())):
        rows = np.flatnonzero(y == family)
        if len(rows) <= shots:
            raise ValueError(f"{family}: {len(rows)} defects, need more than {shots} to label {shots}, name the rest")
        chosen[rng.choice(rows, shots, replace=False)] = True
    return chosen


def score_draws(x: np.ndarray, labels: Sequence[str], draws: int, shots: int = SHOTS) -> dict[str, Any]:
    """Name the rows of descriptors ``x`` over ``draws`` label draws (:func:`draw_split`): per draw, heads fitted
    on the drawn rows name the rest. Balanced accuracy (mean, sd, per draw), mean per-family recall and the most
    frequent confusions (true -> named, mean count per draw)."""
    y = np.asarray(labels)
    families = sorted(set(y.tolist()))
    per_draw, mean_recall, confusion = [], dict.fromkeys(families, 0.0), Counter[str]()
    for d in range(draws):
        chosen = draw_split(labels, d, shots)
        named, truth = _name(x[chosen], y[chosen].tolist(), x[~chosen]), y[~chosen]
        rec = {f: recall(truth.tolist(), named.tolist(), f) for f in families}
        per_draw.append(float(np.mean(list(rec.values()))))
        for f in families:
            mean_recall[f] += rec[f] / draws
        confusion.update(f"{t} -> {n}" for t, n in zip(truth, named, strict=True) if t != n)
    return {
        "balanced_accuracy": float(np.mean(per_draw)),
        "sd": float(np.std(per_draw, ddof=1)) if draws > 1 else 0.0,
        "per_draw": per_draw,
        "recall": mean_recall,
        "confusion": {k: v / draws for k, v in confusion.most_common(8)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="an exported defect-aware model (model.onnx)")
    ap.add_argument("--labelled", type=Path,
                    help="quality data folder of the model's project: labels.csv, train_truth.csv, masks/")  # fmt: skip
    ap.add_argument("--test", type=Path, required=True, help="quality data folder to name: test.csv, masks/")
    ap.add_argument("--draws", type=int, default=0, metavar="N",
                    help=f"label {SHOTS} of each family of --test's own defects, name the rest, over N draws "
                    "(no --labelled needed)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.draws < 0 or (args.draws == 0 and args.labelled is None):
        ap.error("give --labelled, or --draws N (N >= 1) to label the test set's own defects")
    predictor = Predictor(args.model, device="cpu")
    if predictor.typing is None or not predictor.typing.needs_sharp:
        ap.error(f"{args.model}: not a defect-aware model with a typing head (no sharp map to cut)")
    result: dict[str, Any] = {"model": str(args.model), "cuts": [list(c) for c in SHARP_CUTS]}
    if args.draws:
        rows = [r for r in _rows(args.test, "test.csv") if r["label"] != HELD_OUT]
        parts = _parts(predictor, args.test, rows)
        labels = [p["label"] for p in parts]
        result |= {"draws": args.draws, "shots": SHOTS, "defects": len(parts)}
        for row, describe_part in (("maps", _from_maps), ("true_masks", _from_mask)):
            result[row] = score_draws(np.stack([describe_part(p) for p in parts]), labels, args.draws)
    else:
        with (args.labelled / "labels.csv").open(newline="") as fh:
            chosen = {r["path"] for r in csv.DictReader(fh) if r["label"] != "good"}
        truth_rows = _rows(args.labelled, "train_truth.csv", chosen)
        labelled = _parts(predictor, args.labelled, truth_rows)
        kinds = {p["label"] for p in labelled}
        test_rows = [r for r in _rows(args.test, "test.csv") if r["label"] in kinds and r["label"] != HELD_OUT]
        test = _parts(predictor, args.test, test_rows)
        result |= {
            "labelled": len(labelled),
            "test": len(test),
            "maps": score(labelled, test, _from_maps, _from_maps),
            "true_masks": score(labelled, test, _from_mask, _from_mask),
            "true_masks_labelled_only": score(labelled, test, _from_mask, _from_maps),
            "box_labelled": score(labelled, test, _from_box, _from_maps),
        }
    result["machine"] = describe_machine()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
