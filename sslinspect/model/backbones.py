"""Backbone factories: torchvision definitions built with ``weights=None`` (nothing is ever downloaded).

Every backbone maps a normalised float batch ``(B, 3, S, S)`` to features ``(B, D)`` with ``D`` known up front
(``module.feature_dim``), following timm's contract. CNN backbones also expose ``feature_maps(x)``: intermediate
maps (stride 8 and 16) for patch-level anomaly models. The names live in the torch-free :mod:`sslinspect.catalog`.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torchvision.models as tvm
from torch import nn

from sslinspect.catalog import BACKBONES
from sslinspect.errors import ConfigError


class FeatureMaps(Protocol):
    """A backbone that exposes intermediate maps (our CNNs and ViTs; an imported plain module may not)."""

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]: ...


class _ResNet(nn.Module):
    """torchvision's ResNet without its classifier; ``feature_maps`` gives the stride-8 and stride-16 maps."""

    def __init__(self, net: tvm.ResNet, feature_dim: int) -> None:
        super().__init__()
        self.net = net
        self.net.fc = nn.Identity()
        self.feature_dim = feature_dim

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer1(x)
        f2 = n.layer2(x)
        f3 = n.layer3(f2)
        return [f2, f3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Pooled(nn.Module):
    """A torchvision ``features`` trunk + global average pooling."""

    def __init__(self, features: nn.Sequential, feature_dim: int) -> None:
        super().__init__()
        self.features = features
        self.feature_dim = feature_dim

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        s0, by_stride = x.shape[-1], {}
        for layer in self.features:
            x = layer(x)
            by_stride[s0 // x.shape[-1]] = x  # the last output at each stride
        return [by_stride[s] for s in (8, 16) if s in by_stride] or [x]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


class _ViT(nn.Module):
    """torchvision's ViT; the feature is the mean of the encoder's patch tokens (global average pooling, which
    MAE's recipe needs: its loss never reaches the class token, whose spread stays near zero). Other input
    sizes (multiples of 16, e.g. DINO's local crops) get bicubically resized position embeddings. MAE uses
    :meth:`patch_tokens` and :meth:`encode` to run the encoder on the visible patches only."""

    def __init__(self, net: tvm.VisionTransformer, feature_dim: int) -> None:
        super().__init__()
        self.net = net
        self.net.heads = nn.Identity()
        self.feature_dim = feature_dim
        self.patch_size = net.patch_size

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings plus position embeddings ``(N, L, D)``."""
        h, w = x.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"ViT input must be a multiple of {p} px, got {h}×{w}")
        tokens = self.net.conv_proj(x).flatten(2).transpose(1, 2)
        pos = self.net.encoder.pos_embedding[:, 1:]
        g = self.net.image_size // p
        if (h // p, w // p) != (g, g):
            grid = pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
            grid = nn.functional.interpolate(grid, size=(h // p, w // p), mode="bicubic", align_corners=False)
            pos = grid.flatten(2).transpose(1, 2)
        return tokens + pos

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prepend the class token and run the encoder: ``(N, L, D)`` → ``(N, 1+L, D)``."""
        enc = self.net.encoder
        cls = self.net.class_token.expand(tokens.shape[0], -1, -1) + enc.pos_embedding[:, :1]
        return enc.ln(enc.layers(enc.dropout(torch.cat([cls, tokens], dim=1))))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The patch tokens as one stride-16 map ``(N, D, H/16, W/16)``."""
        out = self.encode(self.patch_tokens(x))[:, 1:]
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        return [out.transpose(1, 2).reshape(x.shape[0], -1, h, w)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(self.patch_tokens(x))[:, 1:].mean(1)


def build_backbone(name: str, image_size: int = 224) -> nn.Module:
    """Build backbone ``name`` from scratch.

    Raises:
        KeyError: for an unknown name (configs validate names first).
        ConfigError: for a ViT and an image size that is not a multiple of 16.
    """
    info = BACKBONES[name]
    if name.startswith("resnet"):
        return _ResNet(getattr(tvm, name)(weights=None), info.feature_dim)
    if name == "mobilenet_v3_large":
        return _Pooled(tvm.mobilenet_v3_large(weights=None).features, info.feature_dim)
    if name == "efficientnet_b0":
        return _Pooled(tvm.efficientnet_b0(weights=None).features, info.feature_dim)
    if info.family == "vit":
        if image_size % 16:
            raise ConfigError(f"pretrain.image_size must be a multiple of 16 for {name}; got {image_size}")
        heads, dim = (3, 192) if name == "vit_tiny" else (6, 384)
        vit = tvm.VisionTransformer(
            image_size=image_size, patch_size=16, num_layers=12, num_heads=heads, hidden_dim=dim, mlp_dim=4 * dim
        )
        return _ViT(vit, info.feature_dim)
    if name == "tiny_cnn":
        return _Pooled(_tiny_trunk(), info.feature_dim)
    raise KeyError(name)  # pragma: no cover - the registry and this function list the same names


def _tiny_trunk() -> nn.Sequential:
    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), block(128, 128))
