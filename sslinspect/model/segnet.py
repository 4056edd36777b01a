"""The segmentation decoder of the defect-aware model: a light feature-pyramid decoder on a backbone's maps.

The architecture lives in the model layer because two storeys use it: the ``synthdefect`` method trains it
(:mod:`sslinspect.methods.synthdefect`) and the inspection head runs it as the anomaly map
(:mod:`sslinspect.fewshot.segmap`). It is fully convolutional, so a network trained on crops runs on the whole
native frame.

- [0] Lin et al., Feature Pyramid Networks, 2017, https://arxiv.org/abs/1612.03144
- [1] Zavrtanik et al., DRAEM, 2021, https://arxiv.org/abs/2108.07610 (the discriminative sub-network)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Channels of every pyramid level inside the decoder.
DECODER_CHANNELS = 48
#: Finest pyramid stride the decoder uses (2: the stem's output; thin scratches keep their pixels).
FINEST_STRIDE = 2


def feature_pyramid(backbone: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Intermediate maps of ``backbone`` on ``x``, finest first: the last output at each stride from 2 to 32.

    Works with our torchvision ResNets (``backbone.net.layer1`` …) and with ``features``-trunk CNNs (MobileNet,
    EfficientNet, the tiny CNN).

    Raises:
        ValueError: for a backbone without convolutional maps (a ViT).
    """
    net = getattr(backbone, "net", None)
    if net is not None and hasattr(net, "layer1"):
        s2 = net.relu(net.bn1(net.conv1(x)))
        s4 = net.layer1(net.maxpool(s2))
        s8 = net.layer2(s4)
        s16 = net.layer3(s8)
        return [s2, s4, s8, s16, net.layer4(s16)]
    trunk = getattr(backbone, "features", None)
    if not isinstance(trunk, nn.Sequential):
        raise ValueError("the defect-aware model needs a convolutional backbone (ResNet, MobileNet, EfficientNet)")
    side, by_stride = x.shape[-1], {}
    for layer in trunk:
        x = layer(x)
        by_stride[side // x.shape[-1]] = x
    return [by_stride[s] for s in sorted(by_stride) if s >= FINEST_STRIDE]


def pyramid_channels(backbone: nn.Module, size: int = 64) -> list[int]:
    """Channel count of each map :func:`feature_pyramid` returns (probed on a small zero image)."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        maps = feature_pyramid(backbone, torch.zeros(1, 3, size, size))
    backbone.train(was_training)
    return [int(m.shape[1]) for m in maps]


def _conv_bn(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SegDecoder(nn.Module):
    """Feature-pyramid decoder, light where the maps are large: 1×1 laterals to a common width, top-down
    upsample-and-add with a 3×3 block on the coarse levels (stride ≥ 8), a 3×3 head at the second-finest level
    (stride 4), and a 1×1 detail term from the finest map (stride 2) added to the upsampled logit, so thin
    structures keep their pixels without 3×3 convolutions at half resolution.

    Examples:
        >>> dec = SegDecoder([64, 64, 128, 256, 512])
        >>> maps = [torch.zeros(2, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate([64, 64, 128, 256, 512])]
        >>> tuple(dec(maps, (128, 128)).shape)
        (2, 1, 128, 128)
    """

    def __init__(self, channels: list[int], width: int = DECODER_CHANNELS, kinds: int = 0) -> None:
        """Build laterals for maps with ``channels`` (finest first; at least two maps); ``kinds`` > 0 adds a head
        that tells that many kinds of defect apart at stride 4 (:meth:`forward_kinds`)."""
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"the decoder needs at least two pyramid levels, got {len(channels)}")
        self.channels = list(channels)
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels[1:])
        self.smooth = nn.ModuleList(_conv_bn(width, width) for _ in channels[2:])
        self.head = nn.Sequential(_conv_bn(width, width // 2), nn.Conv2d(width // 2, 1, 1))
        self.detail = nn.Conv2d(channels[0], 1, 1)
        self.kinds = int(kinds)
        self.kind = (
            nn.Sequential(_conv_bn(width, width), _conv_bn(width, width, 2), nn.Conv2d(width, kinds, 1))
            if kinds
            else None
        )

    def forward(self, maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Logits ``(N, 1, H, W)`` at ``size`` from the pyramid ``maps`` (finest first)."""
        return self._logit(maps, self._top_down(maps), size)

    def forward_kinds(self, maps: list[torch.Tensor], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Defect logits ``(N, 1, H, W)`` at ``size`` and kind logits ``(N, kinds, H/4, W/4)`` (stride 4). The kind
        head reads the decoder's features detached: what it learns never changes the defect map.

        Raises:
            ValueError: for a decoder built without a kind head.
        """
        if self.kind is None:
            raise ValueError("this decoder has no kind head")
        y = self._top_down(maps)
        return self._logit(maps, y, size), self.kind(y.detach())

    def _top_down(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """The stride-4 decoder features (``width`` channels)."""
        coarse = maps[1:]
        y = self.smooth[-1](self.lateral[-1](coarse[-1])) if self.smooth else self.lateral[-1](coarse[-1])
        for i in range(len(coarse) - 2, -1, -1):
            up = F.interpolate(y, size=coarse[i].shape[-2:], mode="bilinear", align_corners=False)
            y = self.lateral[i](coarse[i]) + up
            if i >= 1:  # 3×3 smoothing on the coarse levels only: cheap there, costly at stride 4
                y = self.smooth[i - 1](y)
        return y

    def _logit(self, maps: list[torch.Tensor], y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        logit = F.interpolate(self.head(y), size=maps[0].shape[-2:], mode="bilinear", align_corners=False)
        logit = logit + self.detail(maps[0])
        return F.interpolate(logit, size=size, mode="bilinear", align_corners=False)


def decoder_state(model_state: dict[str, torch.Tensor], prefix: str = "decoder.") -> dict[str, torch.Tensor]:
    """The decoder's tensors out of a whole-model state dict (a checkpoint's ``model_state``)."""
    return {k[len(prefix) :]: v for k, v in model_state.items() if k.startswith(prefix)}
