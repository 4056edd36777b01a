"""The CUDA data path (GPU-resident cache, bf16 autocast, channels_last) on a real GPU; skipped without one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sslinspect import api
from sslinspect.config import PretrainConfig
from sslinspect.events import CollectingReporter, Log, Metric
from sslinspect.project import Project


@pytest.mark.gpu
def test_cuda_pretraining_keeps_the_cache_on_the_gpu(tiny_project: Project, tiny_pretrain: PretrainConfig) -> None:
    reporter = CollectingReporter()
    cfg = replace(tiny_pretrain, device="cuda", epochs=2, amp=True, channels_last=True)
    result = api.pretrain(tiny_project, cfg, report=reporter)
    assert result.status == "completed" and result.device.startswith("cuda")
    assert any(isinstance(e, Log) and "image cache in GPU memory" in e.message for e in reporter.events)
    metrics = {e.name: e.value for e in reporter.events if isinstance(e, Metric)}
    assert metrics["gpu_mem_gb"] > 0 and metrics["data_wait"] < 0.5 and metrics["emb_std"] > 0


@pytest.mark.gpu
def test_fp16_with_loss_scaling_trains_where_bf16_is_not_native(
    tiny_project: Project, tiny_pretrain: PretrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import math

    import torch

    import sslinspect.train.loop as loop

    monkeypatch.setattr(loop, "amp_dtype", lambda device: torch.float16)  # as on a Turing card
    scalers: list[bool] = []
    make_scaler = loop.grad_scaler_for

    def counting_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
        scalers.append(True)
        return make_scaler(device, amp)

    monkeypatch.setattr(loop, "grad_scaler_for", counting_scaler)
    result = api.pretrain(tiny_project, replace(tiny_pretrain, device="cuda", epochs=1, amp=True))
    assert result.status == "completed" and math.isfinite(result.final_loss) and scalers
    assert make_scaler(torch.device("cuda"), True).is_enabled()
