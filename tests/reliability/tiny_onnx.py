"""Small ONNX graphs with this product's metadata, built with ``onnx.helper`` (no torch, milliseconds to build).

The anomaly score is the mean pixel value / 255, so a test picks the verdict by the brightness of its image.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from sslinspect.infer.onnx_predictor import METADATA_KEY, SUPPORTED_FORMAT

SIZE = 8


def meta(**over: object) -> dict[str, object]:
    """The metadata of a valid model; ``over`` replaces fields."""
    return {
        "format": SUPPORTED_FORMAT,
        "classes": ["good", "scratch"],
        "threshold": 0.5,
        "input": {"name": "images", "dtype": "uint8", "layout": "NHWC", "shape": ["N", SIZE, SIZE, 3]},
        "threshold_input": "threshold",
        "outputs": ["probabilities", "anomaly_score", "is_defect"],
        "image_size": SIZE,
        **over,
    }


def model(
    path: Path,
    metadata: dict[str, object] | None = None,
    *,
    n_probs: int = 2,
    decision_offset: int | None = None,
    class_bias: list[float] | None = None,
) -> Path:
    """Write a model to ``path``: ``n_probs`` probability columns (equal, or ``softmax(class_bias)``); with
    ``decision_offset`` a ``decision`` output (``2·is_defect + offset``; 0 gives the correct codes)."""
    md = dict(metadata if metadata is not None else meta())
    images = helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", SIZE, SIZE, 3])
    threshold = helper.make_tensor_value_info("threshold", TensorProto.FLOAT, [1])
    outputs = [
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_probs]),
        helper.make_tensor_value_info("anomaly_score", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("is_defect", TensorProto.BOOL, ["N"]),
    ]
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Div", ["m", "k255"], ["anomaly_score"]),
        helper.make_node("Unsqueeze", ["m", "ax"], ["m1"]),
        helper.make_node("Concat", ["m1"] * n_probs, ["logits0"], axis=1),
        helper.make_node("Add", ["logits0", "class_bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("Greater", ["anomaly_score", "threshold"], ["is_defect"]),
    ]
    inits = [
        helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
        helper.make_tensor("k255", TensorProto.FLOAT, [], [255.0]),
        helper.make_tensor("threshold", TensorProto.FLOAT, [1], [0.5]),
        helper.make_tensor("class_bias", TensorProto.FLOAT, [n_probs], class_bias or [0.0] * n_probs),
    ]
    if decision_offset is not None:
        outputs.append(helper.make_tensor_value_info("decision", TensorProto.INT64, ["N"]))
        nodes += [
            helper.make_node("Cast", ["is_defect"], ["d"], to=TensorProto.INT64),
            helper.make_node("Mul", ["d", "two"], ["d2"]),
            helper.make_node("Add", ["d2", "offset"], ["decision"]),
        ]
        inits += [
            helper.make_tensor("two", TensorProto.INT64, [], [2]),
            helper.make_tensor("offset", TensorProto.INT64, [], [decision_offset]),
        ]
        md.setdefault("outputs", [])
        md["outputs"] = [*list(md["outputs"]), "decision"]  # type: ignore[call-overload]
    graph = helper.make_graph(nodes, "g", [images, threshold], outputs, inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    helper.set_model_props(m, {METADATA_KEY: json.dumps(md)})
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def image(path: Path, value: int = 40, width: int = SIZE) -> Path:
    """A PNG of uniform grey ``value`` (score ``value / 255``): dark is OK, bright (> 127) is NG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.full((SIZE, width, 3), value, np.uint8))
    assert ok
    path.write_bytes(buf.tobytes())
    return path
