"""``InferenceModule``: uint8 images in; class probabilities, anomaly score, defect decision, anomaly map out.

The exact computation the ONNX file contains, and the PyTorch reference its parity check compares against. It is
built from the same functions that fitted the head (:mod:`sslinspect.fewshot.patchcore`), so the app and the line
score alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.fewshot.model import InspectionHead
from sslinspect.fewshot.patchcore import MAP_SIGMA, FeatureNet, defect_descriptor, gaussian_kernel, score_patches
from sslinspect.fewshot.segmap import SegmentationNet
from sslinspect.infer.feeds import KIND_MAP, SHARP_MAP
from sslinspect.model.segnet import SegDecoder

INPUT_NAMES = ("images", "threshold", "review_threshold")
OUTPUT_NAMES = ("probabilities", "anomaly_score", "is_defect", "anomaly_map", "decision")
#: The defect-aware model's extra output: its map before spreading, on its own calibrated scale (the predictor cuts
#: defect regions from it to name them; nothing decides on it).
SHARP_OUTPUT = SHARP_MAP
#: ...and its kind probabilities (the typing step pools them over a located defect; nothing decides on them).
KIND_OUTPUT = KIND_MAP


def output_names(head: InspectionHead) -> tuple[str, ...]:
    """The graph's outputs for ``head``: :data:`OUTPUT_NAMES`, then :data:`SHARP_OUTPUT` and :data:`KIND_OUTPUT`
    where the model has them."""
    a = head.anomaly
    return OUTPUT_NAMES + ((SHARP_OUTPUT,) if a.has_sharp else ()) + ((KIND_OUTPUT,) if a.has_kinds else ())


class InferenceModule(nn.Module):
    """``images: uint8 (N, S, S, 3)`` RGB, ``threshold: float32 (1,)``, ``review_threshold: float32 (1,)`` →

    - ``probabilities (N, C)``: softmax over the classes;
    - ``anomaly_score (N,)``: the image score (largest smoothed patch distance, or image k-NN distance);
    - ``is_defect (N,) bool``: NG;
    - ``anomaly_map (N, S, S)``: normalised against good images (0 typical good, 1 the calibrated threshold);
    - ``decision (N,) int64``: 0 OK, 1 review, 2 NG;
    - ``anomaly_map_sharp (N, S, S)`` (the defect-aware model fitted since 2026-12-05, sixth session): the map
      before spreading, normalised against good images on its own scale (1 its threshold on good images);
    - ``defect_kinds (N, K, S/4, S/4)`` (the defect-aware model pretrained and fitted since 2026-12-06, thirteenth
      session): per pixel, the probabilities of the synthetic shapes, then of the fills, the model was taught.
    """

    def __init__(self, backbone: nn.Module, head: InspectionHead, decoder: SegDecoder | None = None) -> None:
        """Bake ``head``'s classifier, memory bank and normalisation into the module as buffers.

        Raises:
            ValueError: for a ``segment`` head without its ``decoder``.
        """
        super().__init__()
        a = head.anomaly
        self.segment = a.kind == "segment"
        if self.segment and decoder is None:
            raise ValueError("a segment head needs the trained decoder of its pretraining run")
        self.net: nn.Module = (
            SegmentationNet(backbone, decoder, head.input_size, spread=bool(a.spread), sharp=a.has_sharp)
            if self.segment and decoder is not None
            else FeatureNet(backbone, head.image_size, head.tiles)
        )
        self.weight: torch.Tensor
        self.bias: torch.Tensor
        self.bank: torch.Tensor
        self.kernel: torch.Tensor
        self.register_buffer("weight", torch.from_numpy(head.classifier.weight.copy()))
        self.register_buffer("bias", torch.from_numpy(head.classifier.bias.copy()))
        self.register_buffer("bank", torch.from_numpy(a.bank.copy()))
        self.register_buffer("kernel", gaussian_kernel(MAP_SIGMA))
        self.patch = a.kind == "patch"
        self.k = min(a.k, a.bank.shape[0])
        self.defect_descriptor = head.descriptor == "defect"
        self.or_class = head.decision == "anomaly_or_class"
        self.good_index = head.good_index
        self.map_low = float(a.map_low)
        self.map_scale = float(max(a.map_high - a.map_low, 1e-6))
        self.sharp = a.has_sharp  # a segment head only
        self.sharp_low = float(a.sharp_low)
        self.sharp_scale = float(max(a.sharp_high - a.sharp_low, 1e-6))
        self.kinds = a.has_kinds
        if self.kinds and not (isinstance(self.net, SegmentationNet) and self.net.has_kinds):
            raise ValueError("the head was fitted with the decoder's kind head, which this decoder lacks")

    def forward(
        self, images: torch.Tensor, threshold: torch.Tensor, review_threshold: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Run preprocessing, backbone, anomaly model and classifier on a batch (outputs in
        :func:`output_names` order)."""
        kinds = None
        if self.kinds:
            assert isinstance(self.net, SegmentationNet)  # checked in __init__
            g, p, kinds = self.net.forward_kinds(images)
        else:
            g, p = self.net(images)
        sharp = None
        if self.sharp:  # p holds the spread and the sharp map
            p, sharp = p[:, 0], (p[:, 1] - self.sharp_low) / self.sharp_scale
        if self.segment:  # p is the raw defect map already
            raw = p
            anomaly_score = raw.amax((1, 2))
            x = g
        elif self.patch:
            raw, idx = score_patches(p, self.bank, self.kernel)
            anomaly_score = raw.amax((1, 2))
            x = defect_descriptor(g, p, raw, self.bank, idx) if self.defect_descriptor else g
        else:
            anomaly_score = 1.0 - (g @ self.bank.T).topk(self.k, dim=1).values.mean(1)
            raw = anomaly_score[:, None, None]
            x = g
        probabilities = torch.softmax(x @ self.weight.T + self.bias, dim=1)
        size = images.shape[1:3]
        anomaly_map = (raw - self.map_low) / self.map_scale
        if not self.segment:  # a segment map is at the input size already
            hw = (int(size[0]), int(size[1]))
            anomaly_map = F.interpolate(anomaly_map[:, None], size=hw, mode="bilinear", align_corners=False)[:, 0]
        is_defect = anomaly_score > threshold
        if self.or_class:
            is_defect = is_defect | (probabilities.argmax(1) != self.good_index)
        review = (anomaly_score > review_threshold).to(torch.int64)
        decision = torch.where(is_defect, torch.full_like(review, 2), review)
        outputs = (probabilities, anomaly_score, is_defect, anomaly_map, decision)
        return outputs + tuple(x for x in (sharp, kinds) if x is not None)
