"""Fixtures for the method tests: tiny real images and a small config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from sslinspect.config import PretrainConfig
from tests.conftest import CLASS_SHAPES, make_class_image

if TYPE_CHECKING:
    import torch

    from sslinspect.methods.base import SSLModel


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


def train_method(
    method: str,
    backbone: str,
    images: np.ndarray,
    tmp: Path,
    *,
    device: torch.device | None = None,
    on_step: Callable[[int], None] | None = None,
    cuda_flags: bool = False,
    **over: object,
) -> tuple[SSLModel, list[float]]:
    """Run the real training loop for one epoch of ``tiny_config`` (+ ``over``); return the model and the reported
    losses. ``on_step(k)`` runs after optimiser step ``k``; ``cuda_flags`` forces the CUDA recipe on any device."""
    import torch

    from sslinspect.cancel import NEVER
    from sslinspect.data.loader import BatchSource
    from sslinspect.events import Event, Metric
    from sslinspect.methods import check_config, load_method
    from sslinspect.model.backbones import build_backbone
    from sslinspect.train.loop import train_loop

    device = device or torch.device("cpu")
    cfg = tiny_config(method, backbone, **over)
    check_config(cfg)
    torch.manual_seed(0)
    spec = load_method(method)
    model = spec.make_model(build_backbone(backbone, cfg.image_size), cfg)
    if on_step is not None:
        after_step, steps = model.after_step, [0]

        def hooked(progress: float) -> None:
            after_step(progress)
            steps[0] += 1
            on_step(steps[0])

        model.after_step = hooked  # type: ignore[method-assign]
    losses: list[float] = []

    def report(event: Event) -> None:
        if isinstance(event, Metric) and event.name == "loss":
            losses.append(event.value)

    train_loop(
        model,
        spec.make_views(cfg),
        BatchSource(images, cfg.batch_size, device, seed=0),
        spec,
        cfg,
        device=device,
        checkpoint_path=tmp / "last.pt",
        checkpoint_meta={"method": method, "backbone": backbone, "image_size": cfg.image_size},
        resume=None,
        report=report,
        cancel=NEVER,
        cuda_flags=cuda_flags,
    )
    return model, losses
