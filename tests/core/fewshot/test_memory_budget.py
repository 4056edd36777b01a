"""The few-shot fit chooses its batch from the memory estimate and the free GPU memory instead of only logging
the estimate (the patch-to-bank similarity block alone is ~13 GB at batch 64, 4 tiles, 224 px)."""

from __future__ import annotations

import numpy as np
import torch

from sslinspect.config import FewShotConfig
from sslinspect.events import CollectingReporter, Progress
from sslinspect.fewshot.bank import GPU_SHARE, build_bank, estimate_memory
from sslinspect.fewshot.patchcore import FeatureNet
from sslinspect.model.backbones import build_backbone

GB = 2**30


def test_the_batch_shrinks_to_fit_the_free_gpu_memory() -> None:
    cfg = FewShotConfig(batch_size=64)
    patches = 4 * 56 * 56  # 4 tiles of 224 px, stride-4 maps
    full = estimate_memory(5000, patches, 384, cfg, "cuda", free_bytes=200 * GB)
    assert full.batch_size == 64 and full.peak_mb * 2**20 > 10 * GB  # the block that used to run out of memory
    small = estimate_memory(5000, patches, 384, cfg, "cuda", free_bytes=4 * GB)
    assert 1 <= small.batch_size < 64
    assert small.peak_mb * 2**20 <= GPU_SHARE * 4 * GB
    assert "batch " in small.message() and "instead of 64" in small.message()
    assert estimate_memory(5000, patches, 384, cfg, "cpu").batch_size == 64  # RAM: the configured batch


def test_the_bank_is_built_in_the_batches_the_estimate_chose() -> None:
    torch.manual_seed(0)
    net = FeatureNet(build_backbone("tiny_cnn", 32), 32)
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    cfg = FewShotConfig(batch_size=8, contamination=0.0)
    with torch.no_grad():
        _, probe = net(torch.zeros((1, 32, 32, 3), dtype=torch.uint8))
    ppi, dim = probe.shape[2] * probe.shape[3], probe.shape[1]
    assert estimate_memory(10, ppi, dim, cfg, "cuda", free_bytes=100 * GB).batch_size == 8
    free = int(_bytes_for_batch(10, ppi, dim, cfg, 3) / GPU_SHARE)
    tight = estimate_memory(10, ppi, dim, cfg, "cuda", free_bytes=free)
    assert tight.batch_size == 3
    reporter = CollectingReporter()
    pool = np.arange(10)
    build_bank(net, images, pool, np.ones(10, bool), cfg, tight, device=torch.device("cpu"), report=reporter)
    steps = [e.step for e in reporter.events if isinstance(e, Progress) and e.stage == "bank"]
    assert steps == [3, 6, 9, 10]


def _bytes_for_batch(n: int, ppi: int, dim: int, cfg: FewShotConfig, batch: int) -> int:
    """Memory for ``batch`` images and a half, from two estimates with unlimited memory."""
    one = estimate_memory(n, ppi, dim, cfg, "cuda", free_bytes=10**15)  # batch = cfg.batch_size
    two = estimate_memory(n, ppi, dim, FewShotConfig(batch_size=cfg.batch_size - 1), "cuda", free_bytes=10**15)
    per_image = round((one.peak_mb - two.peak_mb) * 2**20)
    fixed = round(one.peak_mb * 2**20) - cfg.batch_size * per_image
    return fixed + batch * per_image + per_image // 2
