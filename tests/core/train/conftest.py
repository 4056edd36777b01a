"""Fixtures for the engine tests: a scanned tiny project (3 classes × 12 images, 32 px), optionally labelled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sslinspect import api
from sslinspect.project import Project
from tests.conftest import CLASS_SHAPES


@pytest.fixture
def tiny_project(tiny_image_folder: Path, project_dir: Path) -> Iterator[Project]:
    """The tiny image folder as a scanned project (no labels)."""
    project = api.create_project(project_dir, images=[tiny_image_folder])
    api.scan_images(project)
    yield project
    project.close()


def label_images(project: Project, folder: Path, per_class: int, classes: tuple[str, ...] = CLASS_SHAPES) -> None:
    """Label the first ``per_class`` images of each class folder with the folder's name."""
    lines = ["path,label"]
    for kind in classes:
        lines += [f"{folder.name}/{kind}/{kind}_{i:02d}.png,{kind}" for i in range(per_class)]
    csv = folder.parent / "labels.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = api.import_labels(project, csv)
    assert result.imported == per_class * len(classes) and not result.problems
