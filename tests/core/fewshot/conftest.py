"""Shared few-shot fixtures: a defect-aware (``synthdefect``) project, fitted and exported once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sslinspect import api
from sslinspect.config import FewShotConfig, PretrainConfig


@pytest.fixture(scope="session")
def segment_project(tmp_path_factory: pytest.TempPathFactory, demo_data) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A demo project pretrained with ``synthdefect`` (tiny CNN, 64 px, one epoch), fitted and exported.

    Read-only: copy it to change it.
    """
    root = tmp_path_factory.mktemp("seg") / "seg.sslproj"
    project = api.create_project(root, images=[demo_data.unlabeled_dir])
    api.scan_images(project)
    api.import_labels(project, demo_data.labels_csv)
    api.pretrain(
        project,
        PretrainConfig(method="synthdefect", backbone="tiny_cnn", image_size=64, epochs=1, batch_size=16, device="cpu"),
    )
    api.fit_fewshot(project, FewShotConfig(device="cpu"))
    api.export_onnx(project, root / "exports" / "model" / "model.onnx")
    project.close()
    yield root
