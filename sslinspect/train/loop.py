"""The one training loop: setup → for each epoch → for each batch → step → report → cancel check → checkpoint.

Readable top to bottom on purpose. AMP (bf16 on CUDA; fp16 with loss scaling where bf16 is not native),
channels_last, gradient clipping and torch.compile are explicit options of :class:`~sslinspect.config.PretrainConfig`.
Nothing in the per-step path waits for the GPU: metrics are read back once per report interval. A GPU out-of-memory
error halves the batch and restarts the epoch. Under DDP (``dist``) every rank runs this loop; stop decisions are
agreed by all ranks and only rank 0 saves and reports.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from sslinspect.cancel import CancelToken, wait_while_paused
from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.errors import CheckpointError, ResourceError
from sslinspect.events import Log, Metric, Progress, Reporter, null_reporter
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, ViewFn
from sslinspect.model.checkpoint import load_checkpoint, save_checkpoint
from sslinspect.train.distributed import (
    SINGLE,
    DistInfo,
    agree,
    average_batchnorm_stats,
    max_over_ranks,
    mean_over_ranks,
    wrap_model,
)
from sslinspect.train.eta import describe, time_left
from sslinspect.train.health import COLLAPSE_STD, collapse_message, health_metrics

StopReason = Literal["completed", "cancelled", "time_budget"]
MIN_BATCH = 4  # below this, contrastive batches are meaningless: stop with advice instead of halving again


@dataclass(frozen=True, slots=True)
class LoopResult:
    """How the loop ended; ``batch_size`` is the global batch it ended with (smaller after an OOM back-off)."""

    reason: StopReason
    epochs_done: int
    steps_done: int
    last_loss: float
    seconds: float
    batch_size: int = 0


def lr_at(step: int, total: int, warmup: int, base: float, time_progress: float = 0.0) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to 0 at ``total`` or at the end of the time budget.

    ``time_progress`` is the share of the time budget used (0 without a budget): the decay follows whichever of the
    steps and the budget is further along, so a run that the budget ends still anneals to a low learning rate
    instead of stopping at its peak (a 5-minute budget on a 50-epoch schedule would otherwise never decay).

    Examples:
        >>> lr_at(50, 100, 0, 1.0)
        0.5
        >>> round(lr_at(10, 100, 0, 1.0, time_progress=0.5), 3)
        0.5
        >>> lr_at(10, 100, 0, 1.0, time_progress=1.0)
        0.0
    """
    if step < warmup:
        return base * (step + 1) / warmup
    progress = max((step - warmup) / max(1, total - warmup), time_progress)
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


def train_step(
    forward: Callable[..., StepOutput],
    model: SSLModel,
    optimizer: torch.optim.Optimizer,
    views: list[torch.Tensor],
    rows: torch.Tensor | None,
    *,
    autocast: AbstractContextManager[Any],
    grad_clip: float,
    progress: float,
    scaler: torch.amp.GradScaler | None = None,
) -> StepOutput:
    """One optimisation step (forward, backward, clip, update, momentum update).

    Never synchronises with the GPU, except through ``scaler`` (fp16 loss scaling checks for overflow once per
    step; bf16 needs no scaler).
    """
    with autocast:
        out = forward(views, rows)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(out.loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        out.loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
    model.after_step(progress)
    return out


def amp_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the hardware has it (Ampere and later, CPUs); fp16 (with loss scaling) on older GPUs (Turing)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.float16
    return torch.bfloat16


def autocast_for(device: torch.device, amp: bool, *, force: bool = False) -> AbstractContextManager[Any]:
    """Mixed-precision autocast on CUDA when ``amp`` (:func:`amp_dtype`); nothing on CPU, where bf16 matmuls are
    slow on most CPUs, unless ``force`` (tests run the CUDA recipe on the CPU with it)."""
    if amp and (device.type == "cuda" or force):
        return torch.autocast(device.type, dtype=amp_dtype(device))
    return nullcontext()


def grad_scaler_for(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """A loss scaler, enabled only for fp16 autocast (see :func:`amp_dtype`); a disabled one is a no-op."""
    enabled = amp and device.type == "cuda" and amp_dtype(device) == torch.float16
    return torch.amp.GradScaler(device.type, enabled=enabled)


def to_channels_last(view: torch.Tensor) -> torch.Tensor:
    """NHWC memory layout for an image batch ``(N, 3, H, W)`` or a batch of tile stacks ``(N, T, 3, H, W)`` (jigsaw,
    relative position), whose tiles the backbone sees as ``(N·T, 3, H, W)``; other tensors are returned as they are.
    """
    if view.dim() == 4:
        return view.contiguous(memory_format=torch.channels_last)
    if view.dim() == 5:
        n, t = view.shape[:2]
        return view.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (n, t))
    return view


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
    dist: DistInfo = SINGLE,
    cuda_flags: bool | None = None,
) -> LoopResult:
    """Train ``model`` for ``cfg.epochs`` epochs (or until cancelled or out of time) and checkpoint every epoch.

    ``resume`` is a loaded checkpoint: model, optimiser and position are restored and the interrupted epoch
    restarts from its beginning (at most one epoch of work is lost).

    ``cuda_flags`` applies the CUDA-only options (``channels_last``, mixed precision) whatever the device (None: on
    CUDA only); the tests use it to run the GPU recipe on the CPU.

    Raises:
        ResourceError: when the GPU runs out of memory even at a small batch (or at all, under DDP).
        FloatingPointError: when the loss becomes NaN or infinite.
    """
    args = (model, make_views, source, spec, cfg, device, checkpoint_path, checkpoint_meta, resume, report, cancel)
    flags = device.type == "cuda" if cuda_flags is None else cuda_flags
    return _Loop(*args, on_epoch_end, dist, flags).run()


