"""``InferenceModule``: uint8 images in, class probabilities / anomaly score / defect decision out.

The exact computation the ONNX file contains, and the PyTorch reference its parity check compares against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.fewshot.model import InspectionHead
from sslinspect.preprocess import normalize_u8
from sslinspect.project import GOOD


class InferenceModule(nn.Module):
    """``images: uint8 (N, S, S, 3) RGB``, ``threshold: float32 (1,)`` →
    ``probabilities (N, C)``, ``anomaly_score (N,)``, ``is_defect (N,) bool``."""

    def __init__(self, backbone: nn.Module, head: InspectionHead) -> None:
        """Bake ``head``'s classifier weights and memory bank into the module as buffers."""
        super().__init__()
        self.backbone = backbone.eval()
        self.weight: torch.Tensor
        self.bias: torch.Tensor
        self.bank_t: torch.Tensor
        self.register_buffer("weight", torch.from_numpy(head.classifier.weight.copy()))
        self.register_buffer("bias", torch.from_numpy(head.classifier.bias.copy()))
        self.register_buffer("bank_t", torch.from_numpy(head.anomaly.bank.T.copy()))
        self.k = min(head.anomaly.k, head.anomaly.bank.shape[0])
        self.good_index = head.classes.index(GOOD) if GOOD in head.classes else -1

    def forward(self, images: torch.Tensor, threshold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run preprocessing, backbone, classifier and anomaly score on a batch."""
        f = F.normalize(self.backbone(normalize_u8(images)), dim=1)
        probabilities = torch.softmax(f @ self.weight.T + self.bias, dim=1)
        sims = f @ self.bank_t
        anomaly_score = 1.0 - sims.topk(self.k, dim=1).values.mean(1)
        is_defect = (probabilities.argmax(1) != self.good_index) | (anomaly_score > threshold)
        return probabilities, anomaly_score, is_defect
