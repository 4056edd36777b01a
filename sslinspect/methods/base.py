"""The parts every method is made of: ``MethodSpec`` (a recipe) and ``SSLModel`` (backbone + heads + loss).

Gathering across processes (the contract between methods and the distributed training code):

- A model's ``gather`` attribute is a :class:`Gather`: ``gather(x)`` takes this process's ``(N, ...)`` tensor and
  returns every process's tensor concatenated in rank order, ``(world_size·N, ...)``; rows
  ``rank·N : (rank+1)·N`` are ``x`` itself with its autograd graph. Every process passes the same ``N``.
- Its backward must *sum* the gradients that all processes send to a slice into the process that owns it
  (``torch.distributed.nn.functional.all_gather`` does this). Batch-wide losses (NT-Xent, the MoCo losses, Barlow
  Twins) gather their inputs and compute the loss of the *whole* gathered batch on every process: each process then
  reports the global loss, and with DDP averaging the gradients, W processes of N images compute the loss and the
  gradients of one process on the global batch of W·N images. Per-image losses (BYOL, SimSiam, DINO, SwAV's
  predictions, MAE, the pretext tasks) need no gather: DDP's averaging of per-process means is the global mean.
- Statistics over the batch (DINO's centre, SwAV's Sinkhorn sums, MoCo v2's queue) are gathered under ``no_grad``.
  The default :data:`LOCAL` is the identity for one process. Distributed code sets ``model.gather`` before training.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.data.views import TwoViews

ViewFn = Callable[[torch.Tensor], list[torch.Tensor]]


class Gather(Protocol):
    """All-gather with gradients across processes (see the module docstring for the contract)."""

    @property
    def rank(self) -> int:
        """This process's index, 0 … ``world_size``-1."""
        ...

    @property
    def world_size(self) -> int:
        """Number of processes."""
        ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, ...)`` → ``(world_size·N, ...)``, rank order, own rows keep their graph."""
        ...


@dataclass(frozen=True, slots=True)
class LocalGather:
    """The single-process :class:`Gather`: the identity."""

    rank: int = 0
    world_size: int = 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` unchanged."""
        return x


LOCAL = LocalGather()


def full_precision(like: torch.Tensor) -> AbstractContextManager[object]:
    """Autocast switched off on ``like``'s device: losses and similarity logits run in fp32 inside it.

    ``x.float()`` alone does not leave autocast: the matmul that follows would run in bf16 again (a 0.5 % error in
    NT-Xent's logits). Inputs must still be cast with ``.float()`` inside.
    """
    return torch.autocast(like.device.type, enabled=False)


@dataclass(frozen=True, slots=True)
class StepOutput:
    """What one forward pass of a method returns: the loss, and detached backbone features of the batch's first
    view for the health signal (None if the method has none).

    ``features2`` (optional) holds the second view's features of the same images, in the same order: with it the
    health signal adds alignment and uniformity.
    """

    loss: torch.Tensor
    features: torch.Tensor | None = None
    features2: torch.Tensor | None = None


class SSLModel(nn.Module):
    """A backbone plus whatever a method trains around it. Subclasses implement :meth:`forward`.

    Attributes:
        gather: How batch-wide negatives/statistics are collected across processes (default: one process).
    """

    def __init__(self, backbone: nn.Module) -> None:
        """Wrap ``backbone`` (exposes ``feature_dim``)."""
        super().__init__()
        self.backbone = backbone
        self.feature_dim = int(backbone.feature_dim)  # type: ignore[arg-type]
        self.gather: Gather = LOCAL

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Loss for a list of views of one batch; ``rows`` are the images' cache rows (per-image state)."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, source: BatchSource) -> None:
        """Called before each epoch with the batch source (its ``images`` is the whole uint8 cache).

        DeepCluster-style methods re-cluster here; most methods do nothing.
        """

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """Called after each optimiser step with training progress in [0, 1] (momentum updates)."""


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """A method's recipe: how to build its model and views, and its optimiser defaults.

    ``base_lr`` is for a batch of 256 and is scaled linearly with the batch size.
    """

    name: str
    make_model: Callable[[nn.Module, PretrainConfig], SSLModel]
    make_views: Callable[[PretrainConfig], ViewFn] = field(default=lambda cfg: TwoViews(cfg.augment, cfg.image_size))
    optimizer: str = "adamw"
    base_lr: float = 2e-3
    weight_decay: float | None = None
    sync_batchnorm: bool = True  # under DDP: global-batch BatchNorm statistics (off for MoCo v2's shuffled BN)
    #: The method teaches its images as normal (it paints synthetic defects on them): images a person labelled as a
    #: defect are left out of its training.
    normal_only: bool = False

    def lr(self, cfg: PretrainConfig) -> float:
        """The configured learning rate, or this method's default for the batch size."""
        return cfg.lr if cfg.lr > 0 else self.base_lr * cfg.batch_size / 256


def mlp(
    in_dim: int, hidden: int, out: int, *, layers: int = 2, last_bn: bool = False, bn: bool = True
) -> nn.Sequential:
    """Projection/prediction MLP: ``(Linear → [BN] → ReLU) × (layers-1) → Linear [→ BN]``."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden, bias=not bn), *([nn.BatchNorm1d(hidden)] if bn else []), nn.ReLU(inplace=True)]
        d = hidden
    mods.append(nn.Linear(d, out, bias=not last_bn))
    if last_bn:
        mods.append(nn.BatchNorm1d(out, affine=False))
    return nn.Sequential(*mods)


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to be updated by :func:`ema_update` (BYOL/MoCo/DINO targets)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, m: float) -> None:
    """``target ← m·target + (1−m)·online`` for parameters; buffers are copied.

    One multi-tensor kernel per operation (``torch._foreach_*``) instead of one per tensor: for ResNet-50 that
    is a handful of launches per step instead of ~500.
    """
    tp: list[torch.Tensor] = list(target.parameters())
    op = [p.detach() for p in online.parameters()]
    if len(tp) != len(op):
        raise ValueError(f"EMA target has {len(tp)} parameters, online network {len(op)}")
    if tp:
        torch._foreach_lerp_(tp, op, 1 - m)  # t + (1-m)(o - t) = m·t + (1-m)·o
    tb, ob = list(target.buffers()), list(online.buffers())
    if len(tb) != len(ob):
        raise ValueError(f"EMA target has {len(tb)} buffers, online network {len(ob)}")
    if tb:
        torch._foreach_copy_(tb, ob)


def cosine_momentum(base: float, progress: float) -> float:
    """BYOL's schedule: momentum rises from ``base`` to 1 along a cosine."""
    return 1 - (1 - base) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2


@torch.no_grad()
def ema_step(pairs: list[tuple[nn.Module, nn.Module]], base: float, progress: float) -> None:
    """EMA-update each ``(target, online)`` pair with :func:`cosine_momentum` at ``progress``."""
    m = cosine_momentum(base, progress)
    for target, online in pairs:
        ema_update(target, online, m)


def linear_warmup(start: float, end: float, progress: float, warmup: float) -> float:
    """``start`` → ``end`` linearly over the first ``warmup`` share of training, then ``end``."""
    if warmup <= 0:
        return end
    return start + (end - start) * min(max(progress, 0.0) / warmup, 1.0)