class _Loop:
    """The state of one run of :func:`train_loop`, split into setup, epochs, reports and OOM back-off."""

    def __init__(
        self,
        model: SSLModel,
        make_views: ViewFn,
        source: BatchSource,
        spec: MethodSpec,
        cfg: PretrainConfig,
        device: torch.device,
        checkpoint_path: Path,
        checkpoint_meta: dict[str, Any],
        resume: dict[str, Any] | None,
        report: Reporter,
        cancel: CancelToken,
        on_epoch_end: Callable[[int], None] | None,
        dist: DistInfo,
        cuda_flags: bool,
    ) -> None:
        # -- setup: device, memory format, DDP wrapping, optimiser, resume position --------------------------------
        self.model, self.make_views, self.source, self.spec = model, make_views, source, spec
        self.device, self.dist, self.cancel = device, dist, cancel
        self.cuda = device.type == "cuda"
        self.channels_last = cuda_flags and cfg.channels_last
        self.report = report if dist.is_main else null_reporter  # only rank 0 reports and writes
        self.on_epoch_end = on_epoch_end if dist.is_main else None
        self.checkpoint_path = checkpoint_path
        self.meta = dict(checkpoint_meta)
        model.to(device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(spec, model, cfg)
        self.start_epoch = 0
        if resume is not None:
            self._resume(resume)
        self.net = wrap_model(model, device, dist, sync_batchnorm=spec.sync_batchnorm)
        # An OOM in the first epoch restarts from here; later epochs restart from the last checkpoint.
        self.initial = resume or {
            "model_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "optimizer_state": copy.deepcopy(self.optimizer.state_dict()),
        }
        if dist.enabled:  # every rank augments differently; same seed → the same run again
            torch.manual_seed(cfg.seed + 1000 * dist.rank + self.start_epoch)
        self.forward: Callable[..., StepOutput] = torch.compile(self.net) if cfg.compile else self.net
        self.autocast = autocast_for(device, cfg.amp, force=cuda_flags)
        self.scaler = grad_scaler_for(device, cfg.amp)
        self.budget_s = cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
        self.t_start, self.paused_s = time.monotonic(), 0.0
        # share of the schedule a time budget has used; a resumed run anneals the rest within its own budget
        self.progress0 = float(resume.get("time_progress", 0.0)) if resume is not None else 0.0
        self.time_progress = self.progress0 if math.isfinite(self.budget_s) else 0.0
        self.last_loss, self.warned_collapse = math.nan, False
        self._set_schedule(cfg)
        self.step = self.start_epoch * self.steps_per_epoch

    def _resume(self, resume: dict[str, Any]) -> None:
        """Restore model, optimiser, position and RNG from a checkpoint.

        Raises:
            CheckpointError: if the checkpoint does not fit this model and optimiser (only here: an error later in
                training, CUDA's or NCCL's included, keeps its own message).
        """
        try:
            self.model.load_state_dict(resume["model_state"])
            self.optimizer.load_state_dict(resume["optimizer_state"])
            self.start_epoch = int(resume["epochs_done"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise CheckpointError(f"{self.checkpoint_path}: cannot resume ({first})") from exc
        self._restore_rng(resume)

    def _set_schedule(self, cfg: PretrainConfig) -> None:
        self.cfg = cfg
        self.steps_per_epoch = self.source.steps_per_epoch
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.warmup = self.steps_per_epoch * cfg.warmup_epochs
        self.base_lr = self.spec.lr(cfg)

    # -- for each epoch ---------------------------------------------------------------------------------------------
    def run(self) -> LoopResult:
        epoch, epochs_done = self.start_epoch, self.start_epoch
        reason: StopReason = "completed"
        while epoch < self.cfg.epochs:
            try:
                reason, whole = self._epoch(epoch)
                oom = False
            except torch.OutOfMemoryError:
                oom = True
            if oom:  # handled outside `except`: its traceback pins the failed step's tensors
                self._back_off(epoch)
                continue
            if not math.isfinite(self.last_loss):
                raise FloatingPointError(_nan_message(self.last_loss, epoch))
            if whole:  # a finished epoch counts; an interrupted one restarts on resume
                epochs_done = epoch + 1
            average_batchnorm_stats(self.model)  # replicas and the checkpoint agree (no-op for one process)
            self._save(epochs_done)
            if reason != "completed":
                break
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch + 1)
            epoch += 1
        seconds = time.monotonic() - self.t_start - self.paused_s
        return LoopResult(reason, epochs_done, self.step, self.last_loss, seconds, self.source.global_batch_size)

    # -- for each batch: step → report → cancel check ---------------------------------------------------------------
    def _epoch(self, epoch: int) -> tuple[StopReason, bool]:
        """Train one epoch; returns the stop reason and whether every step of the epoch ran."""
        self.model.train()
        self.model.on_epoch_start(epoch, self.source)
        self.step = epoch * self.steps_per_epoch
        self.loss_sum = torch.zeros((), device=self.device)  # accumulated on the device: no sync per step
        self.epoch_loss, n, done = 0.0, 0, 0
        self.t_interval = time.monotonic()
        self.source.wait_s = 0.0
        for rows, batch in self.source.epoch(epoch):
            lr = lr_at(self.step, self.total_steps, self.warmup, self.base_lr, self.time_progress)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            views = self.make_views(batch)
            if self.channels_last:
                views = [to_channels_last(v) for v in views]
            progress = max((self.step + 1) / max(1, self.total_steps), self.time_progress)
            out = train_step(
                self.forward,
                self.model,
                self.optimizer,
                views,
                rows,
                autocast=self.autocast,
                grad_clip=self.cfg.grad_clip,
                progress=progress,
                scaler=self.scaler,
            )
            self.loss_sum += out.loss.detach()
            n, done, self.step = n + 1, done + 1, self.step + 1
            at_report = n == self.cfg.log_every or done == self.steps_per_epoch
            if at_report:  # per interval, not per step: reading values back synchronises the GPU
                self._report(epoch, out, n, lr, final=done == self.steps_per_epoch)
                n = 0
            if at_report or not self.dist.enabled:  # ranks agree on stopping only at reports (one tiny collective)
                stop = self._check_stop()
                if stop != "completed":
                    if n:  # report the partial interval: the checkpoint's loss is then known
                        self._report(epoch, out, n, lr, final=False)
                    return stop, done == self.steps_per_epoch
        return "completed", True

    def _report(self, epoch: int, out: StepOutput, n: int, lr: float, *, final: bool) -> None:
        self.last_loss = float(mean_over_ranks(self.loss_sum)) / n  # synchronises first, so the timing is right
        if not math.isfinite(self.last_loss):  # before the health metrics, which cannot take NaN features
            raise FloatingPointError(_nan_message(self.last_loss, epoch))
        now = time.monotonic()
        dt = max(now - self.t_interval, 1e-9)
        self.epoch_loss += self.last_loss * n
        budget_left = self.budget_s - (now - self.t_start - self.paused_s)
        left = time_left(self.step, self.total_steps, dt / n, budget_left)  # epochs or budget, whichever ends first
        metrics = {
            "loss": self.last_loss,
            "lr": lr,
            "images_per_s": n * self.source.global_batch_size / dt,
            "data_wait": min(1.0, self.source.wait_s / dt),
            "eta_s": left.seconds,
        }
        if self.dist.is_main and out.features is not None and out.features.shape[0] > 1:
            metrics.update(health_metrics(out.features, out.features2))
        if self.cuda:
            metrics["gpu_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if final:
            metrics["epoch_loss"] = self.epoch_loss / self.steps_per_epoch
        for name, value in metrics.items():
            self.report(Metric(stage="pretrain", name=name, value=value, epoch=epoch + 1, step=self.step))
        self.report(
            Progress(
                stage="pretrain",
                step=self.step,
                total=left.end_step,
                message=f"epoch {epoch + 1}/{self.cfg.epochs} loss {self.last_loss:.4f} "
                + describe(left, epochs=self.cfg.epochs, max_minutes=self.cfg.max_minutes),
            )
        )
        emb_std = metrics.get("emb_std", 1.0)
        if not self.warned_collapse and emb_std < COLLAPSE_STD and epoch >= self.cfg.warmup_epochs:
            self.warned_collapse = True
            self.report(Log(level="WARNING", message=collapse_message(emb_std)))
        self.loss_sum.zero_()
        self.source.wait_s = 0.0
        self.t_interval = time.monotonic()

    def _check_stop(self) -> StopReason:
        elapsed = time.monotonic() - self.t_start - self.paused_s
        # one collective: the flags, and the slowest rank's clock, so every rank steps with the same learning rate
        paused_f, cancelled_f, elapsed = max_over_ranks(
            [float(self.cancel.is_paused()), float(self.cancel.is_cancelled()), elapsed], self.device
        )
        paused, cancelled, over_budget = paused_f > 0, cancelled_f > 0, elapsed > self.budget_s
        if math.isfinite(self.budget_s):
            self.time_progress = min(1.0, self.progress0 + (1 - self.progress0) * elapsed / self.budget_s)
        if paused and not cancelled:
            t_pause = time.monotonic()
            self.report(Log(level="INFO", message="paused"))
            wait_while_paused(self.cancel)
            cancelled = agree([self.cancel.is_cancelled()], self.device)[0]
            self.paused_s += time.monotonic() - t_pause
            self.t_interval = time.monotonic()
            self.report(Log(level="INFO", message="resumed"))
        return "cancelled" if cancelled else "time_budget" if over_budget else "completed"

    # -- checkpoint ---------------------------------------------------------------------------------------------------
    def _save(self, epochs_done: int) -> None:
        if not self.dist.is_main:
            return
        state = {
            **self.meta,
            "model_state": self.model.state_dict(),
            "backbone_state": self.model.backbone.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "epochs_done": epochs_done,
            "step": epochs_done * self.steps_per_epoch,
            "rng_state": torch.get_rng_state(),
            "last_loss": self.last_loss,
            "time_progress": self.time_progress,
        }
        if self.cuda:
            state["cuda_rng_state"] = torch.cuda.get_rng_state(self.device)
        self.checkpoint_path.parent.mkdir(exist_ok=True)  # not parents: never re-create a run folder moved away
        save_checkpoint(self.checkpoint_path, state)

    def _restore_rng(self, state: dict[str, Any]) -> None:
        if "rng_state" in state:
            torch.set_rng_state(state["rng_state"])
        if self.cuda and "cuda_rng_state" in state:
            torch.cuda.set_rng_state(state["cuda_rng_state"], self.device)

    # -- GPU out of memory: free the cache's GPU memory, else halve the batch, and restart the epoch ------------------
    def _back_off(self, epoch: int) -> None:
        old = self.source.global_batch_size
        where = f"{self.cfg.image_size}px, {self.cfg.backbone}"
        # first give the image cache's GPU memory to the training step (one process: ranks must stay in step)
        if not self.dist.enabled and self.source.release_device_cache():
            if self.cuda:
                torch.cuda.empty_cache()
            msg = (
                f"GPU out of memory at batch size {old} ({where}); image cache moved out of GPU memory "
                f"({self.source.tier}), retrying epoch {epoch + 1}"
            )
            self.report(Log(level="WARNING", message=msg))
            self._restart(epoch)
            return
        if self.cuda:
            torch.cuda.empty_cache()
        if self.dist.enabled or old // 2 < MIN_BATCH:
            raise ResourceError(
                f"GPU out of memory at batch size {old} ({where}): choose a smaller --image-size or backbone, "
                + ("or fewer processes per GPU" if self.dist.enabled else "or run on --device cpu")
            )
        self.source.set_batch_size(old // 2)
        new = self.source.global_batch_size
        msg = f"GPU out of memory at batch size {old} ({where}); retrying epoch {epoch + 1} with batch size {new}"
        self.report(Log(level="WARNING", message=msg))
        self._set_schedule(dataclasses.replace(self.cfg, batch_size=new))
        if isinstance(self.meta.get("config"), dict):  # a resumed run keeps the batch that fits
            self.meta["config"] = {**self.meta["config"], "batch_size": new}
        self._restart(epoch)

    def _restart(self, epoch: int) -> None:
        """Back to the state before ``epoch`` (the last checkpoint, or the start)."""
        state = load_checkpoint(self.checkpoint_path) if epoch > self.start_epoch else self.initial
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        self._restore_rng(state)


def _nan_message(loss: float, epoch: int) -> str:
    return f"loss became {loss} in epoch {epoch + 1}; lower the learning rate"
