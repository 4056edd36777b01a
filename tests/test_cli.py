"""The command-line contract: subcommands, --help, exit codes (0 ok, 1 failure, 2 usage, 130 cancelled), one-line
errors naming the file, and the JSON-lines event stream the GUI's worker protocol relies on."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sslinspect.cli import main
from sslinspect.config import EvaluateConfig, ExportConfig, FewShotConfig, PretrainConfig
from sslinspect.demo import DemoDataset
from sslinspect.events import Event, Finished, Metric, decode_event
from tests.conftest import REPO, run_cli, subprocess_env

TINY = [
    "--backbone",
    "tiny_cnn",
    "--image-size",
    "32",
    "--batch-size",
    "8",
    "--device",
    "cpu",
    "--set",
    "pretrain.hidden_dim=64",
    "--set",
    "pretrain.proj_dim=32",
]


@pytest.mark.parametrize(
    "argv",
    [[], ["init"], ["scan"], ["labels", "import"], ["pretrain"], ["fit"], ["train"], ["export"], ["predict"], ["demo"]],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    assert "usage: sslinspect" in capsys.readouterr().out


def _subparser(name: str) -> argparse.ArgumentParser:
    from sslinspect.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[name]
    return parser


@pytest.mark.parametrize(
    ("command", "cls"),
    [("pretrain", PretrainConfig), ("fit", FewShotConfig), ("export", ExportConfig), ("evaluate", EvaluateConfig)],
)
def test_config_options_come_from_field_metadata(command: str, cls: type) -> None:
    """Choices, help and the default shown by --help are the config field's; the option itself defaults to None."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    options = [a for a in _subparser(command)._actions if a.dest in fields and a.option_strings]
    assert options
    for action in options:
        f = fields[action.dest]
        assert action.default is None  # a --config/--set value is only overridden when the option is given
        assert action.help is not None and f.metadata["help"] in action.help.replace("%%", "%")
        if f.default not in ("", None):
            assert str(f.default) in action.help
        if "choices" in f.metadata:
            assert list(action.choices or ()) == list(f.metadata["choices"])


def test_method_and_backbone_choices_are_the_catalog() -> None:
    from sslinspect.catalog import BACKBONES, METHODS

    actions = {a.dest: a for a in _subparser("pretrain")._actions}
    assert list(actions["method"].choices or ()) == list(METHODS)
    assert list(actions["backbone"].choices or ()) == list(BACKBONES)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert main(["pretrain"]) == 2
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'frobnicate'" in err and "required: project" in err


