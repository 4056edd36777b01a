"""``sslinspect evaluate`` (k-NN, linear, fine-tune; cross-validated) and ``sslinspect compare`` on a real project."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from sslinspect import api
from sslinspect.cli import main
from sslinspect.config import PretrainConfig
from tests.conftest import CLASS_SHAPES, make_class_image
from tests.core.train.conftest import label_images

TINY = PretrainConfig(
    method="simclr",
    backbone="tiny_cnn",
    image_size=32,
    epochs=1,
    batch_size=8,
    hidden_dim=64,
    proj_dim=32,
    device="cpu",
)


@pytest.fixture(scope="module")
def labelled_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny 3-class folder as a project with 4 labels per class and one finished pretraining run."""
    tmp = tmp_path_factory.mktemp("evaluate")
    folder, rng = tmp / "images", np.random.default_rng(0)
    for kind in CLASS_SHAPES:
        (folder / kind).mkdir(parents=True)
        for i in range(12):
            cv2.imwrite(str(folder / kind / f"{kind}_{i:02d}.png"), make_class_image(kind, rng))
    project = api.create_project(tmp / "p.sslproj", images=[folder])
    api.scan_images(project)
    label_images(project, folder, per_class=4)
    api.pretrain(project, TINY)
    project.close()
    yield tmp / "p.sslproj"


@pytest.mark.parametrize("argv", [["evaluate"], ["compare"]])
def test_new_commands_have_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    assert "usage: sslinspect" in capsys.readouterr().out


@pytest.mark.parametrize(("protocol", "floor"), [("knn", 0.6), ("linear", 0.6), ("finetune", 0.6)])
def test_evaluate_scores_the_run_with_cross_validation(
    labelled_project: Path, protocol: str, floor: float, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(labelled_project), "--protocol", protocol, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[: out.rindex("}") + 1])
    assert result["protocol"] == protocol and result["folds"] == 4 and result["labelled"] == 12
    assert result["classes"] == sorted(CLASS_SHAPES)
    assert floor <= result["balanced_accuracy"] <= 1 and sum(map(sum, result["confusion"])) == 12
    saved = json.loads((labelled_project / result["run_dir"] / "metrics.json").read_text())
    assert saved == result
    assert f"{protocol} on 12 labels (3 classes, 4-fold CV)" in out


def test_compare_lists_runs_with_their_evaluations(labelled_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for protocol in ("knn", "linear"):
        assert main(["-q", "evaluate", str(labelled_project), "--protocol", protocol, "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["compare", str(labelled_project), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    row = rows[0]
    assert (row["method"], row["backbone"], row["epochs_done"], row["epochs"], row["status"]) == (
        "simclr",
        "tiny_cnn",
        1,
        1,
        "ok",
    )
    assert row["final_loss"] > 0 and row["emb_std"] > 0 and 0 <= row["knn_monitor"] <= 1
    assert {"knn", "linear"} <= set(row["evaluations"])
    assert main(["compare", str(labelled_project)]) == 0
    header, line = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:6] == ["run", "method", "backbone", "px", "epochs", "status"]
    assert line.split()[1:6] == ["simclr", "tiny_cnn", "32", "1/1", "ok"]


def test_evaluate_needs_labels_and_a_known_run(
    tiny_project: api.Project, capsys: pytest.CaptureFixture[str], labelled_project: Path
) -> None:
    api.pretrain(tiny_project, TINY)
    assert main(["evaluate", str(tiny_project.root)]) == 1
    assert "evaluation needs ≥ 2 classes with ≥ 2 labelled images each" in capsys.readouterr().err
    assert main(["evaluate", str(labelled_project), "--run", "nope"]) == 1
    assert "no pretraining run 'nope' with a checkpoint (runs: " in capsys.readouterr().err
    assert main(["evaluate", str(labelled_project), "--protocol", "svm"]) == 2
