"""CPU end-to-end: create project → pretrain → few-shot → export → parity → predict, and the project layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import onnx

from sslinspect import api
from sslinspect.defects.typing_head import UNKNOWN
from sslinspect.project import PROJECT_FILE, Project


def test_pipeline_writes_every_artifact(trained_project: Path, demo_data) -> None:  # type: ignore[no-untyped-def]
    project = Project.open(trained_project)
    data = json.loads((trained_project / PROJECT_FILE).read_text())
    assert data["schema_version"] >= 2 and data["sources"] and {"pretrain", "fewshot", "export"} <= set(data["latest"])
    assert (trained_project / "project.sqlite").is_file()
    pre = project.latest("pretrain")
    assert pre is not None
    for name in ("config.json", "events.jsonl", "status.json", "checkpoints/last.pt"):
        assert (pre / name).is_file(), name
    assert json.loads((pre / "status.json").read_text())["state"] == "ok"
    assert list((pre / "embedding_map").glob("epoch_*.npz"))
    fs = project.latest("fewshot")
    assert fs is not None and (fs / "head.npz").is_file() and (fs / "metrics.json").is_file()
    model = trained_project / "exports" / "model" / "model.onnx"
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert sidecar["parity"]["passed"] and sidecar["classes"][0] == "good"
    assert set(sidecar["classes"]) == {"good", "scratch", "spot", "crack", "contamination"}
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert json.loads(meta["sslinspect"])["image_size"] == sidecar["image_size"] == 32
    # the fit and the export know which labels and which pretraining run they came from, and are up to date
    prov = json.loads((fs / "provenance.json").read_text())
    assert prov["pretrain_run"] == pre.name and prov["labels"]["count"] == len(project.store.labels())
    assert not api.fit_staleness(project, fs).stale and not api.export_staleness(project, model).stale
    assert json.loads(model.with_name("model.provenance.json").read_text())["fit_run"] == project.relative(fs)
    project.close()


def test_predict_scores_the_test_folder(trained_project: Path, demo_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "pred.csv"
    result = api.predict(trained_project / "exports" / "model" / "model.onnx", [demo_data.test_dir], out=out)
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert result.total == len(rows) == 20 and not result.failed
    assert result.provider == "CPUExecutionProvider"
    for r in rows:
        probs = [float(r[f"p_{c}"]) for c in result.classes]
        # a flagged part far from every labelled type is `unknown` (a documented label value, docs/typing.md)
        assert abs(sum(probs) - 1) < 1e-3 and r["label"] in (*result.classes, UNKNOWN) and r["is_defect"] in ("0", "1")
