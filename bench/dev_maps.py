"""How well an exported model's anomaly map finds defects on a development set, through ONNX Runtime as ``predict``
runs it. Prints one JSON object (and writes it with ``--out``).

Scores: image AUROC of the graph's ``anomaly_score`` over the labelled families (the benchmark's held-out family,
``particle``, reported apart and never in the headline), per family; pixel AUROC of the raw ``anomaly_map`` against the
masks, pooled and per family; AUPRO (every defect region weighs alike, ``bench.quality_metrics.aupro``), pooled and
per family; the good frames' score median and 90th percentile; and, with ``--edge``, how often a
defect is still found when the frame is rolled so the defect sits 3 px from the left edge (found: its peak inside the
mask above the 90th percentile of the good frames' map peaks; defects wider than 100 px are left out). The roll puts a
seam in the frame far from the defect; only the peak inside the mask is read.

Name a development set, never the test sets you report, e.g. seed 7 made by ``bench/quality_data.py``
(``generate_surface(Path("dev"), SetParams("brick", seed=7, n_train=60))``), and a model that
``bench/quality.py --work W`` exported::

    python bench/dev_maps.py --model W/models/brick-s0/model.onnx --test dev/brick --edge
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import numpy as np

from bench.quality_data import GOOD, frame_at
from bench.quality_defects import DEFAULT_HELD_OUT as HELD_OUT
from bench.quality_metrics import aupro, aupro_per_family, auroc, per_family_auroc, pixel_auroc, pixel_auroc_per_family
from sslinspect.infer.onnx_predictor import Predictor

EDGE_PX = 3  # where the defect's left end lands after the roll
WIDEST = 100  # px: wider defects cannot be moved to the edge whole


def _frames(predictor: Predictor, root: Path, rows: list[dict[str, str]]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The frames at the model's input size and their true masks (all False for good frames)."""
    frames = [frame_at(root, r["path"], r.get("mask", ""), predictor.image_size) for r in rows]
    return np.stack([f for f, _ in frames]), [m for _, m in frames]


def _run(predictor: Predictor, images: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The graph's ``anomaly_score`` and its (normalised, model-input-size) ``anomaly_map`` per frame."""
    scores: list[float] = []
    maps: list[np.ndarray] = []
    for s in range(0, len(images), 16):
        out = predictor.run_all(images[s : s + 16], ["anomaly_score", "anomaly_map"])
        scores.extend(np.asarray(out["anomaly_score"], np.float64).reshape(-1).tolist())
        maps.extend(np.asarray(m, np.float32).reshape(m.shape[-2:]) for m in out["anomaly_map"])
    return np.array(scores), maps


def _edge(
    predictor: Predictor, images: np.ndarray, maps: list[np.ndarray], masks: list[np.ndarray], labels: list[str]
) -> dict[str, Any]:
    """Share of defects found in place (``maps``, already run) and rolled to the left edge (peak in the mask above
    the 90th percentile of the good frames' map peaks)."""
    bar = float(np.percentile([m.max() for m, lab in zip(maps, labels, strict=True) if lab == GOOD], 90))
    rows = [i for i, (lab, m) in enumerate(zip(labels, masks, strict=True)) if lab not in (GOOD, HELD_OUT) and m.any()]
    rows = [i for i in rows if np.ptp(np.nonzero(masks[i])[1]) <= WIDEST]
    shifts = [EDGE_PX - int(np.nonzero(masks[i])[1].min()) for i in rows]
    rolled = np.stack([np.roll(images[i], s, axis=1) for i, s in zip(rows, shifts, strict=True)])
    _, moved = _run(predictor, rolled)
    peak = [float(maps[i][masks[i]].max()) for i in rows]
    peak_moved = [float(m[np.roll(masks[i], s, axis=1)].max()) for i, s, m in zip(rows, shifts, moved, strict=True)]
    return {
        "defects": len(rows),
        "good_peak_p90": round(bar, 4),
        "found_in_place": round(float(np.mean(np.array(peak) > bar)), 4),
        "found_at_edge": round(float(np.mean(np.array(peak_moved) > bar)), 4),
        "peak_median_in_place": round(float(np.median(peak)), 4),
        "peak_median_at_edge": round(float(np.median(peak_moved)), 4),
    }


def evaluate(model: Path, test: Path, *, edge: bool = False) -> dict[str, Any]:
    """The figures of ``model`` on the development set at ``test`` (its ``test.csv`` with masks)."""
    with (test / "test.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    predictor = Predictor(model, device="cpu")
    images, masks = _frames(predictor, test, rows)
    labels = [r["label"] for r in rows]
    scores, maps = _run(predictor, images)
    good = np.array([lab == GOOD for lab in labels])
    out: dict[str, Any] = {"model": str(model), "test": str(test), "frames": len(rows)}
    seen = np.array([lab not in (GOOD, HELD_OUT) for lab in labels])
    out["image_auroc"] = auroc(seen[seen | good], scores[seen | good])
    per_family = per_family_auroc(labels, scores, sorted(set(labels) - {GOOD}), good=GOOD)
    out["per_family_image_auroc"] = {f: round(v, 4) for f, v in per_family.items()}
    keep = [i for i, lab in enumerate(labels) if lab != HELD_OUT]
    out["pixel_auroc"] = pixel_auroc([maps[i] for i in keep], [masks[i] for i in keep])
    out["per_family_pixel_auroc"] = {
        f: round(v, 4) for f, v in pixel_auroc_per_family(maps, masks, labels, good=GOOD).items()
    }
    out["aupro"] = aupro([maps[i] for i in keep], [masks[i] for i in keep])
    out["per_family_aupro"] = {f: round(v, 4) for f, v in aupro_per_family(maps, masks, labels, good=GOOD).items()}
    out["held_out"] = {"family": HELD_OUT, "image_auroc": out["per_family_image_auroc"].get(HELD_OUT)}
    out["good_score_median"] = float(np.median(scores[good]))
    out["good_score_p90"] = float(np.percentile(scores[good], 90))
    if edge:
        out["edge"] = _edge(predictor, images, maps, masks, labels)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run :func:`evaluate` from the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="exported model.onnx (with its model.json)")
    p.add_argument("--test", type=Path, required=True, help="development set folder (test.csv, test/, masks/)")
    p.add_argument("--edge", action="store_true", help="also move each defect to the frame's left edge")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    result = evaluate(args.model, args.test, edge=args.edge)
    text = json.dumps(result, indent=1, default=float)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
