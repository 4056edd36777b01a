"""The typing tests' shared cases: descriptors of drawn defects (true masks) and the five-shot split."""

from __future__ import annotations

import numpy as np

from sslinspect.defects.describe import describe
from tests.core.fewshot.drawn import dataset

SHOTS = 5


def described_set() -> tuple[np.ndarray, np.ndarray]:
    """Descriptors (from the true masks) of 8 drawn frames per type and 8 never-labelled warps, and their types."""
    images, masks, kinds = dataset(8, seed=3, novel=8)
    return np.stack([describe(i, m) for i, m in zip(images, masks, strict=True)]), np.array(kinds)


def split(labels: np.ndarray, types: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The first :data:`SHOTS` rows of each type to fit on, the rest to name."""
    train = np.concatenate([np.flatnonzero(labels == t)[:SHOTS] for t in types])
    test = np.concatenate([np.flatnonzero(labels == t)[SHOTS:] for t in types])
    return train, test
