"""Fixtures for the method tests: tiny real images and a small config."""

from __future__ import annotations

import numpy as np
import pytest

from sslinspect.config import PretrainConfig
from tests.conftest import CLASS_SHAPES, make_class_image


@pytest.fixture(scope="session")
def tiny_images() -> np.ndarray:
    """24 RGB ``uint8`` 32×32 images (discs, squares, stripes on noise), as a cache holds them."""
    rng = np.random.default_rng(0)
    return np.stack([make_class_image(CLASS_SHAPES[i % 3], rng)[..., ::-1] for i in range(24)])


def tiny_config(method: str, backbone: str = "tiny_cnn", **over: object) -> PretrainConfig:
    """A config that trains any method in well under a second per step on CPU."""
    base: dict[str, object] = {
        "method": method,
        "backbone": backbone,
        "image_size": 32,
        "epochs": 1,
        "batch_size": 8,
        "hidden_dim": 64,
        "proj_dim": 32,
        "num_prototypes": 16,
        "queue_size": 32,
        "clusters": 4,
        "local_crops": 2,
        "log_every": 1,
        "device": "cpu",
    }
    return PretrainConfig(**{**base, **over})  # type: ignore[arg-type]
