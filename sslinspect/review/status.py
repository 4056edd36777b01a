"""What a project holds and which pipeline steps are possible now (the app's step buttons and status bar)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslinspect.project import Project
from sslinspect.runs import MIN_IMAGES, find_checkpoint, read_status


@dataclass(frozen=True, slots=True)
class ProjectStatus:
    """What the project holds and which pipeline steps are possible now."""

    images: int
    unreadable: int
    labels: dict[str, int]
    checkpoint: Path | None
    pretrain_run: Path | None
    pretrain_state: str | None
    fewshot_run: Path | None
    export: Path | None

    @property
    def labelled(self) -> int:
        """Total number of labelled images."""
        return sum(self.labels.values())

    @property
    def can_pretrain(self) -> bool:
        """Enough readable images to pretrain."""
        return self.images >= MIN_IMAGES

    @property
    def can_resume(self) -> bool:
        """The latest pretraining run stopped early and left a checkpoint."""
        # "running" on another machine may be a killed run too (its process cannot be checked from here)
        return self.checkpoint is not None and self.pretrain_state in ("cancelled", "failed", "interrupted", "running")


def _run_state(run_dir: Path) -> str | None:
    """The run's state as :func:`sslinspect.runs.read_status` reads it (a killed run is ``interrupted``)."""
    state = read_status(run_dir).get("state")
    return str(state) if state and state != "unknown" else None


def project_status(project: Project) -> ProjectStatus:
    """Summarise ``project`` (re-reads ``project.json``: a worker process may have moved its pointers)."""
    project.reload()
    counts = project.store.counts()
    latest = project.latest("pretrain")
    checkpoint = find_checkpoint(project)
    pretrain_run = checkpoint.parent.parent if checkpoint else latest
    fewshot = project.latest("fewshot")
    export = project.latest("export")
    return ProjectStatus(
        images=counts["unique"],
        unreadable=counts["error"],
        labels=project.store.label_counts(),
        checkpoint=checkpoint,
        pretrain_run=pretrain_run,
        pretrain_state=_run_state(pretrain_run) if pretrain_run else None,
        fewshot_run=fewshot if fewshot and (fewshot / "head.npz").is_file() else None,
        export=export if export and export.is_file() else None,
    )


def existing_cache(project: Project, min_size: int = 64) -> tuple[np.ndarray, dict[int, int], int] | None:
    """The smallest decoded-image cache of at least ``min_size`` px already on disk (never builds one).

    Returns:
        ``(images, row_of_id, size)`` with ``images`` memory-mapped read-only, or None when there is none.
    """
    from sslinspect.data.cache import cached_sizes, open_cache

    for size in cached_sizes(project):  # smallest first
        if size < min_size:
            continue
        cache = open_cache(project, size)
        if cache is not None:
            return cache.images, cache.index_of(), size
    return None
