"""``predict --out``: regular files replaced atomically; links, devices, folders, inputs, projects refused; ``-``."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path

import pytest

from sslinspect import api
from sslinspect.cli import main
from sslinspect.errors import ConfigError
from sslinspect.fsutil import atomic_write_text
from sslinspect.infer.run import run_metadata_path


@pytest.fixture
def model(trained_project: Path) -> Path:
    return trained_project / "exports" / "model" / "model.onnx"


@pytest.fixture
def images(demo_data) -> list[Path]:  # type: ignore[no-untyped-def]
    return sorted(demo_data.test_dir.glob("*.png"))[:3]


def _one_line_error(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and str(path) in err[0] and ".tmp" not in err[0], err
    return err[0]


def test_a_symlink_is_refused_and_left_as_it_is(model: Path, images: list[Path], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    real = tmp_path / "real.csv"
    real.write_text("keep me\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    assert main(["predict", str(model), str(images[0]), "--out", str(link)]) == 2
    assert "symbolic link" in _one_line_error(capsys, link)
    assert link.is_symlink() and real.read_text() == "keep me\n"


def test_a_fifo_or_device_is_refused(model: Path, images: list[Path], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert main(["predict", str(model), str(images[0]), "--out", str(fifo)]) == 2
    assert "not a regular file" in _one_line_error(capsys, fifo)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    with pytest.raises(ConfigError, match="not a regular file"):
        api.predict(model, images, out=Path(os.devnull))


def test_a_folder_gives_one_line_naming_it(model: Path, images: list[Path], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "results"
    folder.mkdir()
    assert main(["predict", str(model), str(images[0]), "--out", str(folder)]) == 2
    assert "is a folder" in _one_line_error(capsys, folder)
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".*.tmp"))


def test_atomic_write_onto_a_folder_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as exc:
        atomic_write_text(tmp_path, "x")
    assert exc.value.filename == str(tmp_path) and not list(tmp_path.parent.glob(f".{tmp_path.name}.*.tmp"))


def test_inputs_model_and_project_files_are_never_overwritten(
    model: Path, images: list[Path], trained_project: Path, tmp_path: Path
) -> None:
    data = tmp_path / "frame.csv"  # an input that is not an image, named explicitly
    data.write_text("not an image\n")
    for target in (images[0], model, trained_project / "project.json", data):
        before = target.read_bytes()
        with pytest.raises(ConfigError, match="refusing to overwrite"):
            api.predict(model, [*images, data], out=target)
        assert target.read_bytes() == before


def test_dash_writes_through_to_stdout_and_no_out_too(  # type: ignore[no-untyped-def]
    model: Path, images: list[Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for extra in (["--out", "-"], []):
        assert main(["predict", str(model), *map(str, images), *extra]) == 0
        captured = capsys.readouterr()
        rows = list(csv.DictReader(io.StringIO(captured.out)))
        assert [r["path"] for r in rows] == [str(p) for p in images]
        assert "scored on" in captured.err  # the summary goes to stderr: stdout holds only the results
    assert not (tmp_path / "-").exists()


def test_dash_is_refused_when_stdout_carries_events(model: Path, images: list[Path], capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["predict", str(model), str(images[0]), "--out", "-", "--events", "jsonl"]) == 2
    assert "--events" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_csv_and_jsonl_hold_the_same_rows_with_an_error_column(
    model: Path, images: list[Path], tmp_path: Path, suffix: str
) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    out = tmp_path / f"p{suffix}"
    r = api.predict(model, [*images, bad], out=out)
    text = out.read_text()
    rows = list(csv.DictReader(text.splitlines())) if suffix == ".csv" else [json.loads(x) for x in text.splitlines()]
    assert [row["path"] for row in rows] == [str(p) for p in [*images, bad]]
    assert [bool(row.get("error")) for row in rows] == [False, False, False, True]
    assert r.failed == [(str(bad), rows[-1]["error"])]


def test_results_metadata_names_the_provider_actually_used(model: Path, images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    r = api.predict(model, images, out=out, device="cpu")
    meta = json.loads(run_metadata_path(out).read_text())
    assert meta["provider"] == r.provider == "CPUExecutionProvider" and meta["device_requested"] == "cpu"
    assert meta["images"] == 3 and meta["threshold"] == r.threshold and meta["onnxruntime"]
