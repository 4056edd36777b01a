"""Losses and similarity logits run in fp32 even inside bf16 autocast (CPU autocast stands in for CUDA's); the
MoCo v2 queue never makes ``torch.compile`` recompile; EMA updates are multi-tensor kernels."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest
import torch
from torch import nn

from sslinspect.methods import load_method
from sslinspect.methods.base import ema_update, momentum_copy
from sslinspect.methods.heads import CosinePrototypes
from sslinspect.methods.losses import (
    BarlowTwinsLoss,
    DINOLoss,
    MoCoLoss,
    NegativeCosineLoss,
    NTXentLoss,
    SwAVLoss,
    sinkhorn,
)
from sslinspect.methods.mocov2 import MoCoV2
from sslinspect.model.backbones import build_backbone
from tests.core.methods.conftest import tiny_config

N, D = 64, 128


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


A, B, C = _randn(N, D, seed=1), _randn(N, D, seed=2), _randn(4 * N, D, seed=3)
PROTOS = CosinePrototypes(D, 32)
CASES: dict[str, Callable[[], torch.Tensor]] = {
    "ntxent": lambda: NTXentLoss(0.1)(A, B),
    "moco_queue": lambda: MoCoLoss(0.2)(A, B, queue=C, queue_valid=torch.arange(4 * N) < 3 * N),
    "negative_cosine": lambda: NegativeCosineLoss()(A, B),
    "barlow_twins": lambda: BarlowTwinsLoss()(A, B),
    "dino": lambda: DINOLoss(D).eval()([A, B, C[:N]], [B, A], teacher_temp=0.04),
    "swav": lambda: SwAVLoss()([PROTOS(A), PROTOS(B)], [PROTOS(C[:N])]),
    "sinkhorn": lambda: sinkhorn(PROTOS(A)),
    "cosine_prototypes": lambda: PROTOS(A),
}


@pytest.mark.parametrize("name", list(CASES))
def test_losses_under_bf16_autocast_equal_fp32(name: str) -> None:
    with torch.no_grad():
        ref = CASES[name]()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = CASES[name]()
    assert mixed.dtype == torch.float32
    rel = float((mixed - ref).abs().max() / ref.abs().max().clamp(min=1e-12))
    assert rel < 1e-5, f"{name}: relative difference {rel:.2e} under bf16 autocast"


def test_moco_queue_mask_equals_the_filled_slice() -> None:
    valid = torch.arange(4 * N) < 3 * N
    masked = MoCoLoss(0.2)(A, B, queue=C, queue_valid=valid)
    torch.testing.assert_close(masked, MoCoLoss(0.2)(A, B, queue=C[: 3 * N]))


def test_mocov2_queue_position_never_recompiles() -> None:
    from torch._dynamo.testing import CompileCounter

    cfg = tiny_config("mocov2", queue_size=16)
    model = cast(MoCoV2, load_method("mocov2").make_model(build_backbone("tiny_cnn", 32), cfg))
    model._capacity = 12  # as on_epoch_start sets it for 24 images
    counter = CompileCounter()
    forward = torch.compile(model, backend=counter)
    views = [_randn(8, 3, 32, 32, seed=s) for s in (4, 5)]
    torch._dynamo.reset()
    for _ in range(4):  # pointer 0 → 8 → 4 → 0, fill 0 → 8 → 12
        forward(views).loss.backward()
    assert int(model.queue_ptr) == 32 % 12 and int(model.queue_len) == 12
    assert counter.frame_count == 1, f"compiled {counter.frame_count} times"


def test_ema_is_one_multi_tensor_update(monkeypatch: pytest.MonkeyPatch) -> None:
    online = build_backbone("tiny_cnn", 32)
    target = momentum_copy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in target.named_parameters()}
    calls: list[int] = []
    lerp = torch._foreach_lerp_

    def counting(tensors: list[torch.Tensor], tensors1: list[torch.Tensor], weight: float) -> None:
        calls.append(len(tensors))
        lerp(tensors, tensors1, weight)

    monkeypatch.setattr(torch, "_foreach_lerp_", counting)
    ema_update(target, online, 0.9)
    assert calls == [len(before)]
    for (name, t), o in zip(target.named_parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * before[name] + 0.1 * o)
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        assert torch.equal(tb, ob)
    with pytest.raises(ValueError, match="parameters"):
        ema_update(target, nn.Linear(2, 2), 0.9)
