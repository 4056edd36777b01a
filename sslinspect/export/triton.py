"""Write a Triton Inference Server model repository: ``<repo>/<name>/config.pbtxt``, ``labels.txt`` and
``1/model.onnx``.

The model batches (``max_batch_size`` > 0 with ``dynamic_batching``): every input and output carries the batch
dimension first, the thresholds too (one per image, format ``sslinspect.onnx/3``), so requests can be batched
together. Per-image tensors (``threshold``, ``anomaly_score``, ...) are declared ``dims: [1]`` reshaped to ``[]``,
Triton's idiom for one value per batch item. Class names go to ``labels.txt`` (``label_filename`` of the
probabilities, for Triton's classification extension); every string in the config is escaped by the protobuf text
format's rules. The sidecar ``model.json`` sits beside ``config.pbtxt``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sslinspect.fewshot.model import InspectionHead
from sslinspect.infer.feeds import KIND_MAP, SHARP_MAP

#: The largest batch Triton forms from queued requests.
MAX_BATCH_SIZE = 32
LABELS_FILE = "labels.txt"


def pbtxt_string(text: str) -> str:
    """``text`` as a protobuf text-format string literal (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)  # UTF-8 is valid in text-format strings
    return '"' + "".join(out) + '"'


def _tensor(name: str, dtype: str, dims: list[int], *, extra: str = "") -> str:
    """One input/output entry; ``dims`` without the batch dimension (``[]`` = one value per batch item)."""
    shape = f"dims: {json.dumps(dims or [1])}" + ("" if dims else " reshape: { shape: [] }")
    return f"  {{ name: {pbtxt_string(name)} data_type: {dtype} {shape}{extra} }}"


def triton_config(name: str, head: InspectionHead, *, max_batch_size: int = MAX_BATCH_SIZE) -> str:
    """The ``config.pbtxt`` text for model ``name``."""
    s, c = head.input_size, len(head.classes)
    inputs = [
        _tensor("images", "TYPE_UINT8", [s, s, 3]),
        _tensor("threshold", "TYPE_FP32", []),
        _tensor("review_threshold", "TYPE_FP32", []),
    ]
    outputs = [
        _tensor("probabilities", "TYPE_FP32", [c], extra=f" label_filename: {pbtxt_string(LABELS_FILE)}"),
        _tensor("anomaly_score", "TYPE_FP32", []),
        _tensor("is_defect", "TYPE_BOOL", []),
        _tensor("anomaly_map", "TYPE_FP32", [s, s]),
        _tensor("decision", "TYPE_INT64", []),
    ]
    if head.anomaly.has_sharp:
        outputs.append(_tensor(SHARP_MAP, "TYPE_FP32", [s, s]))
    if head.anomaly.has_kinds:  # stride 4: the backbone's stem halves the side twice, rounding up
        q = math.ceil(math.ceil(s / 2) / 2)
        outputs.append(_tensor(KIND_MAP, "TYPE_FP32", [head.anomaly.kinds, q, q]))
    a = head.anomaly
    params = {
        "sslinspect_classes": json.dumps(list(head.classes), ensure_ascii=False),
        "sslinspect_threshold": repr(float(a.threshold)),
        "sslinspect_review_threshold": repr(float(a.review_threshold)),
    }
    return (
        f"name: {pbtxt_string(name)}\n"
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        "input [\n" + ",\n".join(inputs) + "\n]\n"
        "output [\n" + ",\n".join(outputs) + "\n]\n"
        "dynamic_batching { max_queue_delay_microseconds: 2000 }\n"
        "instance_group [ { kind: KIND_AUTO } ]\n"
        + "".join(
            f"parameters {{ key: {pbtxt_string(k)} value: {{ string_value: {pbtxt_string(v)} }} }}\n"
            for k, v in params.items()
        )
    )


def labels_text(classes: tuple[str, ...] | list[str]) -> str:
    """``labels.txt``: one class per line, in output order (line breaks inside a name become spaces)."""
    return "".join(re.sub(r"[\r\n]+", " ", c) + "\n" for c in classes)


def write_triton_repository(
    model: Path, repo: Path, head: InspectionHead, sidecar: dict[str, Any], name: str = "sslinspect"
) -> tuple[Path, Path]:
    """Build the repository beside ``repo`` and move it into place (an existing one is replaced only then).

    Returns:
        The final ``model.onnx`` path and the sidecar path.
    """
    repo = Path(repo)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._") or "sslinspect"
    repo.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{repo.name}.", dir=repo.parent))
    try:
        version = staging / name / "1"
        version.mkdir(parents=True)
        shutil.copyfile(model, version / "model.onnx")
        (staging / name / "config.pbtxt").write_text(triton_config(name, head), encoding="utf-8")
        (staging / name / LABELS_FILE).write_text(labels_text(head.classes), encoding="utf-8")
        text = json.dumps({**sidecar, "file": "1/model.onnx"}, indent=2, ensure_ascii=False) + "\n"
        (staging / name / "model.json").write_text(text, encoding="utf-8")
        old = None
        if repo.exists():
            old = repo.with_name(f".{repo.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            repo.rename(old)
        staging.rename(repo)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return repo / name / "1" / "model.onnx", repo / name / "model.json"
