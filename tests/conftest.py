"""Shared fixtures: synthetic images, tiny configs, projects; ``--runslow`` and the ``gpu`` marker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything can create a QApplication

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    cuda = _cuda_available()
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        return False


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes that must import this checkout (whatever is installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sslinspect ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "sslinspect", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or subprocess_env(),
        cwd=REPO,
        check=False,
    )


CLASS_SHAPES = ("disc", "square", "stripe")


def make_class_image(kind: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A BGR uint8 image whose colour and shape depend on ``kind``, on a seeded noise texture."""
    img = (rng.random((size, size, 3)) * 60 + 40).astype(np.uint8)
    c = size // 2 + int(rng.integers(-3, 4))
    if kind == "disc":
        cv2.circle(img, (c, c), size // 4, (40, 40, 220), -1)
    elif kind == "square":
        cv2.rectangle(img, (c - size // 5, c - size // 5), (c + size // 5, c + size // 5), (220, 60, 40), -1)
    else:
        cv2.rectangle(img, (0, c - 2), (size - 1, c + 2), (40, 200, 40), -1)
    return img


@pytest.fixture
def tiny_image_folder(tmp_path: Path) -> Path:
    """3 classes × 12 PNGs of 32×32 in ``images/<class>/``."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for kind in CLASS_SHAPES:
        (root / kind).mkdir(parents=True)
        for i in range(12):
            cv2.imwrite(str(root / kind / f"{kind}_{i:02d}.png"), make_class_image(kind, rng))
    return root


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A path where a test may create a project."""
    return tmp_path / "test.sslproj"


@pytest.fixture
def tiny_pretrain():  # type: ignore[no-untyped-def]
    """A pretraining config that runs in seconds on CPU."""
    from sslinspect.config import PretrainConfig

    return PretrainConfig(
        method="simclr",  # the patch-bank path; the defect-aware default has its own tests
        backbone="tiny_cnn",
        image_size=32,
        epochs=1,
        batch_size=8,
        hidden_dim=64,
        proj_dim=32,
        log_every=2,
        device="cpu",
        seed=0,
    )


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A small demo dataset (metal, 160 images, 64 px) shared by the session."""
    from sslinspect.demo.dataset import generate_demo

    return generate_demo(
        tmp_path_factory.mktemp("demo"), product="metal", n_images=160, size=64, n_test_per_class=4, seed=0
    )


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory: pytest.TempPathFactory, demo_data) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A demo project scanned, labelled, pretrained (tiny), trained and exported — built once per session.

    Tests must treat it as read-only (copy it if they need to change it).
    """
    from sslinspect.config import PretrainConfig

    root = tmp_path_factory.mktemp("trained") / "demo.sslproj"
    cfg = PretrainConfig(
        method="simclr",
        backbone="tiny_cnn",
        image_size=32,
        epochs=2,
        batch_size=32,
        hidden_dim=64,
        proj_dim=32,
        device="cpu",
    )
    yield build_project(root, demo_data, cfg)


@pytest.fixture(scope="session")
def segment_project(tmp_path_factory: pytest.TempPathFactory, demo_data) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A demo project pretrained with ``synthdefect`` (tiny CNN, 64 px, one epoch), fitted and exported: the
    defect-aware model, with its sharp map. Read-only: copy it to change it."""
    from sslinspect.config import PretrainConfig

    root = tmp_path_factory.mktemp("seg") / "seg.sslproj"
    cfg = PretrainConfig(
        method="synthdefect", backbone="tiny_cnn", image_size=64, epochs=1, batch_size=16, device="cpu"
    )
    yield build_project(root, demo_data, cfg)


def build_project(root: Path, demo_data, pretrain) -> Path:  # type: ignore[no-untyped-def]
    """Create, scan, label (the demo's labels), pretrain with ``pretrain``, fit and export a project at ``root``."""
    from sslinspect import api
    from sslinspect.config import FewShotConfig

    project = api.create_project(root, images=[demo_data.unlabeled_dir])
    api.scan_images(project)
    api.import_labels(project, demo_data.labels_csv)
    api.pretrain(project, pretrain)
    api.fit_fewshot(project, FewShotConfig(device="cpu"))
    api.export_onnx(project, root / "exports" / "model" / "model.onnx")
    project.close()
    return root
