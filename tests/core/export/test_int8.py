"""INT8 keeps what decides OK/NG (and the stem) in FP32, uses 8-bit weights unless told otherwise, and calibrates
on good and near-threshold images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from sslinspect.demo import DemoDataset
from sslinspect.export.int8 import backbone_nodes, calibration_rows, fp32_tries, quantisable_order, stem_nodes
from sslinspect.export.precision import convert_precision


def _images(demo_data) -> np.ndarray:  # type: ignore[no-untyped-def]
    from sslinspect.imageio import load_for_model

    return np.stack([load_for_model(p, 32) for p in sorted(demo_data.test_dir.glob("*.png"))])


def test_only_the_backbone_less_its_stem_is_quantised(trained_project: Path, demo_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = trained_project / "exports" / "model" / "model.onnx"
    fp32 = onnx.load(str(model))
    stem = set(stem_nodes(fp32))
    inside = set(backbone_nodes(fp32)) - stem
    outside = {n.name for n in fp32.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")} - inside - stem
    assert inside and outside and stem  # backbone convolutions; bank distances, map smoothing, classifier; the stem
    assert stem <= set(backbone_nodes(fp32))
    int8_path = tmp_path / "int8.onnx"
    convert_precision(model, int8_path, "int8", _images(demo_data))
    int8 = onnx.load(str(int8_path))
    made_by = {o: n.op_type for n in int8.graph.node for o in n.output}
    reads_int8 = {n.name for n in int8.graph.node if any(made_by.get(i) == "DequantizeLinear" for i in n.input)}
    assert reads_int8 & inside  # the backbone's convolutions run quantised ...
    assert not reads_int8 & outside  # ... and no distance, smoothing or classifier product does ...
    assert not reads_int8 & stem  # ... nor the convolution that reads the image


def _weight_levels(path: Path) -> int:
    """Largest |value| of the INT8 weight initialisers that feed a DequantizeLinear."""
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    ints = [
        numpy_helper.to_array(inits[n.input[0]])
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].data_type == onnx.TensorProto.INT8
    ]
    assert ints
    return max(int(np.abs(w.astype(np.int32)).max()) for w in ints)


def test_int8_weights_use_8_bits_unless_reduce_range(trained_project: Path, demo_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = trained_project / "exports" / "model" / "model.onnx"
    images = _images(demo_data)
    convert_precision(model, tmp_path / "full.onnx", "int8", images)
    convert_precision(model, tmp_path / "reduced.onnx", "int8", images, reduce_range=True)
    assert _weight_levels(tmp_path / "full.onnx") == 127  # symmetric per channel: each channel's largest is ±127
    assert _weight_levels(tmp_path / "reduced.onnx") <= 64  # 7 bits, for CPUs without VNNI


def test_calibration_mixes_near_threshold_and_good_images() -> None:
    scores = {r: r / 100 for r in range(100)}
    rows = calibration_rows(range(100), scores, suspected={90, 91}, threshold=0.5, n=20)
    near = sorted(range(100), key=lambda r: abs(r / 100 - 0.5))[:10]
    assert len(rows) == 20 and set(near) <= set(rows.tolist())
    assert not {90, 91} & set(rows.tolist())
    assert set(calibration_rows(range(50, 60), scores, set(), 0.5, 8).tolist()) <= set(range(50, 60))


def test_keep_fp32_leaves_the_backbones_first_operators_unquantised(
    trained_project: Path, demo_data: DemoDataset, tmp_path: Path
) -> None:
    model = trained_project / "exports" / "model" / "model.onnx"
    fp32 = onnx.load(str(model))
    order = quantisable_order(fp32)  # graph order
    assert len(order) >= 3 and fp32_tries(model)[0] == 0 and all(k < len(order) for k in fp32_tries(model))
    path = tmp_path / "int8_k2.onnx"
    convert_precision(model, path, "int8", _images(demo_data), keep_fp32=2)
    int8 = onnx.load(str(path))
    made_by = {o: n.op_type for n in int8.graph.node for o in n.output}
    reads_int8 = {n.name for n in int8.graph.node if any(made_by.get(i) == "DequantizeLinear" for i in n.input)}
    assert not reads_int8 & set(order[:2])  # the first two stay FP32 ...
    assert set(order[2:]) <= reads_int8  # ... every later backbone operator is quantised
