"""What INT8 quantises and what it is calibrated on.

Only the backbone is quantised (its convolutions and, for a ViT, its matrix products), and not its stem, the
convolution that reads the image: everything after the backbone decides scores near the threshold and stays FP32
(the distance to the memory bank, the segmentation decoder, the Gaussian smoothing, spreading and normalisation of
the anomaly map, the classifier). The stem stays FP32 because, quantised, it was *slower* in ONNX Runtime (its
large stride-2 output then has to be dequantised and reordered for the max-pool and the decoder) and less accurate
(that output feeds the segmentation decoder's finest term directly; bench/RESULTS.md). Activation ranges are
calibrated on presumed-good images *and* on the images whose held-out score is closest to the threshold, so the
ranges cover what decides OK against NG.

When the export's check refuses the result, the export tries again with the backbone's first operators after the stem
kept FP32 as well (:data:`FP32_TRIES`): their rounding error reaches every later layer and, in a segmentation model,
the decoder's finest term directly. On the quality benchmark's 12 models (4 surfaces × 3 seeds) the first try passed 6,
the first two operators kept FP32 4 more, the first four (a ResNet's first stage) the last 2; each costs speed
(bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

#: Operators quantised inside the backbone (weights per channel, INT8; activations UINT8).
QUANTISED_OPS = ("Conv", "MatMul", "Gemm")
#: The exporter records each node's module path in the ``namespace`` metadata; backbone nodes sit under this.
BACKBONE_SCOPE = "/net.backbone"
#: The INT8 tries, in order: how many of the backbone's first quantisable operators after the stem stay FP32 (for a
#: ResNet-18: none, its first block, its first stage). The first that passes the export's check is written.
FP32_TRIES: tuple[int, ...] = (0, 2, 4)


def backbone_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the quantisable nodes that belong to the backbone (by the exporter's module-path metadata)."""
    names = []
    for node in model.graph.node:
        if node.op_type not in QUANTISED_OPS:
            continue
        scope = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        if BACKBONE_SCOPE in scope:
            names.append(node.name)
    return names


def stem_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the convolutions that read the image: weights with 3 input channels (a CNN's stem, a ViT's patch
    embedding)."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Conv"
        and len(n.input) > 1
        and len(shapes.get(n.input[1], ())) == 4
        and shapes[n.input[1]][1] == 3
    ]


def quantisable_order(model: onnx.ModelProto) -> list[str]:
    """The backbone's quantisable nodes less its stem, in graph order (``keep_fp32`` counts from the first)."""
    stem = set(stem_nodes(model))
    return [n for n in backbone_nodes(model) if n not in stem]


def quantisable_nodes(src: Path, pre: Path, keep_fp32: int = 0) -> list[str]:
    """The backbone nodes of ``src``, less its stem and the ``keep_fp32`` first after it (graph order), that are still
    there (by name) after pre-processing into ``pre``.

    Pre-processing folds BatchNorm into the convolutions and keeps their names, but drops the metadata, hence the
    lookup in the original graph.
    """
    model = onnx.load(str(src), load_external_data=False)  # initialisers keep their shapes
    wanted = set(quantisable_order(model)[keep_fp32:])
    kept = onnx.load(str(pre), load_external_data=False)
    return [n.name for n in kept.graph.node if n.name in wanted]


def fp32_tries(src: Path) -> tuple[int, ...]:
    """The :data:`FP32_TRIES` that leave something to quantise in the model ``src`` (a small backbone has fewer)."""
    n = len(quantisable_order(onnx.load(str(src), load_external_data=False)))
    return tuple(k for k in FP32_TRIES if k < n) or (0,)


def calibration_rows(
    candidates: Sequence[int],
    scores: Mapping[int, float],
    suspected: set[int],
    threshold: float,
    n: int,
    seed: int = 0,
) -> np.ndarray:
    """Up to ``n`` rows: half the candidates whose score is nearest ``threshold``, half random presumed-good ones.

    Args:
        candidates: Rows that may be used (never the rows the accuracy check runs on).
        scores: Held-out anomaly score per row (rows without one count as presumed good).
        suspected: Rows the training flagged as suspected defects (not "good").
        threshold: The NG threshold.
        n: How many rows to return.
        seed: For the random half.
    """
    pool = np.asarray(list(candidates), dtype=np.int64)
    scored = [r for r in pool.tolist() if r in scores]
    near = sorted(scored, key=lambda r: abs(scores[r] - threshold))[: n // 2]
    good = np.setdiff1d(pool, np.array([*near, *suspected], dtype=np.int64))
    rng = np.random.default_rng(seed)
    fill = rng.choice(good, size=min(n - len(near), len(good)), replace=False) if len(good) else good
    return np.sort(np.concatenate([np.array(near, dtype=np.int64), fill.astype(np.int64)]))


def project_calibration_rows(
    scores_csv: Path | None, index: Mapping[int, int], n_images: int, check: np.ndarray, threshold: float, n: int
) -> np.ndarray:
    """:func:`calibration_rows` for a project: held-out scores from the few-shot run's ``scores.csv`` (by image id,
    mapped to cache rows by ``index``), never one of the ``check`` rows. Without scores: random non-check rows."""
    import csv

    scores: dict[int, float] = {}
    suspected: set[int] = set()
    if scores_csv is not None and scores_csv.is_file():
        with scores_csv.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                r = index.get(int(row["image_id"]))
                if r is None or not row.get("anomaly_score"):
                    continue
                scores[r] = float(row["anomaly_score"])
                if row.get("suspected") == "1":
                    suspected.add(r)
    candidates = np.setdiff1d(np.arange(n_images), check)
    if len(candidates) == 0:  # a tiny project: calibrate on what there is
        candidates = np.arange(n_images)
    return calibration_rows(candidates.tolist(), scores, suspected, threshold, n)
