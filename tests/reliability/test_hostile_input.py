"""Issue 14, careless and hostile input: glob characters, files that are not files, model metadata, names.

Each test is one of the issue's probes, run through the real CLI (a subprocess where the old behaviour hung or ate
memory, so a regression fails on a timeout or a memory limit instead of hanging the suite).
"""

from __future__ import annotations

import csv
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from sslinspect import api
from sslinspect.cli import main
from sslinspect.errors import ProjectError
from sslinspect.project import check_class_name
from tests.conftest import REPO, subprocess_env
from tests.core.image_cases import bgr_image, encode, write
from tests.reliability import tiny_onnx


def _cli(*args: str, timeout: float = 60, memory_mb: int = 0) -> subprocess.CompletedProcess[str]:
    def limit() -> None:  # pragma: no cover - runs in the child
        if memory_mb:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))

    return subprocess.run(
        [sys.executable, "-m", "sslinspect", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
        cwd=REPO,
        check=False,
        preexec_fn=limit,
    )


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("error:") or "Traceback" in ln]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return lines[0]


# -- 1 glob characters in real names ----------------------------------------------------------------------------------
def test_an_existing_path_with_glob_characters_is_that_path(tmp_path: Path) -> None:
    model = tiny_onnx.model(tmp_path / "m.onnx")
    tiny_onnx.image(tmp_path / "line[3]" / "real.png")
    tiny_onnx.image(tmp_path / "line3" / "decoy.png")
    out = tmp_path / "r.csv"
    assert main(["predict", str(model), str(tmp_path / "line[3]"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [Path(r["path"]).name for r in rows] == ["real.png"]
    # without a `line3`, the folder is still found (it used to say "no file matches this pattern")
    (tmp_path / "line3" / "decoy.png").unlink()
    (tmp_path / "line3").rmdir()
    assert main(["predict", str(model), str(tmp_path / "line[3]"), "--out", str(out)]) == 0
    # a pattern is still a pattern when nothing has its name
    assert main(["predict", str(model), str(tmp_path / "*" / "real.png"), "--out", str(out)]) == 0
    assert len(list(csv.DictReader(out.read_text().splitlines()))) == 1


# -- 5 files that are not files ---------------------------------------------------------------------------------------
def test_config_from_dev_zero_is_refused_not_read(tmp_path: Path) -> None:
    r = _cli("init", str(tmp_path / "p"), "--config", "/dev/zero", memory_mb=1500)
    assert r.returncode == 2, r.stderr
    assert _one_error_line(r.stderr) == "error: /dev/zero: cannot read config (is a device, not a regular file)"
    assert not (tmp_path / "p").exists()


def test_label_csv_from_a_fifo_is_refused(tmp_path: Path) -> None:
    """A FIFO has no size to check: it used to be read past the 64 MB limit (or, with no writer, hang)."""
    project = tmp_path / "p"
    api.create_project(project).close()
    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)
    r = _cli("labels", "import", str(project), str(fifo), timeout=60, memory_mb=1500)
    assert r.returncode == 1, r.stderr
    assert _one_error_line(r.stderr) == (
        f"error: {fifo}: cannot read label file (is a FIFO (named pipe), not a regular file)"
    )


def test_predict_on_a_fifo_reports_it_instead_of_hanging(tmp_path: Path) -> None:
    model = tiny_onnx.model(tmp_path / "m.onnx")
    fifo = tmp_path / "frame.png"
    os.mkfifo(fifo)
    good = tiny_onnx.image(tmp_path / "ok.png")
    r = _cli("predict", str(model), str(fifo), str(good), timeout=60)
    assert r.returncode == 1, r.stderr
    assert _one_error_line(r.stderr) == f"error: {fifo}: is a FIFO (named pipe), not a regular file"
    assert "1 image(s) scored" in r.stderr  # no --out: the rows go to stdout, the summary to stderr
    assert "is a FIFO" in r.stdout  # and the FIFO has its row, with the error


# -- 6 model metadata against the graph -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("metadata", "n_probs", "message"),
    [
        (tiny_onnx.meta(classes=["good"]), 5, "the model's metadata names 1 class(es) but its probabilities output"),
        (tiny_onnx.meta(threshold="abc"), 2, "the model's metadata has an invalid threshold 'abc'"),
        (tiny_onnx.meta(review_threshold="x"), 2, "the model's metadata has an invalid review_threshold 'x'"),
        (tiny_onnx.meta(classes=[]), 2, "the model's metadata has no valid class list"),
        (tiny_onnx.meta(image_size="8"), 2, "the model's metadata has an invalid image_size '8'"),
    ],
)
def test_metadata_that_does_not_fit_the_graph_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metadata: dict[str, object], n_probs: int, message: str
) -> None:
    model = tiny_onnx.model(tmp_path / "m.onnx", metadata, n_probs=n_probs)
    img = tiny_onnx.image(tmp_path / "a.png")
    assert main(["predict", str(model), str(img), "--out", str(tmp_path / "r.csv")]) == 1
    assert _one_error_line(capsys.readouterr().err).startswith(f"error: {model}: {message}")
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize(("offset", "code"), [(-1, "-1"), (5, "5")])
def test_a_decision_code_outside_0_to_2_is_a_model_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], offset: int, code: str
) -> None:
    """−1 used to be reported NG (``DECISIONS[-1]``) with is_defect 0; 5 crashed with IndexError."""
    model = tiny_onnx.model(tmp_path / "m.onnx", decision_offset=offset)
    img = tiny_onnx.image(tmp_path / "a.png", 10)  # OK part: is_defect 0, decision 0 + offset
    assert main(["predict", str(model), str(img)]) == 1
    assert _one_error_line(capsys.readouterr().err) == (
        f"error: {model}: the model returned decision code {code} (expected 0 OK, 1 review or 2 NG)"
    )


