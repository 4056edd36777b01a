"""MoCo v2: a momentum key encoder and a queue of past keys as negatives, so small batches still see many negatives.

- [0] MoCo, 2019, https://arxiv.org/abs/1911.05722
- [1] MoCo v2, 2020, https://arxiv.org/abs/2003.04297
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, ema_step, mlp, momentum_copy
from sslinspect.methods.losses import MoCoLoss


class MoCoV2(SSLModel):
    """Query encoder (backbone + 2-layer MLP) against a momentum key encoder; symmetrised InfoNCE.

    Negatives are the other images' keys in the batch plus the queue. The queue is a ring buffer of past keys,
    used up to half the number of images so that an image's own key from the previous epoch is rarely a negative.
    """

    queue: torch.Tensor
    queue_ptr: torch.Tensor
    queue_len: torch.Tensor

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build heads, the key encoder and the queue from ``cfg``."""
        super().__init__(backbone)
        self.projection = mlp(self.feature_dim, cfg.hidden_dim, cfg.proj_dim)
        self.key_backbone = momentum_copy(backbone)
        self.key_projection = momentum_copy(self.projection)
        self.base_momentum = cfg.ema_momentum
        self.criterion = MoCoLoss(cfg.temperature)
        self.register_buffer("queue", torch.zeros(cfg.queue_size, cfg.proj_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_len", torch.zeros((), dtype=torch.long))
        self._capacity, self._ptr, self._len = cfg.queue_size, 0, 0  # host mirrors: no GPU sync per step

    def on_epoch_start(self, epoch: int, source: BatchSource) -> None:
        """Cap the queue at half the images; pick up the queue position (after a resume)."""
        self._capacity = min(self.queue.shape[0], len(source.images) // 2)
        self._ptr = int(self.queue_ptr) % max(1, self._capacity)
        self._len = min(int(self.queue_len), self._capacity)

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Each view's query against the other view's key; then the keys of view 2 join the queue."""
        n = views[0].shape[0]
        x = torch.cat(views[:2])
        h = self.backbone(x)
        q = self.projection(h)
        with torch.no_grad():
            k = self.key_projection(self.key_backbone(x))
        queue = self.queue[: self._len]
        loss = 0.5 * (
            self.criterion(q[:n], k[n:], self.gather, queue) + self.criterion(q[n:], k[:n], self.gather, queue)
        )
        if self.training:
            self._enqueue(k[n:])
        return StepOutput(loss, h[:n].detach(), h[n : 2 * n].detach())

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        cap = self._capacity
        if cap <= 0:
            return
        keys = F.normalize(self.gather(keys.float()), dim=1)[-cap:]
        b = keys.shape[0]
        idx = (self._ptr + torch.arange(b, device=keys.device)) % cap
        self.queue[idx] = keys.to(self.queue.dtype)
        self._ptr, self._len = (self._ptr + b) % cap, min(self._len + b, cap)
        self.queue_ptr.fill_(self._ptr)
        self.queue_len.fill_(self._len)

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """EMA-update the key encoder."""
        pairs = [(self.key_backbone, self.backbone), (self.key_projection, self.projection)]
        ema_step(pairs, self.base_momentum, progress)


SPEC = MethodSpec(name="mocov2", make_model=MoCoV2, optimizer="adamw", base_lr=2e-3)
