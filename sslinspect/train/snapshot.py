"""Embedding-map snapshots during pretraining: a fixed subsample of images embedded with the current backbone and
projected to 2-D (PCA), written as a small ``.npz`` that the GUI's live map reads (an ``Artifact`` event names it).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sslinspect.fsutil import atomic_path
from sslinspect.model.embed import embed_images

MAP_DIR = "embedding_map"


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project ``(N, D)`` rows onto their first two principal components (deterministic signs)."""
    xc = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    comps = vt[:2]
    comps *= np.sign(comps[:, np.argmax(np.abs(comps), axis=1)].diagonal())[:, None]
    xy = xc @ comps.T
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    return xy.astype(np.float32)


class EmbeddingSnapshots:
    """Writes ``<run>/embedding_map/epoch_NNNN.npz`` (``ids``, ``xy``, ``epoch``) and ``latest.npz``.

    Keeps its own cost under ``budget`` (a share of training time): snapshots are skipped while they would exceed it.
    """

    def __init__(
        self,
        run_dir: Path,
        images: np.ndarray,
        ids: tuple[int, ...],
        *,
        max_points: int = 2000,
        budget: float = 0.1,
        seed: int = 0,
    ) -> None:
        """Pick a fixed, seeded subsample of at most ``max_points`` cached images."""
        n = len(ids)
        rows = np.arange(n) if n <= max_points else np.sort(np.random.default_rng(seed).choice(n, max_points, False))
        self.rows = rows
        self.images = images
        self.ids = np.asarray(ids, dtype=np.int64)[rows]
        self.dir = Path(run_dir) / MAP_DIR
        self.budget = budget
        self.spent = 0.0
        self.t0 = time.monotonic()

    def maybe_write(self, backbone: nn.Module, epoch: int, device: torch.device, *, force: bool = False) -> Path | None:
        """Embed, project and write a snapshot unless it would break the time budget. Returns the path written."""
        elapsed = time.monotonic() - self.t0
        if not force and self.spent > self.budget * max(elapsed, 1e-9):
            return None
        t = time.monotonic()
        was_training = backbone.training
        try:
            emb = embed_images(backbone, self.images[self.rows], device=device, batch_size=128)
        finally:
            backbone.train(was_training)
        xy = pca_2d(emb)
        self.dir.mkdir(exist_ok=True)  # not parents: a run folder moved away is not re-created at the old path
        path = self.dir / f"epoch_{epoch:04d}.npz"
        for target in (path, self.dir / "latest.npz"):
            with atomic_path(target) as tmp, tmp.open("wb") as fh:
                np.savez(fh, ids=self.ids, xy=xy, epoch=np.array(epoch))
        self.spent += time.monotonic() - t
        return path
