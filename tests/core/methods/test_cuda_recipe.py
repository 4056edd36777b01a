"""Every method trains with the CUDA recipe (channels_last, mixed-precision autocast) forced on, here on the CPU:
the GPU path's memory-format and precision handling without a GPU. The same runs count the tensors made from
host data (``torch.tensor`` / ``torch.as_tensor``) in steady-state steps: on a GPU each is a copy that waits.
On a GPU (``gpu`` marker) the steady-state steps run under ``torch.cuda.set_sync_debug_mode("error")``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from sslinspect.catalog import BACKBONES
from sslinspect.methods import METHODS, load_method
from sslinspect.methods.base import SSLModel
from sslinspect.train.loop import to_channels_last
from tests.core.methods.conftest import tiny_config, train_method

CPU = torch.device("cpu")
# one backbone per method: a CNN where the method takes one (channels_last matters for convolutions), else a ViT
PAIRS = [(m, "tiny_cnn" if "cnn" in METHODS[m].backbones else "vit_tiny") for m in METHODS]
IDS = [m for m, _ in PAIRS]


def _train(
    method: str,
    backbone: str,
    images: np.ndarray,
    tmp: Path,
    device: torch.device,
    on_step: Callable[[int], None],
) -> tuple[SSLModel, list[float]]:
    """One epoch (3 steps, one report at its end) with the CUDA flags on; ``on_step(k)`` after step ``k``."""
    steps = [0]

    def counted(k: int) -> None:
        steps[0] = k
        on_step(k)

    model, losses = train_method(
        method,
        backbone,
        images,
        tmp,
        device=device,
        on_step=counted,
        cuda_flags=True,
        channels_last=True,
        amp=True,
        log_every=100,
    )
    assert steps[0] == 3 and len(losses) == 1 and all(np.isfinite(losses))
    return model, losses


@pytest.mark.parametrize(("method", "backbone"), PAIRS, ids=IDS)
def test_every_method_trains_with_the_cuda_flags_forced(
    method: str, backbone: str, tiny_images: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []  # host→device tensor creations after the first step
    steady = [False]

    def counting(fn):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            if steady[0]:
                made.append(fn.__name__)
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(torch, "tensor", counting(torch.tensor))
    monkeypatch.setattr(torch, "as_tensor", counting(torch.as_tensor))
    inputs: list[bool] = []

    def on_step(k: int) -> None:
        steady[0] = k < 3  # constants are made (and cached) in the first step; the epoch-end report is not a step

    model, _ = _train(method, backbone, tiny_images, tmp_path, CPU, on_step)
    assert made == [], f"tensors made from host data in steady-state steps: {made}"
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    # and the batches reach the backbone in NHWC (jigsaw's shuffle gathers a fresh tensor, so not checked there)
    if BACKBONES[backbone].family == "cnn" and method != "jigsaw":
        first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
        first_conv.register_forward_pre_hook(  # the stem conv: methods may run the trunk without backbone.forward
            lambda _m, args: inputs.append(args[0].is_contiguous(memory_format=torch.channels_last))
        )
        views = [
            to_channels_last(v)
            for v in load_method(method).make_views(tiny_config(method))(torch.from_numpy(tiny_images[:8]))
        ]
        with torch.no_grad():
            model(views, torch.arange(8))
        assert inputs and all(inputs), "the backbone saw a batch that is not channels_last"


def test_tile_stacks_become_channels_last_per_tile() -> None:
    tiles = torch.randn(2, 9, 3, 8, 8)
    out = to_channels_last(tiles)
    assert out.shape == tiles.shape and torch.equal(out, tiles)
    assert out.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    assert to_channels_last(torch.randn(4, 5)).shape == (4, 5)


@pytest.mark.gpu
@pytest.mark.parametrize(("method", "backbone"), PAIRS, ids=IDS)
def test_steady_state_steps_never_synchronise_on_cuda(
    method: str, backbone: str, tiny_images: np.ndarray, tmp_path: Path
) -> None:
    def on_step(k: int) -> None:  # steps 2 and 3 run under "error"; the epoch-end report reads values back
        torch.cuda.set_sync_debug_mode("error" if k < 3 else "default")

    try:
        _train(method, backbone, tiny_images, tmp_path, torch.device("cuda"), on_step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
