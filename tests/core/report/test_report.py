"""The HTML QA report: every section, inline images only, real figures from the project."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np

from sslinspect.cli import main
from sslinspect.report.html import SECTIONS


def test_report_is_self_contained_with_every_section(trained_project: Path, tmp_path: Path) -> None:
    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    assert main(["report", str(root), "--examples", "2"]) == 0
    text = (root / "reports" / "report.html").read_text(encoding="utf-8")
    assert re.findall(r"<section id=(\w+)>", text) == list(SECTIONS)
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", text)  # nothing fetched when opened
    assert "<script" not in text
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(images) >= 3 + 2  # ROC, PR, histogram + example heatmaps
    for b64 in images:
        assert cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR) is not None
    metrics = json.loads(next((root / "runs" / "fewshot").iterdir()).joinpath("metrics.json").read_text())
    assert f"{metrics['threshold']:.3f}" in text
    for c in metrics["classes"]:
        assert f"<th class=l>{c}</th>" in text  # a confusion-matrix row per class
    sidecar = json.loads((root / "exports" / "model" / "model.json").read_text())
    assert sidecar["sha256"] in text  # provenance: the model's checksum
