"""Few-shot fitting extracts features in fp32 (what the exported fp32 graph serves), even under a caller's
autocast; on a GPU (``gpu`` marker) the CUDA features match the CPU's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sslinspect.fewshot.bank import iter_features
from sslinspect.fewshot.patchcore import FeatureNet
from sslinspect.model.backbones import build_backbone
from tests.conftest import CLASS_SHAPES, make_class_image

CPU = torch.device("cpu")
RNG = np.random.default_rng(0)
IMAGES = np.stack([make_class_image(CLASS_SHAPES[i % 3], RNG, size=64)[..., ::-1] for i in range(6)])


def _features(net: FeatureNet, images: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.arange(len(images))
    parts = list(iter_features(net.to(device), images, rows, device=device, batch_size=4, stage="test"))
    return torch.cat([g.cpu() for _, g, _ in parts]), torch.cat([p.cpu() for _, _, p in parts])


def _net() -> FeatureNet:
    torch.manual_seed(0)
    return FeatureNet(build_backbone("resnet18", 64), 64)


def test_features_stay_fp32_under_an_enclosing_autocast() -> None:
    images = np.ascontiguousarray(IMAGES)
    net = _net()
    g32, p32 = _features(net, images, CPU)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g, p = _features(net, images, CPU)
    assert g.dtype == p.dtype == torch.float32
    torch.testing.assert_close(g, g32, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(p, p32, rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
def test_cuda_features_match_the_cpu_features() -> None:
    images = np.ascontiguousarray(IMAGES)
    g_cpu, p_cpu = _features(_net(), images, CPU)
    g_gpu, p_gpu = _features(_net(), images, torch.device("cuda"))
    # fp32 (TF32 convolutions at most) agrees to ~1e-3; bf16 features were off by ~1e-2
    torch.testing.assert_close(g_gpu, g_cpu, rtol=0, atol=2e-3)
    torch.testing.assert_close(p_gpu, p_cpu, rtol=0, atol=2e-3)
