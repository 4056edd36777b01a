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
        # position and fill live on the device: no GPU sync per step, and a Python int that changed every step
        # would make torch.compile recompile
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_len", torch.zeros((), dtype=torch.long))
        self._capacity = cfg.queue_size  # fixed for a run: half the images, set at the first epoch

    @torch.no_grad()
    def on_epoch_start(self, epoch: int, source: BatchSource) -> None:
        """Cap the queue at half the images; keep the stored position inside it (after a resume)."""
        self._capacity = min(self.queue.shape[0], len(source.images) // 2)
        self.queue_ptr.remainder_(max(1, self._capacity))
        self.queue_len.clamp_(max=self._capacity)

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Each view's query against the other view's key; then the keys of view 2 join the queue."""
        n = views[0].shape[0]
        x = torch.cat(views[:2])
        h = self.backbone(x)
        q = self.projection(h)
        with torch.no_grad():
            k = self.key_projection(self.key_backbone(x))
        queue = self.queue[: self._capacity]
        valid = torch.arange(queue.shape[0], device=queue.device) < self.queue_len  # filled entries: the first len
        loss = 0.5 * (
            self.criterion(q[:n], k[n:], self.gather, queue, valid)
            + self.criterion(q[n:], k[:n], self.gather, queue, valid)
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
        idx = (self.queue_ptr + torch.arange(b, device=keys.device)) % cap
        self.queue.index_copy_(0, idx, keys.to(self.queue.dtype))
        self.queue_ptr.copy_((self.queue_ptr + b) % cap)
        self.queue_len.copy_((self.queue_len + b).clamp(max=cap))

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """EMA-update the key encoder."""
        pairs = [(self.key_backbone, self.backbone), (self.key_projection, self.projection)]
        ema_step(pairs, self.base_momentum, progress)


SPEC = MethodSpec(name="mocov2", make_model=MoCoV2, optimizer="adamw", base_lr=2e-3)
