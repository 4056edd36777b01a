"""Fits and exports know which labels and which pretraining run they came from; out-of-date ones say so."""

from __future__ import annotations

import json
from pathlib import Path

from sslinspect import api
from sslinspect.staleness import record_export, record_fit


def _project(tmp_path: Path, tiny_image_folder: Path) -> api.Project:
    p = api.create_project(tmp_path / "s.sslproj", images=[tiny_image_folder])
    api.scan_images(p)
    return p


def test_a_fit_goes_out_of_date_when_labels_change(tmp_path: Path, tiny_image_folder: Path) -> None:
    with _project(tmp_path, tiny_image_folder) as p:
        ids = [r.id for r in p.store.images()]
        p.store.set_label(ids[0], "good")
        run = p.new_run_dir("fewshot", "x")
        (run / "config.json").write_text(json.dumps({"checkpoint": "runs/pretrain/r1/checkpoints/last.pt"}))
        record_fit(p, run, api.label_stamp(p))
        p.set_latest("fewshot", run)
        assert not api.fit_staleness(p, run).stale
        p.store.set_label(ids[1], "good")
        st = api.fit_staleness(p, run)
        assert st.stale and st.describe().startswith("out of date — retrain: the labels changed")
        assert "1 then, 2 now" in st.describe()
        model = p.root / "exports" / "m.onnx"
        model.parent.mkdir(exist_ok=True)
        record_export(p, model, run)
        assert api.export_staleness(p, model).stale
        newer = p.new_run_dir("fewshot", "y")
        record_fit(p, newer, api.label_stamp(p))
        p.set_latest("fewshot", newer)
        assert "a newer fit exists" in api.export_staleness(p, model).describe()


def test_runs_without_provenance_are_unknown_not_stale(tmp_path: Path, tiny_image_folder: Path) -> None:
    with _project(tmp_path, tiny_image_folder) as p:
        run = p.new_run_dir("fewshot", "x")
        st = api.fit_staleness(p, run)
        assert not st.stale and not st.known


def test_a_failed_newer_fit_is_reported(tmp_path: Path, tiny_image_folder: Path) -> None:
    with _project(tmp_path, tiny_image_folder) as p:
        ok = p.new_run_dir("fewshot", "a")
        p.set_latest("fewshot", ok)
        assert api.fit_failed_after(p) is None
        bad = p.new_run_dir("fewshot", "b")
        (bad / "status.json").write_text(json.dumps({"state": "failed"}))
        assert api.fit_failed_after(p) == bad.name