def test_a_decision_contradicting_is_defect_is_a_model_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny_onnx.model(tmp_path / "m.onnx", decision_offset=-1)
    img = tiny_onnx.image(tmp_path / "a.png", 250)  # NG part: is_defect 1, decision 2 - 1 = review
    assert main(["predict", str(model), str(img)]) == 1
    assert "contradicts its is_defect 1" in _one_error_line(capsys.readouterr().err)


def test_correct_decision_codes_still_run(tmp_path: Path) -> None:
    model = tiny_onnx.model(tmp_path / "m.onnx", decision_offset=0)
    tiny_onnx.image(tmp_path / "in" / "ok.png", 10)
    tiny_onnx.image(tmp_path / "in" / "ng.png", 250)
    out = tmp_path / "r.csv"
    assert main(["predict", str(model), str(tmp_path / "in"), "--out", str(out)]) == 0
    rows = csv.DictReader(out.read_text().splitlines())
    assert {Path(r["path"]).name: r["decision"] for r in rows} == {"ok.png": "OK", "ng.png": "NG"}


# -- 7 names ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("g\u043e\u043ed", "letters of several scripts"),  # gооd with Cyrillic o
        ("good\u200b", "invisible character U+200B"),
        ("\u202edoog", "bidirectional control character U+202E"),
        ("scr\x7fatch", "1–64 characters"),
        ("\uff47\uff4f\uff4f\uff44", "looks like the existing class 'good'"),  # fullwidth ｇｏｏｄ
        ("go\u00a0od", "unusual space U+00A0"),
    ],
)
def test_look_alike_invisible_and_control_names_are_refused(tmp_path: Path, name: str, why: str) -> None:
    project = api.create_project(tmp_path / "p")
    with pytest.raises(ProjectError, match=re.escape(why)):
        project.add_classes([name])
    assert project.classes == ["good"]


def test_names_are_nfc_and_real_scripts_are_welcome(tmp_path: Path) -> None:
    project = api.create_project(tmp_path / "p")
    assert project.add_classes(["cafe\u0301", "брак", "傷"]) == ["caf\u00e9", "брак", "傷"]
    assert project.classes == ["good", "caf\u00e9", "брак", "傷"]
    assert check_class_name("caf\u00e9", project.classes) == "caf\u00e9"  # typed either way: one class


def test_label_import_refuses_look_alikes_row_by_row(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    for i in range(3):
        write(images / f"{i}.png", encode(".png", bgr_image(seed=i)))
    project = api.create_project(tmp_path / "p", images=[images])
    api.scan_images(project)
    labels = tmp_path / "l.csv"
    labels.write_text("path,label\n0.png,g\u043e\u043ed\n1.png,good\u200b\n2.png,scratch\n", encoding="utf-8")
    result = api.import_labels(project, labels)
    assert result.imported == 1 and project.classes == ["good", "scratch"]
    assert [p.split(":")[1] for p in result.problems] == ["2", "3"]


def test_formula_cells_are_neutralised_in_the_results_csv(tmp_path: Path) -> None:
    evil = "=cmd|' calc'!A0"
    model = tiny_onnx.model(tmp_path / "m.onnx", tiny_onnx.meta(classes=[evil, "@SUM(1)"]))
    img = tiny_onnx.image(tmp_path / "-frame.png")
    out = tmp_path / "r.csv"
    assert main(["predict", str(model), str(img), "--out", str(out)]) == 0
    (row,) = list(csv.DictReader(out.read_text().splitlines()))
    assert row["label"] == "'" + evil
    assert all(not v.startswith(("=", "+", "@")) for v in row.values())
    assert float(row["anomaly_score"]) >= 0 and row["decision"] == "OK"
    jsonl = tmp_path / "r.jsonl"
    assert main(["predict", str(model), str(img), "--out", str(jsonl)]) == 0
    assert json.loads(jsonl.read_text())["label"] == evil  # JSON is data, not a spreadsheet: kept as it is
