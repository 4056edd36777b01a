"""``predict`` runs only models that carry this product's metadata and input spec; anything else is refused clearly.

The models here are built directly with ``onnx.helper`` (no torch): a valid ONNX graph is not enough.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from sslinspect.cli import main
from sslinspect.errors import ModelError
from sslinspect.infer.onnx_predictor import METADATA_KEY, SUPPORTED_FORMAT, Predictor
from tests.core.image_cases import bgr_image, encode, write

SIZE = 8


def _model(path: Path, meta: dict[str, object] | None, *, input_type: int = TensorProto.UINT8) -> Path:
    """A small graph with the product's input/output names: probabilities from the mean pixel, constant score."""
    images = helper.make_tensor_value_info("images", input_type, ["N", SIZE, SIZE, 3])
    threshold = helper.make_tensor_value_info("threshold", TensorProto.FLOAT, [1])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])
    score = helper.make_tensor_value_info("anomaly_score", TensorProto.FLOAT, ["N"])
    defect = helper.make_tensor_value_info("is_defect", TensorProto.BOOL, ["N"])
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "ax"], ["m1"]),
        helper.make_node("Concat", ["m1", "m1"], ["logits"], axis=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("Mul", ["m", "zero"], ["anomaly_score"]),
        helper.make_node("Greater", ["anomaly_score", "threshold"], ["is_defect"]),
    ]
    inits = [
        helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("threshold", TensorProto.FLOAT, [1], [0.5]),
    ]
    graph = helper.make_graph(nodes, "g", [images, threshold], [probs, score, defect], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if meta is not None:
        helper.set_model_props(model, {METADATA_KEY: json.dumps(meta) if isinstance(meta, dict) else str(meta)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _meta(**over: object) -> dict[str, object]:
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


def test_a_model_with_our_metadata_runs(tmp_path: Path) -> None:
    """The control case: the graphs below differ from this one only in what the test names."""
    predictor = Predictor(_model(tmp_path / "ok.onnx", _meta()))
    img = write(tmp_path / "a.png", encode(".png", bgr_image()))
    (pred,) = list(predictor.predict_paths([img]))
    assert pred.error == "" and pred.label in ("good", "scratch")


@pytest.mark.parametrize(
    ("meta", "input_type", "message"),
    [
        (None, TensorProto.UINT8, "not an SSL Inspect model (no 'sslinspect' metadata)"),
        ("{not json", TensorProto.UINT8, "corrupt SSL Inspect metadata"),
        (_meta(format="acme.onnx/1"), TensorProto.UINT8, "unknown model format 'acme.onnx/1'"),
        (_meta(format="sslinspect.onnx/9"), TensorProto.UINT8, "model format sslinspect.onnx/9 needs a newer"),
        (_meta(), TensorProto.FLOAT, "the model's input does not match its metadata (expected uint8 N×8×8×3)"),
        (_meta(image_size=16), TensorProto.UINT8, "the model's input does not match its metadata"),
        (_meta(input={"name": "pixels"}), TensorProto.UINT8, "the model's input does not match its metadata"),
        (_meta(outputs=["a", "b", "c"]), TensorProto.UINT8, "the model's outputs do not match its metadata"),
    ],
)
def test_foreign_or_inconsistent_models_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], meta: object, input_type: int, message: str
) -> None:
    path = _model(tmp_path / "m.onnx", meta, input_type=input_type)  # type: ignore[arg-type]
    with pytest.raises(ModelError) as err:
        Predictor(path)
    assert str(err.value).startswith(f"{path}: {message}")
    img = write(tmp_path / "a.png", encode(".png", bgr_image()))
    assert main(["predict", str(path), str(img)]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}: {message}")


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x08\x07" + bytes(200)])
def test_files_that_are_not_onnx_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        Predictor(path)
