"""Shared few-shot fixtures: a defect-aware (``synthdefect``) project, fitted and exported once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sslinspect.config import PretrainConfig
from tests.conftest import build_project


@pytest.fixture(scope="session")
def segment_project(tmp_path_factory: pytest.TempPathFactory, demo_data) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A demo project pretrained with ``synthdefect`` (tiny CNN, 64 px, one epoch), fitted and exported.

    Read-only: copy it to change it.
    """
    root = tmp_path_factory.mktemp("seg") / "seg.sslproj"
    cfg = PretrainConfig(
        method="synthdefect", backbone="tiny_cnn", image_size=64, epochs=1, batch_size=16, device="cpu"
    )
    yield build_project(root, demo_data, cfg)
