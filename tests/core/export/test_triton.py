"""The Triton repository: config.pbtxt parsed by protobuf's own text-format parser against (a subset of) Triton's
ModelConfig schema, names/types/dims checked against the ONNX graph; labels.txt; escaped strings; batching."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from sslinspect.export.triton import LABELS_FILE, write_triton_repository
from sslinspect.fewshot.fit import load_head
from sslinspect.infer.feeds import threshold_feeds
from sslinspect.project import Project

F = descriptor_pb2.FieldDescriptorProto
DATA_TYPES = [
    "TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64", "TYPE_INT8",
    "TYPE_INT16", "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING", "TYPE_BF16",
]  # fmt: skip
ORT_TYPES = {"tensor(uint8)": "TYPE_UINT8", "tensor(float)": "TYPE_FP32", "tensor(bool)": "TYPE_BOOL",
             "tensor(int64)": "TYPE_INT64"}  # fmt: skip


def _message(f: descriptor_pb2.FileDescriptorProto, name: str, fields: list[tuple[Any, ...]]) -> Any:
    m = f.message_type.add(name=name)
    for number, (fname, ftype, label, type_name) in enumerate(fields, start=1):
        fd = m.field.add(name=fname, number=number, type=ftype, label=label)
        if type_name:
            fd.type_name = type_name
    return m


def _model_config() -> Any:
    """Triton's ``inference.ModelConfig`` (model_config.proto), the fields this project writes; field names and
    types as Triton declares them, so an unknown or misspelt field fails to parse as it would in Triton."""
    f = descriptor_pb2.FileDescriptorProto(name="triton_subset.proto", package="inference", syntax="proto3")
    dt = f.enum_type.add(name="DataType")
    for i, n in enumerate(DATA_TYPES):
        dt.value.add(name=n, number=i)
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    _message(f, "ModelTensorReshape", [("shape", F.TYPE_INT64, rep, "")])
    tensor = [
        ("name", F.TYPE_STRING, opt, ""),
        ("data_type", F.TYPE_ENUM, opt, ".inference.DataType"),
        ("dims", F.TYPE_INT64, rep, ""),
        ("reshape", F.TYPE_MESSAGE, opt, ".inference.ModelTensorReshape"),
    ]
    _message(f, "ModelInput", [*tensor, ("optional", F.TYPE_BOOL, opt, "")])
    _message(f, "ModelOutput", [*tensor, ("label_filename", F.TYPE_STRING, opt, "")])
    group = _message(f, "ModelInstanceGroup", [("kind", F.TYPE_ENUM, opt, ".inference.ModelInstanceGroup.Kind"),
                                               ("count", F.TYPE_INT32, opt, "")])  # fmt: skip
    kind = group.enum_type.add(name="Kind")
    for i, n in enumerate(["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"]):
        kind.value.add(name=n, number=i)
    _message(f, "ModelDynamicBatching", [("preferred_batch_size", F.TYPE_INT32, rep, ""),
                                         ("max_queue_delay_microseconds", F.TYPE_UINT64, opt, "")])  # fmt: skip
    _message(f, "ModelParameter", [("string_value", F.TYPE_STRING, opt, "")])
    cfg = _message(
        f,
        "ModelConfig",
        [
            ("name", F.TYPE_STRING, opt, ""),
            ("platform", F.TYPE_STRING, opt, ""),
            ("max_batch_size", F.TYPE_INT32, opt, ""),
            ("input", F.TYPE_MESSAGE, rep, ".inference.ModelInput"),
            ("output", F.TYPE_MESSAGE, rep, ".inference.ModelOutput"),
            ("instance_group", F.TYPE_MESSAGE, rep, ".inference.ModelInstanceGroup"),
            ("dynamic_batching", F.TYPE_MESSAGE, opt, ".inference.ModelDynamicBatching"),
            ("parameters", F.TYPE_MESSAGE, rep, ".inference.ModelConfig.ParametersEntry"),
        ],
    )
    entry = cfg.nested_type.add(name="ParametersEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt, type_name=".inference.ModelParameter")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


@pytest.fixture(params=["trained_project", "segment_project"])
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Any, Path]:
    """The patch model's and the defect-aware model's repositories (the latter has the sharp map output too)."""
    trained_project: Path = request.getfixturevalue(request.param)
    project = Project.open(trained_project)
    head, _ = load_head(project)
    project.close()
    odd = ("good", 'say "hi"', "back\\slash", "line\nbreak", "naïve")
    head = dataclasses.replace(head, classifier=dataclasses.replace(head.classifier, classes=odd[: len(head.classes)]))
    model = trained_project / "exports" / "model" / "model.onnx"
    path, _ = write_triton_repository(model, tmp_path / "repo", head, {"threshold": 0.5}, name="line 3")
    return path, head, tmp_path / "repo" / "line_3"


def test_config_parses_as_triton_model_config_and_matches_the_graph(repository: tuple[Path, Any, Path]) -> None:
    model, head, folder = repository
    cfg = text_format.Parse((folder / "config.pbtxt").read_text(encoding="utf-8"), _model_config()())
    assert cfg.name == "line_3" and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size > 0 and cfg.HasField("dynamic_batching")
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for declared, actual in ((cfg.input, sess.get_inputs()), (cfg.output, sess.get_outputs())):
        assert [t.name for t in declared] == [a.name for a in actual]
        for t, a in zip(declared, actual, strict=True):
            assert DATA_TYPES[t.data_type] == ORT_TYPES[a.type], t.name
            graph_dims = list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)
            assert [-1, *graph_dims] == [d if isinstance(d, int) else -1 for d in a.shape], t.name
            assert not getattr(t, "optional", False)  # plain inputs: Triton always sends them
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert json.loads(params["sslinspect_classes"]) == list(head.classes)  # quotes, backslashes survive
    assert float(params["sslinspect_threshold"]) == head.anomaly.threshold
    probs = next(o for o in cfg.output if o.name == "probabilities")
    labels = (folder / probs.label_filename).read_text(encoding="utf-8").splitlines()
    assert probs.label_filename == LABELS_FILE and len(labels) == len(head.classes)
    assert labels == [c.replace("\n", " ") for c in head.classes]


def test_requests_batched_by_triton_give_the_same_answers(repository: tuple[Path, Any, Path], demo_data) -> None:  # type: ignore[no-untyped-def]
    model, head, _ = repository
    from sslinspect.imageio import load_for_model

    images = np.stack([load_for_model(p, head.input_size) for p in sorted(demo_data.test_dir.glob("*.png"))[:6]])
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    t, r = head.anomaly.threshold, head.anomaly.review_threshold
    alone = [sess.run(None, threshold_feeds(images[k : k + 2], t, r)) for k in (0, 2, 4)]
    together = sess.run(None, threshold_feeds(images, t, r))  # what dynamic batching sends: requests concatenated
    for i in range(len(together)):
        np.testing.assert_allclose(np.concatenate([a[i] for a in alone]), together[i], atol=1e-5)
