"""DINO: self-distillation with no labels; multi-crop student, momentum teacher, centring and sharpening.

- [0] DINO, 2021, https://arxiv.org/abs/2104.14294
"""

from __future__ import annotations

import torch
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.data.views import MultiCrop
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, ema_step, linear_warmup, mlp, momentum_copy
from sslinspect.methods.heads import CosinePrototypes
from sslinspect.methods.losses import DINOLoss

BOTTLENECK = 256
WARMUP_TEACHER_TEMP = 0.04
TEACHER_TEMP_WARMUP = 0.3  # share of training over which the teacher temperature rises (30 of 100 epochs in [0])


class DINO(SSLModel):
    """Student backbone + head (3-layer MLP → L2-normalised bottleneck → cosine prototypes); EMA teacher."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the head, the teacher and the loss from ``cfg``."""
        super().__init__(backbone)
        self.prototypes = CosinePrototypes(BOTTLENECK, cfg.num_prototypes)
        self.head = nn.Sequential(
            mlp(self.feature_dim, cfg.hidden_dim, BOTTLENECK, layers=3, bn=False), self.prototypes
        )
        self.teacher_backbone = momentum_copy(backbone)
        self.teacher_head = momentum_copy(self.head)
        self.base_momentum = cfg.ema_momentum
        self.final_teacher_temp = cfg.teacher_temp
        self.teacher_temp = WARMUP_TEACHER_TEMP
        self.criterion = DINOLoss(cfg.num_prototypes)

    def on_epoch_start(self, epoch: int, source: BatchSource) -> None:
        """Freeze the prototypes during the first epoch (stabilises the start, as in the paper)."""
        self.prototypes.frozen = epoch == 0

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Student on every crop, teacher on the two global crops."""
        n = views[0].shape[0]
        glob = torch.cat(views[:2])
        h = self.backbone(glob)
        student = list(self.head(h).split(n))
        if len(views) > 2:  # local crops have another size: one more backbone pass
            student += list(self.head(self.backbone(torch.cat(views[2:]))).split(n))
        with torch.no_grad():
            teacher = list(self.teacher_head(self.teacher_backbone(glob)).split(n))
        loss = self.criterion(student, teacher, self.teacher_temp, self.gather)
        return StepOutput(loss, h[:n].detach(), h[n : 2 * n].detach())

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """EMA-update the teacher; warm the teacher temperature up."""
        ema_step([(self.teacher_backbone, self.backbone), (self.teacher_head, self.head)], self.base_momentum, progress)
        self.teacher_temp = linear_warmup(WARMUP_TEACHER_TEMP, self.final_teacher_temp, progress, TEACHER_TEMP_WARMUP)


SPEC = MethodSpec(
    name="dino",
    make_model=DINO,
    make_views=lambda cfg: MultiCrop(cfg.augment, cfg.image_size, cfg.local_crops),
    optimizer="adamw",
    base_lr=1e-3,
    weight_decay=0.04,
)
