"""Every method trains with the CUDA recipe (channels_last, mixed-precision autocast) forced on, here on the CPU:
the GPU path's memory-format and precision handling without a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sslinspect.backbones import BACKBONES, build_backbone
from sslinspect.cancel import NEVER
from sslinspect.data.loader import BatchSource
from sslinspect.events import Event, Metric
from sslinspect.methods import METHODS, check_config, load_method
from sslinspect.train.loop import to_channels_last, train_loop
from tests.core.methods.conftest import tiny_config

CPU = torch.device("cpu")
# one backbone per method: a CNN where the method takes one (channels_last matters for convolutions), else a ViT
PAIRS = [(m, "tiny_cnn" if "cnn" in METHODS[m].backbones else "vit_tiny") for m in METHODS]


@pytest.mark.parametrize(("method", "backbone"), PAIRS, ids=[m for m, _ in PAIRS])
def test_every_method_trains_with_the_cuda_flags_forced(
    method: str, backbone: str, tiny_images: np.ndarray, tmp_path: Path
) -> None:
    cfg = tiny_config(method, backbone, channels_last=True, amp=True)
    check_config(cfg)
    torch.manual_seed(0)
    spec = load_method(method)
    model = spec.make_model(build_backbone(backbone, cfg.image_size), cfg)
    inputs: list[bool] = []
    model.backbone.register_forward_pre_hook(
        lambda _m, args: inputs.append(args[0].dim() != 4 or args[0].is_contiguous(memory_format=torch.channels_last))
    )
    losses: list[float] = []

    def report(e: Event) -> None:
        if isinstance(e, Metric) and e.name == "loss":
            losses.append(e.value)

    train_loop(
        model,
        spec.make_views(cfg),
        BatchSource(tiny_images, cfg.batch_size, CPU, seed=0),
        spec,
        cfg,
        device=CPU,
        checkpoint_path=tmp_path / "last.pt",
        checkpoint_meta={"method": method, "backbone": backbone, "image_size": cfg.image_size},
        resume=None,
        report=report,
        cancel=NEVER,
        cuda_flags=True,
    )
    assert len(losses) == 3 and all(np.isfinite(losses))
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    if BACKBONES[backbone].family == "cnn" and method not in ("jigsaw",):  # jigsaw's shuffle gathers a copy
        assert inputs and all(inputs), "the backbone saw a batch that is not channels_last"


def test_tile_stacks_become_channels_last_per_tile() -> None:
    tiles = torch.randn(2, 9, 3, 8, 8)
    out = to_channels_last(tiles)
    assert out.shape == tiles.shape and torch.equal(out, tiles)
    assert out.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    assert to_channels_last(torch.randn(4, 5)).shape == (4, 5)
