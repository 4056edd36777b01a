"""Locating defects: time of the satellite merging (``regions.cluster_components``) against the disk dilation it
replaced (the baseline, measured in the same run), and whether both group the components the same way. Prints one
JSON object.

The masks are what a thresholded anomaly map gives: a few small spots and short strokes, plus (``large``) one
region covering much of the frame, which sets a large merging radius (``MERGE_REL`` × its diameter).

    python bench/regions.py               # 256 and 512 px frames, about a minute (the baseline is the slow part)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout: `python bench/regions.py`

import cv2
import numpy as np

from bench.machine import describe as describe_machine
from sslinspect.defects import regions
from sslinspect.defects.regions import cluster_components


def dilation_clusters(mask: np.ndarray) -> np.ndarray:
    """The baseline: :func:`cluster_components` with every radius grown by a disk dilation (the code before
    2026-12-06, when the dilation had no upper radius)."""
    limit = regions.DILATE_UP_TO
    regions.DILATE_UP_TO = sys.maxsize
    try:
        return cluster_components(mask)[1]
    finally:
        regions.DILATE_UP_TO = limit


def make_mask(rng: np.random.Generator, side: int, large: bool) -> np.ndarray:
    """Spots and short strokes (and, with ``large``, one blob over much of the frame)."""
    m = np.zeros((side, side), np.uint8)
    s = side / 256
    if large:
        cv2.circle(m, (side // 2, side // 2), int(rng.uniform(40, 100) * s), 1, -1)
    for _ in range(int(rng.integers(2, 15))):
        c = (int(rng.integers(0, side)), int(rng.integers(0, side)))
        if rng.random() < 0.5:
            cv2.circle(m, c, max(1, int(rng.integers(1, 12) * s)), 1, -1)
        else:
            end = (c[0] + int(rng.integers(-30, 30) * s), c[1] + int(rng.integers(-30, 30) * s))
            cv2.line(m, c, end, 1, max(1, int(rng.integers(1, 3) * s)))
    return m


def same_grouping(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two cluster assignments (per component) make the same partition."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def _time(fn: Any, masks: list[np.ndarray]) -> float:
    t = time.perf_counter()
    for m in masks:
        fn(m)
    return (time.perf_counter() - t) / len(masks) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--masks", type=int, default=60, help="masks per case without a large region (default 60)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    cases = []
    for side in (256, 512):
        for large in (False, True):
            n = args.masks if not large else max(1, args.masks // (4 if side == 256 else 30))  # the baseline is slow
            masks = [make_mask(rng, side, large) for _ in range(n)]
            baseline = _time(dilation_clusters, masks)
            now = _time(lambda m: cluster_components(m)[1], masks)
            agree = sum(same_grouping(dilation_clusters(m), cluster_components(m)[1]) for m in masks) / len(masks)
            cases.append({
                "frame": side, "large_region": large, "masks": len(masks),
                "baseline_dilation_ms": round(baseline, 3), "now_ms": round(now, 3),
                "speedup": round(baseline / now, 1), "same_grouping": round(agree, 3),
            })  # fmt: skip
    out = {
        "benchmark": "regions",
        "machine": describe_machine(opencv=cv2.__version__),
        "cases": cases,
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