def test_out_of_range_values_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", str(tmp_path), "--epochs", "0"]) == 2
    assert main(["pretrain", str(tmp_path), "--set", "pretrain.nope=1"]) == 2
    assert main(["pretrain", str(tmp_path), "--set", "pretrain.batch_size=many"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "error: pretrain.epochs must be ≥ 1, got 0",
        "error: unknown config key 'nope'",
        "error: batch_size must be an integer, got 'many'",
    ]


def test_init_scans_and_reports_unreadable_files(
    tiny_image_folder: Path, project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tiny_image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    assert main(["init", str(project_dir), "--images", str(tiny_image_folder)]) == 0
    out, err = capsys.readouterr()
    assert "36 readable images" in out and "1 unreadable" in out
    assert f"{tiny_image_folder / 'broken.png'}: corrupt PNG header" in err
    assert main(["init", str(project_dir), "--images", str(tiny_image_folder)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {project_dir.resolve()}: a project already exists here"


def test_missing_project_and_missing_pretraining_fail_with_one_line(
    tmp_path: Path, tiny_image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tmp_path / "nope")]) == 1
    assert "not an SSL Inspect project" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "p"), "--images", str(tiny_image_folder)]) == 0
    capsys.readouterr()
    assert main(["train", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no pretraining checkpoint yet" in err[0]


def test_labels_import_reports_bad_rows(
    tiny_image_folder: Path, project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(project_dir), "--images", str(tiny_image_folder)]) == 0
    csv = tiny_image_folder / "labels.csv"
    csv.write_text("path,label\ndisc/disc_00.png,good\nsquare/square_00.png,dent\nnope.png,dent\ndisc/disc_01.png,\n")
    assert main(["labels", "import", str(project_dir), str(csv)]) == 0
    out, err = capsys.readouterr()
    assert "imported 2 label(s)" in out and "good: 1" in out and "dent: 1" in out
    assert "labels.csv:4: unknown image 'nope.png'" in err and "labels.csv:5: empty label" in err
    csv.write_text("path,label\nnope.png,dent\n")
    assert main(["labels", "import", str(project_dir), str(csv)]) == 1


def test_predict_lists_failures_and_exits_1(
    trained_project: Path,
    demo_data: DemoDataset,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = tmp_path / "in"
    shutil.copytree(demo_data.test_dir, inputs)
    (inputs / "zero.png").write_bytes(b"")
    out = tmp_path / "p.csv"
    model = trained_project / "exports" / "model" / "model.onnx"
    assert main(["predict", str(model), str(inputs), "--out", str(out)]) == 1
    stdout, err = capsys.readouterr()
    assert f"error: {inputs / 'zero.png'}: empty file (0 bytes)" in err
    assert "20 image(s) scored on CPUExecutionProvider" in stdout
    assert len(out.read_text().splitlines()) == 22  # header, 20 scored, the unreadable one with its error
    last = list(csv.DictReader(out.read_text().splitlines()))[-1]
    assert last["error"] == "empty file (0 bytes)" and last["region"] == last["novelty"] == last["type_sure"] == ""
    not_a_model = tmp_path / "x.onnx"
    not_a_model.write_bytes(b"garbage")
    assert main(["predict", str(not_a_model), str(inputs)]) == 1
    assert "cannot load ONNX model" in capsys.readouterr().err


def test_export_then_predict_via_cli(
    trained_project: Path,
    tmp_path: Path,
    demo_data: DemoDataset,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = tmp_path / "copy.sslproj"
    shutil.copytree(trained_project, project)
    model = tmp_path / "line3.onnx"
    assert main(["export", str(project), "--out", str(model)]) == 0
    assert "parity on 16 real images" in capsys.readouterr().out
    assert model.is_file() and json.loads(model.with_suffix(".json").read_text())["file"] == "line3.onnx"
    img = cv2.imread(str(next(demo_data.test_dir.iterdir())), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(tmp_path / "one.bmp"), np.ascontiguousarray(img))
    assert main(["predict", str(model), str(tmp_path / "one.bmp"), "--out", str(tmp_path / "o.csv")]) == 0


def _events(stdout: str) -> list[Event]:
    return [decode_event(line) for line in stdout.splitlines()]  # raises if any line is not an event


def test_pretrain_subprocess_streams_only_json_events_and_resumes(tiny_image_folder: Path, tmp_path: Path) -> None:
    project = tmp_path / "p.sslproj"
    assert main(["init", str(project), "--images", str(tiny_image_folder)]) == 0
    control = tmp_path / "control"
    control.mkdir()
    args = [*TINY, "--epochs", "3", "--set", "pretrain.log_every=1", "--events", "jsonl"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sslinspect", "pretrain", str(project), *args, "--control", str(control)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:  # the GUI's view: cancel once training is visibly under way
        lines.append(line)
        if isinstance(decode_event(line), Metric):
            (control / "cancel").touch()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    events = [decode_event(line) for line in lines]
    assert isinstance(events[-1], Finished) and events[-1].status == "cancelled"
    runs = list((project / "runs" / "pretrain").iterdir())
    assert (runs[0] / "checkpoints" / "last.pt").is_file()
    assert json.loads((runs[0] / "status.json").read_text())["state"] == "cancelled"

    r = run_cli("pretrain", str(project), *args, "--resume")
    assert r.returncode == 0, r.stderr
    events = _events(r.stdout)
    assert isinstance(events[-1], Finished) and events[-1].status == "ok"
    assert any("resuming after epoch" in getattr(e, "message", "") for e in events)
    assert len(list((project / "runs" / "pretrain").iterdir())) == 1  # resumed in place
    assert json.loads((runs[0] / "status.json").read_text())["state"] == "ok"
