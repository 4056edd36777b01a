"""Issue 14 on a real trained project: thresholds out of range, a tampered run in the QA report, a swapped model.

Each test works on a copy of the session's trained project (tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sslinspect import api
from sslinspect.cli import main
from sslinspect.fewshot.thresholds import observed_scores
from sslinspect.review import latest_export_thresholds


@pytest.fixture
def project(trained_project: Path, tmp_path: Path) -> Path:
    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    return root


def _run_dir(root: Path) -> Path:
    return next((root / "runs" / "fewshot").iterdir())


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err and "internal error" not in err, err
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


@pytest.mark.parametrize("value", ["42", "-5"])
def test_a_threshold_outside_the_observed_scores_needs_force(
    project: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """42 used to export a model that never rejects a part; -5 one that rejects every part (exit 0 both)."""
    seen = observed_scores(_run_dir(project))
    assert seen is not None and seen.high < 42
    before = (_run_dir(project) / "head.npz").read_bytes()
    assert main(["threshold", str(project), value]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"threshold {float(value):g} is outside the anomaly scores observed on {seen.count} images" in line
    assert "--force" in line
    assert (_run_dir(project) / "head.npz").read_bytes() == before  # nothing stored


def test_a_forced_threshold_is_stored_and_shown_as_forced(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["threshold", str(project), "42", "--force"]) == 0
    assert "FORCED: outside the observed anomaly scores" in capsys.readouterr().out
    override = json.loads((_run_dir(project) / "metrics.json").read_text())["threshold_override"]
    assert override["forced"] is True and override["threshold"] == 42
    stored = latest_export_thresholds(api.open_project(project))
    assert stored is not None and stored.forced and "FORCED" in stored.describe()  # what the GUI shows
    assert main(["report", str(project), "--examples", "1"]) == 0
    html = (project / "reports" / "report.html").read_text(encoding="utf-8")
    assert "FORCED by the engineer (--force): OUTSIDE the anomaly scores observed" in html


def test_a_threshold_float32_cannot_hold_is_refused_even_when_forced(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1e308 became inf in the graph."""
    assert main(["threshold", str(project), "1e308", "--force"]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "threshold 1e+308 is not a finite 32-bit number" in line


def test_thresholds_within_the_scores_and_the_calibrated_one_are_accepted(project: Path) -> None:
    seen = observed_scores(_run_dir(project))
    assert seen is not None
    mid = (seen.low + seen.high) / 2
    assert main(["threshold", str(project), repr(mid), "--review", repr(seen.low)]) == 0
    calibrated = json.loads((_run_dir(project) / "metrics.json").read_text())["threshold"]
    assert main(["threshold", str(project), repr(calibrated)]) == 0
    stored = latest_export_thresholds(api.open_project(project))
    assert stored is not None and not stored.forced


SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"


def test_the_report_escapes_whatever_a_tampered_run_holds(project: Path) -> None:
    metrics_path = _run_dir(project) / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    cv = metrics["cv"]
    cv["confusion"][0][0] = SCRIPT
    cv["folds"] = IMG
    cv["balanced_accuracy"] = SCRIPT  # was formatted with :.3f: a crash
    first = next(iter(cv["per_class"]))
    cv["per_class"][first]["support"] = IMG
    metrics["threshold_percentile"] = SCRIPT
    metrics["calibration_images"] = IMG
    metrics_path.write_text(json.dumps(metrics))
    sidecar_path = project / "exports" / "model" / "model.json"
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["parity"]["images"] = SCRIPT
    sidecar["precision"] = IMG
    sidecar_path.write_text(json.dumps(sidecar))
    assert main(["report", str(project), "--examples", "1"]) == 0
    html = (project / "reports" / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html and "<img src=x" not in html
    assert html.count("&lt;script&gt;") >= 4


def test_the_report_recomputes_the_model_checksum(project: Path) -> None:
    assert main(["report", str(project), "--examples", "1"]) == 0
    html = (project / "reports" / "report.html").read_text(encoding="utf-8")
    assert "passed on" in html
    model = project / "exports" / "model" / "model.onnx"
    model.write_bytes(model.read_bytes() + b"swapped")  # another file under the model's name
    assert main(["report", str(project), "--examples", "1"]) == 0
    html = (project / "reports" / "report.html").read_text(encoding="utf-8")
    assert "does not match the export record" in html
    assert "passed on" not in html and "not vouched for" in html
