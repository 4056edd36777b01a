"""The parts every method is made of: ``MethodSpec`` (a recipe) and ``SSLModel`` (backbone + heads + loss)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.data.views import TwoViews

ViewFn = Callable[[torch.Tensor], list[torch.Tensor]]


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
    """A backbone plus whatever a method trains around it. Subclasses implement :meth:`forward`."""

    def __init__(self, backbone: nn.Module) -> None:
        """Wrap ``backbone`` (exposes ``feature_dim``)."""
        super().__init__()
        self.backbone = backbone
        self.feature_dim = int(backbone.feature_dim)  # type: ignore[arg-type]

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

    def lr(self, cfg: PretrainConfig) -> float:
        """The configured learning rate, or this method's default for the batch size."""
        return cfg.lr if cfg.lr > 0 else self.base_lr * cfg.batch_size / 256


def mlp(in_dim: int, hidden: int, out: int, *, layers: int = 2, last_bn: bool = False) -> nn.Sequential:
    """Projection/prediction MLP: ``(Linear → BN → ReLU) × (layers-1) → Linear [→ BN]``."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
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
    """``target ← m·target + (1−m)·online`` for parameters; buffers are copied."""
    for pt, po in zip(target.parameters(), online.parameters(), strict=True):
        pt.mul_(m).add_(po.detach(), alpha=1 - m)
    for bt, bo in zip(target.buffers(), online.buffers(), strict=True):
        bt.copy_(bo)


def cosine_momentum(base: float, progress: float) -> float:
    """BYOL's schedule: momentum rises from ``base`` to 1 along a cosine."""
    return 1 - (1 - base) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2
