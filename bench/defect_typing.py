"""Few-shot defect typing from located regions: balanced accuracy from ``--shots`` labels per type over
``--draws`` random label draws, per-type recall, the confusion matrix, and how a never-labelled family is typed
(``unknown`` is the right answer). Prints one JSON object.

Two ways of locating each defect are measured with the same descriptor and classifier:

- ``true_masks``: the region is the ground-truth mask (the bound set by the descriptor and the classifier);
- ``predicted_map``: the region is located in a stand-in for a predicted anomaly map (the true mask shrunk to
  a 1/8 patch grid, blurred, scaled to a random peak, with noise), thresholded at the calibrated level 1, then
  refined to the defect's own pixels (``regions.refine``; ``--no-refine``: described as located).

Data: drawn defects on a noise texture (``tests/core/fewshot/drawn.py``; six types plus a never-labelled warp),
or ``--csv FILE`` with columns ``path,mask,label`` (paths relative to the file; masks are images, non-zero =
defect; rows without a mask are skipped) and ``--held-out LABEL`` naming the family that is never labelled.

    python bench/defect_typing.py                     # drawn defects, about a minute on 2 cores
    python bench/defect_typing.py --csv data/types.csv --held-out contamination
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout: `python bench/defect_typing.py`

import cv2
import numpy as np

from sslinspect.defects.describe import DESCRIPTOR_NAMES, describe
from sslinspect.defects.regions import locate, refine, regions_from_mask
from sslinspect.defects.typing_head import UNKNOWN
from sslinspect.fewshot.typing_fit import balanced_accuracy, fit_typing


def _load_csv(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    images, masks, labels = [], [], []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if not row.get("mask"):  # a good image: nothing to type
                continue
            img = cv2.imread(str(path.parent / row["path"]), cv2.IMREAD_COLOR)
            mask = cv2.imread(str(path.parent / row["mask"]), cv2.IMREAD_GRAYSCALE)
            if img is None or mask is None:
                raise SystemExit(f"cannot read {row['path']} or {row['mask']}")
            images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            masks.append(cv2.resize(mask, img.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0)
            labels.append(row["label"])
    return images, masks, labels


def fake_map(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stand-in for a predicted anomaly map: patch-grid (1/8) coverage, blurred, random peak, noise."""
    h, w = mask.shape
    small = cv2.resize(mask.astype(np.float32), (max(w // 8, 2), max(h // 8, 2)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 0.8)
    peak = rng.uniform(1.6, 3.0)
    amap = peak * small / max(float(small.max()), 1e-6) + 0.3 + rng.normal(0, 0.12, small.shape)
    return amap.astype(np.float32)


def _describe_all(
    images: list[np.ndarray], masks: list[np.ndarray], seed: int, *, refined: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Descriptors from the true masks, from the stand-in maps, and whether the map found anything."""
    rng = np.random.default_rng(seed)
    true_x, map_x, found = [], [], []
    for img, mask in zip(images, masks, strict=True):
        regions = regions_from_mask(mask)
        true_x.append(describe(img, regions[0].mask if regions else mask))
        located = locate(fake_map(mask, rng), 1.0, mask.shape)
        found.append(bool(located))
        if located and refined:
            located[0] = refine(img, located[0])
        map_x.append(describe(img, located[0].mask) if located else np.zeros(len(DESCRIPTOR_NAMES), np.float32))
    return np.stack(true_x), np.stack(map_x), np.array(found)


def _draw(labels: np.ndarray, types: list[str], shots: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``shots`` random rows per type."""
    return np.concatenate([rng.choice(np.flatnonzero(labels == t), shots, replace=False) for t in types])


def _one_draw(
    x: np.ndarray, labels: np.ndarray, found: np.ndarray, types: list[str], held: str, shots: int, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    train = _draw(labels, types, shots, rng)
    fit = fit_typing(x[train], labels[train].tolist(), kinds=("prototype", "logistic", "trees"), seed=seed)
    test = np.setdiff1d(np.flatnonzero(np.isin(labels, types)), train)
    res = fit.head.predict(x[test])
    pred = np.array([lab if ok else UNKNOWN for lab, ok in zip(res.labels, found[test], strict=True)])
    closed = np.array([fit.head.classes[i] for i in res.proba.argmax(1)])
    y = np.array([types.index(t) for t in labels[test]])
    to_idx = {t: i for i, t in enumerate(types)}
    novel = np.flatnonzero(labels == held)
    out: dict[str, Any] = {
        "kind": fit.head.kind,
        "cv": fit.cv,
        "balanced_accuracy": balanced_accuracy(y, np.array([to_idx.get(p, -1) for p in pred]), len(types)),
        "balanced_accuracy_closed": balanced_accuracy(y, np.array([to_idx[p] for p in closed]), len(types)),
        "recall": {t: float((pred[labels[test] == t] == t).mean()) for t in types},
        "known_unknown_rate": float((pred == UNKNOWN).mean()),
        "pred": pred.tolist(),
        "truth": labels[test].tolist(),
    }
    if len(novel):
        held_res = fit.head.predict(x[novel])
        held_pred = [lab if ok else UNKNOWN for lab, ok in zip(held_res.labels, found[novel], strict=True)]
        out["held_out"] = held_pred
    return out


def _leave_type_out(x: np.ndarray, labels: np.ndarray, types: list[str], shots: int, seed: int) -> dict[str, float]:
    """Per type: the share of its regions called ``unknown`` by a head fitted on the other types."""
    rng = np.random.default_rng(seed)
    train = _draw(labels, types, shots, rng)
    rates = {}
    for t in types:
        keep = train[labels[train] != t]
        head = fit_typing(x[keep], labels[keep].tolist(), kinds=("prototype",), seed=seed).head
        rows = np.flatnonzero(labels == t)
        rates[t] = float(head.predict(x[rows]).unknown.mean())
    return rates


def _confusion(draws: list[dict[str, Any]], types: list[str], held: str) -> dict[str, dict[str, int]]:
    cols = [*types, UNKNOWN]
    conf = {t: dict.fromkeys(cols, 0) for t in [*types, held]}
    for d in draws:
        for t, p in zip(d["truth"], d["pred"], strict=True):
            conf[t][p] += 1
        for p in d.get("held_out", []):
            conf[held][p] += 1
    return conf


def _summary(
    x: np.ndarray, labels: np.ndarray, found: np.ndarray, types: list[str], held: str, args: argparse.Namespace
) -> dict[str, Any]:
    draws = [_one_draw(x, labels, found, types, held, args.shots, args.seed + d) for d in range(args.draws)]
    bal = np.array([d["balanced_accuracy"] for d in draws])
    closed = np.array([d["balanced_accuracy_closed"] for d in draws])
    held_unknown = [np.mean([p == UNKNOWN for p in d["held_out"]]) for d in draws if d.get("held_out")]
    lto = [_leave_type_out(x, labels, types, args.shots, args.seed + d) for d in range(args.draws)]
    return {
        "balanced_accuracy": {"mean": float(bal.mean()), "sd": float(bal.std(ddof=1)) if len(bal) > 1 else 0.0},
        "balanced_accuracy_closed_set": {"mean": float(closed.mean()), "sd": float(closed.std(ddof=1))},
        "per_type_recall": {t: float(np.mean([d["recall"][t] for d in draws])) for t in types},
        "known_called_unknown": float(np.mean([d["known_unknown_rate"] for d in draws])),
        "held_out_family": held,
        "held_out_unknown": float(np.mean(held_unknown)) if held_unknown else None,
        "leave_type_out_unknown": {t: float(np.mean([r[t] for r in lto])) for t in types},
        "kinds_chosen": [d["kind"] for d in draws],
        "confusion": _confusion(draws, types, held),
        "located": float(found.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, help="path,mask,label CSV (default: drawn defects)")
    ap.add_argument("--held-out", default="warp", help="the family never labelled (default: warp)")
    ap.add_argument("--per-type", type=int, default=25, help="drawn frames per type")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-refine", action="store_true", help="describe the map's coarse regions as located")
    args = ap.parse_args()
    if args.csv:
        images, masks, names = _load_csv(args.csv)
    else:
        from tests.core.fewshot.drawn import dataset

        images, masks, names = dataset(args.per_type, args.seed, novel=args.per_type)
    labels = np.array(names)
    types = sorted(set(names) - {args.held_out})
    t0 = time.perf_counter()
    true_x, map_x, found = _describe_all(images, masks, args.seed, refined=not args.no_refine)
    seconds = (time.perf_counter() - t0) / max(2 * len(images), 1)
    everywhere = np.ones(len(labels), bool)
    out = {
        "data": str(args.csv) if args.csv else "drawn",
        "images": len(images),
        "types": types,
        "shots": args.shots,
        "draws": args.draws,
        "refine": not args.no_refine,
        "descriptor": list(DESCRIPTOR_NAMES),
        "seconds_per_region": round(seconds, 4),
        "true_masks": _summary(true_x, labels, everywhere, types, args.held_out, args),
        "predicted_map": _summary(map_x, labels, found, types, args.held_out, args),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
