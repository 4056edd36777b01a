"""Write a Triton Inference Server model repository: ``<repo>/<name>/config.pbtxt`` + ``<repo>/<name>/1/model.onnx``.

The model keeps its batch dimension in the ONNX graph (``max_batch_size: 0``, shapes with ``-1``), because the
threshold inputs are not batched; they are optional, so clients send only ``images`` unless the line changes the
threshold. The sidecar ``model.json`` sits beside ``config.pbtxt``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sslinspect.fewshot.model import InspectionHead


def triton_config(name: str, head: InspectionHead) -> str:
    """The ``config.pbtxt`` text for model ``name``."""
    s, c = head.input_size, len(head.classes)

    def tensor(n: str, dtype: str, dims: list[int], optional: bool = False) -> str:
        opt = ", optional: true" if optional else ""
        return f'  {{ name: "{n}", data_type: {dtype}, dims: {json.dumps(dims)}{opt} }}'

    inputs = [
        tensor("images", "TYPE_UINT8", [-1, s, s, 3]),
        tensor("threshold", "TYPE_FP32", [1], optional=True),
        tensor("review_threshold", "TYPE_FP32", [1], optional=True),
    ]
    outputs = [
        tensor("probabilities", "TYPE_FP32", [-1, c]),
        tensor("anomaly_score", "TYPE_FP32", [-1]),
        tensor("is_defect", "TYPE_BOOL", [-1]),
        tensor("anomaly_map", "TYPE_FP32", [-1, s, s]),
        tensor("decision", "TYPE_INT64", [-1]),
    ]
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        "max_batch_size: 0\n"
        "input [\n" + ",\n".join(inputs) + "\n]\n"
        "output [\n" + ",\n".join(outputs) + "\n]\n"
        "instance_group [ { kind: KIND_AUTO } ]\n"
        f'parameters {{ key: "sslinspect_classes" value: {{ string_value: "{",".join(head.classes)}" }} }}\n'
    )


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
