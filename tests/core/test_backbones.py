"""Backbones: the feature contract ``(B, D)`` with ``D`` known up front, CNN feature maps at stride 8 and 16 (the
patch-level anomaly model's contract), ViTs at other input sizes, and one training step of the methods that stress
the interface (small local crops, small tiles, masked tokens, whole-cache embedding) with every backbone."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest
import torch

from sslinspect.catalog import BACKBONES, METHODS
from sslinspect.data.loader import BatchSource
from sslinspect.errors import ConfigError
from sslinspect.methods import load_method
from sslinspect.model.backbones import FeatureMaps, _ViT, build_backbone
from sslinspect.train.loop import make_optimizer
from tests.core.methods.conftest import tiny_config

CNNS = [n for n, b in BACKBONES.items() if b.family == "cnn"]
VITS = [n for n, b in BACKBONES.items() if b.family == "vit"]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_features_have_the_declared_width(name: str) -> None:
    net = build_backbone(name, 64).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, BACKBONES[name].feature_dim) == (2, net.feature_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", CNNS)
@pytest.mark.parametrize("size", [64, 96])
def test_cnn_feature_maps_are_at_stride_8_and_16(name: str, size: int) -> None:
    net = build_backbone(name, size).eval()
    with torch.no_grad():
        maps = cast(FeatureMaps, net).feature_maps(torch.randn(1, 3, size, size))
    assert [size // m.shape[-1] for m in maps] == [8, 16]
    assert all(m.shape[-2] == m.shape[-1] for m in maps)


@pytest.mark.parametrize("name", VITS)
def test_vit_matches_torchvision_and_takes_other_multiples_of_16(name: str) -> None:
    torch.manual_seed(0)
    net = cast(_ViT, build_backbone(name, 64)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = net.encode(net.patch_tokens(x))
        torch.testing.assert_close(tokens[:, 0], net.net(x))  # our token path is torchvision's forward
        torch.testing.assert_close(net(x), tokens[:, 1:].mean(1))  # the feature: mean of the patch tokens
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, BACKBONES[name].feature_dim)
        (grid,) = net.feature_maps(x)
    assert grid.shape == (2, BACKBONES[name].feature_dim, 4, 4)


def test_vit_refuses_an_image_size_that_is_not_a_multiple_of_16() -> None:
    with pytest.raises(ConfigError, match=r"pretrain\.image_size must be a multiple of 16 for vit_tiny; got 70"):
        build_backbone("vit_tiny", 70)


STRESS = {"cnn": ("dino", "jigsaw", "relpatch", "deepcluster"), "vit": ("dino", "mae", "deepcluster")}
FAST = ("tiny_cnn", "resnet18", "vit_tiny")  # the larger ones take 5–20 s a step on a shared CPU: slow tests
CASES = [
    pytest.param(m, b, id=f"{m}-{b}", marks=() if b in FAST else pytest.mark.slow)
    for b, info in BACKBONES.items()
    for m in STRESS[info.family]
    if info.family in METHODS[m].backbones
]


@pytest.mark.parametrize(("method", "backbone"), CASES)
def test_one_step_of_interface_heavy_methods_with_every_backbone(method: str, backbone: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(method, backbone, batch_size=4)
    spec = load_method(method)
    model = spec.make_model(build_backbone(backbone, 32), cfg)
    images = (np.random.default_rng(0).random((8, 32, 32, 3)) * 255).astype(np.uint8)
    source = BatchSource(images, 4, torch.device("cpu"))
    model.train()
    model.on_epoch_start(0, source)
    rows, batch = next(iter(source.epoch(0)))
    out = model(spec.make_views(cfg)(batch), rows)
    opt = make_optimizer(spec, model, cfg)
    out.loss.backward()
    opt.step()
    assert torch.isfinite(out.loss.detach())
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
