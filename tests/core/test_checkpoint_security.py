"""Untrusted checkpoints and weight files: code in a pickle never runs, and malformed files fail with one line."""

from __future__ import annotations

import errno
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from sslinspect import api, fsutil
from sslinspect.config import PretrainConfig
from sslinspect.errors import CheckpointError
from sslinspect.model.backbones import build_backbone
from sslinspect.model.checkpoint import (
    FORMAT,
    build_backbone_from_checkpoint,
    load_backbone_weights,
    load_checkpoint,
    save_checkpoint,
)


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: a stand-in for any code an attacker wants to run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.marker,)


def _valid(**over: object) -> dict[str, object]:
    net = build_backbone("tiny_cnn", 32)
    return {
        "format": FORMAT,
        "format_version": 1,
        "backbone": "tiny_cnn",
        "image_size": 32,
        "epochs_done": 1,
        "backbone_state": net.state_dict(),
        **over,
    }


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PAYLOAD_RAN"


@pytest.fixture(params=["torch_zip", "pickle_protocol_2", "pickle_protocol_5"])
def evil_file(request: pytest.FixtureRequest, tmp_path: Path, marker: Path) -> Path:
    """A checkpoint-looking file whose unpickling runs code: torch's zip format and legacy plain pickles."""
    obj = _valid(backbone_state={"net.weight": torch.zeros(2)}, extra=Payload(marker))
    path = tmp_path / f"evil-{request.param}.pt"
    if request.param == "torch_zip":
        torch.save(obj, path)
    else:
        with path.open("wb") as fh:
            pickle.dump(obj, fh, protocol=int(request.param[-1]))
    # the payload is real: an unsafe load would run it
    with path.open("rb") as fh:
        (torch.load(fh, weights_only=False) if request.param == "torch_zip" else pickle.load(fh))
    assert marker.is_dir()
    marker.rmdir()
    return path


def test_pickle_payload_in_a_checkpoint_never_runs(evil_file: Path, marker: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(evil_file)
    assert not marker.exists()
    message = str(err.value)
    assert message.startswith(f"{evil_file}: unreadable or unsafe checkpoint (refused: ") and "\n" not in message
    assert "weights_only" not in message  # torch's advice to load unsafely is never passed on
    if "torch_zip" in evil_file.name:  # plain pickles are refused earlier (their tensor globals, protocol 5 opcodes)
        assert "it contains Python objects that could run code (posix.mkdir)" in message


def test_pickle_payload_in_imported_weights_never_runs(evil_file: Path, marker: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not a safe weights file \(refused: "):
        load_backbone_weights(build_backbone("tiny_cnn", 32), evil_file)
    assert not marker.exists()


def test_pretrain_refuses_payload_as_weights_and_as_resume_checkpoint(
    tiny_image_folder: Path,
    project_dir: Path,
    tiny_pretrain: PretrainConfig,
    evil_file: Path,
    marker: Path,
) -> None:
    project = api.create_project(project_dir, images=[tiny_image_folder])
    api.scan_images(project)
    from dataclasses import replace

    with pytest.raises(CheckpointError, match="not a safe weights file"):
        api.pretrain(project, replace(tiny_pretrain, weights=str(evil_file)))
    run = project.new_run_dir("pretrain", "simclr")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(evil_file.read_bytes())  # a tampered project folder
    project.set_latest("pretrain", run)
    with pytest.raises(CheckpointError, match="unreadable or unsafe checkpoint"):
        api.pretrain(project, tiny_pretrain, resume=True)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "unreadable or unsafe checkpoint"),
        (b"definitely not a checkpoint", "unreadable or unsafe checkpoint"),
        ("zip", "unreadable or unsafe checkpoint"),
    ],
)
def test_garbage_files(tmp_path: Path, content: bytes | str, message: str) -> None:
    path = tmp_path / "x.pt"
    if content == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")  # a zip that is not a torch file
    else:
        path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError):
        load_backbone_weights(build_backbone("tiny_cnn", 32), path)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(good, _valid())
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="unreadable or unsafe checkpoint"):
        load_checkpoint(cut)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"format": "other"}, "not an SSL Inspect checkpoint"),
        ({"format_version": 7}, "checkpoint format 7 is newer than this SSL Inspect"),
        ({"format_version": torch.tensor(1)}, "no valid format_version"),
        ({"backbone": "evilnet"}, "unknown backbone 'evilnet'"),
        ({"backbone": 3}, "field 'backbone' has the wrong type (int)"),
        ({"image_size": "32"}, "field 'image_size' has the wrong type (str)"),
        ({"image_size": 10**9}, "image size 1000000000 is out of range"),
        ({"epochs_done": -3}, "epochs_done is negative"),
        ({"backbone_state": {"w": [1, 2]}}, "'backbone_state' is not a state dict of tensors"),
        ({"model_state": "x"}, "'model_state' is not a state dict of tensors"),
    ],
)
def test_malformed_fields_are_refused(tmp_path: Path, over: dict[str, object], message: str) -> None:
    path = tmp_path / "c.pt"
    torch.save(_valid(**over), path)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_checkpoint(path)


def test_missing_required_field(tmp_path: Path) -> None:
    obj = _valid()
    del obj["image_size"]
    torch.save(obj, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="checkpoint lacks 'image_size'"):
        load_checkpoint(tmp_path / "c.pt")


def test_weights_that_do_not_fit_name_the_tensor(tmp_path: Path) -> None:
    state = build_backbone("tiny_cnn", 32).state_dict()
    key = next(iter(state))
    wrong = dict(state)
    wrong[key] = torch.zeros(3, 3)
    torch.save(wrong, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as err:
        load_backbone_weights(build_backbone("tiny_cnn", 32), tmp_path / "w.pt")
    assert f"tensor {key} has shape (3, 3), the backbone expects" in str(err.value)
    torch.save({"classifier.weight": torch.zeros(10, 10)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no tensor matches this backbone"):
        load_backbone_weights(build_backbone("tiny_cnn", 32), tmp_path / "other.pt")
    ckpt = _valid(backbone_state=wrong)
    with pytest.raises(CheckpointError, match=f"checkpoint weights do not fit tiny_cnn: size mismatch for {key}"):
        build_backbone_from_checkpoint(ckpt)


def test_valid_checkpoint_loads_and_rebuilds(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.pt", _valid())
    net = build_backbone_from_checkpoint(load_checkpoint(tmp_path / "c.pt"))
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 128)


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, _valid(epochs_done=1))

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", full)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, _valid(epochs_done=2))
    assert str(err.value) == f"{path}: cannot write checkpoint (disk full); the previous checkpoint is kept"
    monkeypatch.undo()
    assert load_checkpoint(path)["epochs_done"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
