"""``train_loop`` guards with purpose-built models: GPU out-of-memory back-off, the collapse warning, NaN losses and
what a failed resume reports."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sslinspect.cancel import NEVER
from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.errors import CheckpointError, ResourceError
from sslinspect.events import CollectingReporter, Log, Metric
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput
from sslinspect.model.backbones import build_backbone
from sslinspect.model.checkpoint import load_checkpoint
from sslinspect.preprocess import normalize_u8
from sslinspect.train.loop import train_loop


class OomAbove(SSLModel):
    """Raises CUDA's out-of-memory error for batches larger than ``limit`` (as a too-large batch on a GPU would)."""

    def __init__(self, backbone: nn.Module, limit: int) -> None:
        super().__init__(backbone)
        self.limit = limit
        self.batches: list[int] = []

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        self.batches.append(views[0].shape[0])
        if views[0].shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        h = self.backbone(views[0])
        return StepOutput(h.pow(2).mean(), h.detach())


class Collapsed(SSLModel):
    """Trains normally but reports features that are all the same vector (a collapsed representation)."""

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        h = self.backbone(views[0])
        return StepOutput(h.pow(2).mean(), torch.ones_like(h).detach())


class NanAfter(SSLModel):
    """Trains normally for ``good`` steps, then its loss and features become NaN (a diverged run)."""

    def __init__(self, backbone: nn.Module, good: int) -> None:
        super().__init__(backbone)
        self.good, self.steps = good, 0

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        self.steps += 1
        h = self.backbone(views[0])
        if self.steps > self.good:
            h = h * float("nan")
        return StepOutput(h.pow(2).mean(), h.detach(), h.detach())


class FailsInStep(SSLModel):
    """Raises the RuntimeError a CUDA fault gives, from inside a training step."""

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def _views(batch: torch.Tensor) -> list[torch.Tensor]:
    return [normalize_u8(batch)]


def _run(
    model: SSLModel,
    cfg: PretrainConfig,
    tmp_path: Path,
    images: int = 64,
    resume: dict[str, object] | None = None,
    tier: str | None = None,
) -> tuple[object, CollectingReporter]:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8)
    source = BatchSource(data, cfg.batch_size, torch.device("cpu"), tier=tier)  # type: ignore[arg-type]
    spec = MethodSpec(name="test", make_model=lambda b, c: model)
    reporter = CollectingReporter()
    meta = {"backbone": "tiny_cnn", "image_size": 32, "config": {"batch_size": cfg.batch_size}}
    result = train_loop(
        model,
        _views,
        source,
        spec,
        cfg,
        device=torch.device("cpu"),
        checkpoint_path=tmp_path / "last.pt",
        checkpoint_meta=meta,
        resume=resume,
        report=reporter,
        cancel=NEVER,
    )
    return result, reporter


def test_gpu_oom_halves_the_batch_and_restarts_the_epoch(tiny_pretrain: PretrainConfig, tmp_path: Path) -> None:
    model = OomAbove(build_backbone("tiny_cnn"), limit=8)
    result, reporter = _run(model, replace(tiny_pretrain, batch_size=32, epochs=2), tmp_path)
    warnings = [e.message for e in reporter.events if isinstance(e, Log) and e.level == "WARNING"]
    assert warnings == [
        "GPU out of memory at batch size 32 (32px, tiny_cnn); retrying epoch 1 with batch size 16",
        "GPU out of memory at batch size 16 (32px, tiny_cnn); retrying epoch 1 with batch size 8",
    ]
    assert model.batches[:3] == [32, 16, 8] and set(model.batches[2:]) == {8}
    assert result.batch_size == 8 and result.epochs_done == 2 and result.steps_done == 2 * 64 // 8  # type: ignore[attr-defined]
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["config"]["batch_size"] == 8  # a resumed run starts with the batch that fits


def test_gpu_oom_first_moves_a_resident_cache_out_then_halves(tiny_pretrain: PretrainConfig, tmp_path: Path) -> None:
    model = OomAbove(build_backbone("tiny_cnn"), limit=16)
    result, reporter = _run(model, replace(tiny_pretrain, batch_size=32), tmp_path, tier="device")
    warnings = [e.message for e in reporter.events if isinstance(e, Log) and e.level == "WARNING"]
    assert warnings == [
        "GPU out of memory at batch size 32 (32px, tiny_cnn); image cache moved out of GPU memory (stream), "
        "retrying epoch 1",
        "GPU out of memory at batch size 32 (32px, tiny_cnn); retrying epoch 1 with batch size 16",
    ]
    assert model.batches[:3] == [32, 32, 16] and result.batch_size == 16  # type: ignore[attr-defined]


def test_gpu_oom_at_a_small_batch_stops_with_advice(tiny_pretrain: PretrainConfig, tmp_path: Path) -> None:
    model = OomAbove(build_backbone("tiny_cnn"), limit=2)
    with pytest.raises(ResourceError, match=r"out of memory at batch size 4 \(32px, tiny_cnn\): choose a smaller"):
        _run(model, replace(tiny_pretrain, batch_size=16), tmp_path)
    assert model.batches == [16, 8, 4]


def test_collapse_warns_once(tiny_pretrain: PretrainConfig, tmp_path: Path) -> None:
    cfg = replace(tiny_pretrain, batch_size=16, epochs=2, warmup_epochs=0, log_every=1)
    _, reporter = _run(Collapsed(build_backbone("tiny_cnn")), cfg, tmp_path)
    warnings = [e.message for e in reporter.events if isinstance(e, Log) and e.level == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("possible representation collapse: embedding std 0.000")
    assert all(e.value < 0.05 for e in reporter.events if isinstance(e, Metric) and e.name == "emb_std")


def test_nan_features_stop_with_the_loss_message_not_a_linalg_error(
    tiny_pretrain: PretrainConfig, tmp_path: Path
) -> None:
    cfg = replace(tiny_pretrain, batch_size=16, log_every=1)
    with pytest.raises(FloatingPointError, match=r"loss became nan in epoch 1; lower the learning rate"):
        _run(NanAfter(build_backbone("tiny_cnn"), good=1), cfg, tmp_path)


def test_resume_reports_a_mismatched_checkpoint_but_passes_runtime_errors_through(
    tiny_pretrain: PretrainConfig, tmp_path: Path
) -> None:
    cfg = replace(tiny_pretrain, batch_size=16)
    _run(Collapsed(build_backbone("tiny_cnn")), cfg, tmp_path)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    ckpt["epochs_done"] = 0
    with pytest.raises(CheckpointError, match=r"last\.pt: cannot resume \(Error\(s\) in loading state_dict"):
        _run(Collapsed(build_backbone("resnet18")), cfg, tmp_path, resume=ckpt)
    with pytest.raises(RuntimeError, match=r"^CUDA error: an illegal memory access") as err:
        _run(FailsInStep(build_backbone("tiny_cnn")), cfg, tmp_path, resume=ckpt)
    assert not isinstance(err.value, CheckpointError)


def test_loss_scaling_unscales_before_clipping_and_matches_the_unscaled_step() -> None:
    from sslinspect.methods.base import SSLModel as Base
    from sslinspect.train.loop import train_step

    class Plain(Base):
        def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
            return StepOutput(self.backbone(views[0]).pow(2).mean())

    views = [torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))]
    results = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**12)):
        torch.manual_seed(0)
        model = Plain(build_backbone("tiny_cnn"))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        train_step(model, model, opt, views, None, autocast=nullcontext(), grad_clip=0.01, progress=0.5, scaler=scaler)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results, strict=True):  # clipped to the same norm: the scale was taken out first
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
