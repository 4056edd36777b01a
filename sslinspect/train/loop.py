"""The one training loop: setup → for each epoch → for each batch → step → report → cancel check → checkpoint.

Readable top to bottom on purpose. AMP (bf16 on CUDA), channels_last, gradient clipping and torch.compile are
explicit options of :class:`~sslinspect.config.PretrainConfig`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from sslinspect.cancel import CancelToken, wait_while_paused
from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.events import Log, Metric, Progress, Reporter
from sslinspect.methods.base import MethodSpec, SSLModel, ViewFn
from sslinspect.train.checkpoint import save_checkpoint
from sslinspect.train.health import COLLAPSE_STD, health_metrics

StopReason = Literal["completed", "cancelled", "time_budget"]


@dataclass(frozen=True, slots=True)
class LoopResult:
    """How the loop ended."""

    reason: StopReason
    epochs_done: int
    steps_done: int
    last_loss: float
    seconds: float


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(spec: MethodSpec, model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """The method's optimiser; norm and bias parameters get no weight decay."""
    wd = spec.weight_decay if spec.weight_decay is not None else cfg.weight_decay
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr(cfg), momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=spec.lr(cfg))


def train_loop(
    model: SSLModel,
    make_views: ViewFn,
    source: BatchSource,
    spec: MethodSpec,
    cfg: PretrainConfig,
    *,
    device: torch.device,
    checkpoint_path: Path,
    checkpoint_meta: dict[str, Any],
    resume: dict[str, Any] | None,
    report: Reporter,
    cancel: CancelToken,
    on_epoch_end: Callable[[int], None] | None = None,
) -> LoopResult:
    """Train ``model`` for ``cfg.epochs`` epochs (or until cancelled or out of time) and checkpoint every epoch.

    ``resume`` is a loaded checkpoint: model, optimiser and position are restored and the interrupted epoch
    restarts from its beginning (at most one epoch of work is lost).
    """
    # -- setup ----------------------------------------------------------------------------------------------------
    cuda = device.type == "cuda"
    model.to(device)
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(spec, model, cfg)
    start_epoch = 0
    if resume is not None:
        model.load_state_dict(resume["model_state"])
        optimizer.load_state_dict(resume["optimizer_state"])
        start_epoch = int(resume["epochs_done"])
        if "rng_state" in resume:
            torch.set_rng_state(resume["rng_state"])
    forward = torch.compile(model) if cfg.compile else model
    steps_per_epoch = source.steps_per_epoch
    total_steps = steps_per_epoch * cfg.epochs
    warmup = steps_per_epoch * cfg.warmup_epochs
    base_lr = spec.lr(cfg)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and cfg.amp) else nullcontext()
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
    t_start, paused_s = time.monotonic(), 0.0
    step = start_epoch * steps_per_epoch
    last_loss, warned_collapse = math.nan, False
    reason: StopReason = "completed"

    def save(epochs_done: int) -> None:
        save_checkpoint(
            checkpoint_path,
            {
                **checkpoint_meta,
                "model_state": model.state_dict(),
                "backbone_state": model.backbone.state_dict(),
                "optimizer_state": optimizer.state_dict(),
                "epochs_done": epochs_done,
                "step": epochs_done * steps_per_epoch,
                "rng_state": torch.get_rng_state(),
                "last_loss": last_loss,
            },
        )

    epochs_done = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        # -- one epoch ------------------------------------------------------------------------------------------
        model.train()
        model.on_epoch_start(epoch, source)
        loss_sum = torch.zeros((), device=device)  # accumulate on device: no .item() sync per step
        n_in_interval, epoch_loss_sum, epoch_steps = 0, 0.0, 0
        t_interval = time.monotonic()
        source.wait_s = 0.0
        for rows, batch in source.epoch(epoch):
            # step
            lr = lr_at(step, total_steps, warmup, base_lr)
            for g in optimizer.param_groups:
                g["lr"] = lr
            views = make_views(batch)
            if cuda and cfg.channels_last:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            with autocast:
                out = forward(views, rows)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            model.after_step((step + 1) / max(1, total_steps))
            loss_sum += out.loss.detach()
            n_in_interval += 1
            step += 1
            epoch_steps += 1

            # report (per interval, not per step: .item() synchronises the GPU)
            if n_in_interval == cfg.log_every or epoch_steps == steps_per_epoch:
                now = time.monotonic()
                last_loss = float(loss_sum) / n_in_interval
                epoch_loss_sum += last_loss * n_in_interval
                dt = max(now - t_interval, 1e-9)
                ips = n_in_interval * source.batch_size / dt
                metrics = {"loss": last_loss, "lr": lr, "images_per_s": ips, "data_wait": min(1.0, source.wait_s / dt)}
                if out.features is not None and out.features.shape[0] > 1:
                    metrics.update(health_metrics(out.features))
                if cuda:
                    metrics["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                for name, value in metrics.items():
                    report(Metric(stage="pretrain", name=name, value=value, epoch=epoch + 1, step=step))
                eta = (total_steps - step) * dt / n_in_interval
                report(
                    Progress(
                        stage="pretrain",
                        step=step,
                        total=total_steps,
                        message=f"epoch {epoch + 1}/{cfg.epochs} loss {last_loss:.4f} ETA {_mmss(eta)}",
                    )
                )
                if not warned_collapse and metrics.get("emb_std", 1.0) < COLLAPSE_STD and epoch >= cfg.warmup_epochs:
                    warned_collapse = True
                    report(
                        Log(
                            level="WARNING",
                            message=(
                                f"possible representation collapse: embedding std {metrics['emb_std']:.3f} "
                                "(features are becoming identical; try a lower learning rate or another method)"
                            ),
                        )
                    )
                loss_sum.zero_()
                n_in_interval, t_interval, source.wait_s = 0, time.monotonic(), 0.0

            # cancel / pause / budget checks
            if cancel.is_paused():
                t_pause = time.monotonic()
                report(Log(level="INFO", message="paused"))
                wait_while_paused(cancel)
                paused_s += time.monotonic() - t_pause
                t_interval = time.monotonic()
                report(Log(level="INFO", message="resumed"))
            if cancel.is_cancelled():
                reason = "cancelled"
                break
            if time.monotonic() - t_start - paused_s > budget_s:
                reason = "time_budget"
                break
        if not math.isfinite(last_loss):
            raise FloatingPointError(f"loss became {last_loss} in epoch {epoch + 1}; lower the learning rate")
        # checkpoint: a finished epoch counts; an interrupted one restarts on resume
        if reason == "completed":
            epochs_done = epoch + 1
        save(epochs_done)
        if reason != "completed":
            break
        if epoch_steps:
            report(
                Metric(
                    stage="pretrain", name="epoch_loss", value=epoch_loss_sum / epoch_steps, epoch=epoch + 1, step=step
                )
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    return LoopResult(reason, epochs_done, step, last_loss, time.monotonic() - t_start - paused_s)


def _mmss(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"
