"""INT8 keeps what decides OK/NG in FP32 and calibrates on good and near-threshold images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from sslinspect.export.int8 import backbone_nodes, calibration_rows
from sslinspect.export.precision import convert_precision


def test_only_the_backbone_is_quantised(trained_project: Path, demo_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sslinspect.imageio import load_for_model

    model = trained_project / "exports" / "model" / "model.onnx"
    fp32 = onnx.load(str(model))
    inside = set(backbone_nodes(fp32))
    outside = {n.name for n in fp32.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")} - inside
    assert inside and outside  # backbone convolutions; bank distances, map smoothing, classifier
    images = np.stack([load_for_model(p, 32) for p in sorted(demo_data.test_dir.glob("*.png"))])
    int8_path = tmp_path / "int8.onnx"
    convert_precision(model, int8_path, "int8", images)
    int8 = onnx.load(str(int8_path))
    made_by = {o: n.op_type for n in int8.graph.node for o in n.output}
    reads_int8 = {n.name for n in int8.graph.node if any(made_by.get(i) == "DequantizeLinear" for i in n.input)}
    assert reads_int8 & inside  # the backbone's convolutions run quantised ...
    assert not reads_int8 & outside  # ... and no distance, smoothing or classifier product does


def test_calibration_mixes_near_threshold_and_good_images() -> None:
    scores = {r: r / 100 for r in range(100)}
    rows = calibration_rows(range(100), scores, suspected={90, 91}, threshold=0.5, n=20)
    near = sorted(range(100), key=lambda r: abs(r / 100 - 0.5))[:10]
    assert len(rows) == 20 and set(near) <= set(rows.tolist())
    assert not {90, 91} & set(rows.tolist())
    assert set(calibration_rows(range(50, 60), scores, set(), 0.5, 8).tolist()) <= set(range(50, 60))
