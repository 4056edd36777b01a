"""Backbone factories: torchvision definitions built with ``weights=None`` (nothing is ever downloaded).

Every backbone maps a normalised float batch ``(B, 3, S, S)`` to features ``(B, D)`` with ``D`` known up front
(``module.feature_dim``), following timm's contract. CNN backbones also expose ``feature_maps(x)``: intermediate
maps (stride 8 and 16) for patch-level anomaly models. The registry below is torch-free so configs and the CLI can
list names without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sslinspect.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True, slots=True)
class BackboneInfo:
    """What a backbone is, before building it."""

    name: str
    feature_dim: int
    family: str  # "cnn" | "vit"
    summary: str


BACKBONES: dict[str, BackboneInfo] = {
    "resnet18": BackboneInfo("resnet18", 512, "cnn", "ResNet-18: the default; good speed/quality balance."),
    "resnet34": BackboneInfo("resnet34", 512, "cnn", "ResNet-34: deeper, ~2x the compute of ResNet-18."),
    "resnet50": BackboneInfo("resnet50", 2048, "cnn", "ResNet-50: best features of the CNNs; needs a GPU."),
    "mobilenet_v3_large": BackboneInfo("mobilenet_v3_large", 960, "cnn", "MobileNetV3-Large: fast on edge PCs."),
    "efficientnet_b0": BackboneInfo("efficientnet_b0", 1280, "cnn", "EfficientNet-B0: accurate and light."),
    "vit_tiny": BackboneInfo("vit_tiny", 192, "vit", "ViT-Tiny/16 (for MAE/DINO); image size a multiple of 16."),
    "vit_small": BackboneInfo("vit_small", 384, "vit", "ViT-Small/16 (for MAE/DINO); image size a multiple of 16."),
    "tiny_cnn": BackboneInfo("tiny_cnn", 128, "cnn", "A 4-stage CNN for tests and very slow CPUs."),
}


def build_backbone(name: str, image_size: int = 224) -> nn.Module:
    """Build backbone ``name`` from scratch.

    Raises:
        KeyError: for an unknown name (configs validate names first).
        ConfigError: for a ViT and an image size that is not a multiple of 16.
    """
    import torch
    import torchvision.models as tvm
    from torch import nn

    info = BACKBONES[name]

    class _ResNet(nn.Module):
        def __init__(self, net: tvm.ResNet) -> None:
            super().__init__()
            self.net = net
            self.net.fc = nn.Identity()
            self.feature_dim = info.feature_dim

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

        def __init__(self, features: nn.Sequential) -> None:
            super().__init__()
            self.features = features
            self.feature_dim = info.feature_dim

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

        def __init__(self, net: tvm.VisionTransformer) -> None:
            super().__init__()
            self.net = net
            self.net.heads = nn.Identity()
            self.feature_dim = info.feature_dim
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

    if name.startswith("resnet"):
        return _ResNet(getattr(tvm, name)(weights=None))
    if name == "mobilenet_v3_large":
        return _Pooled(tvm.mobilenet_v3_large(weights=None).features)
    if name == "efficientnet_b0":
        return _Pooled(tvm.efficientnet_b0(weights=None).features)
    if info.family == "vit":
        if image_size % 16:
            raise ConfigError(f"pretrain.image_size must be a multiple of 16 for {name}; got {image_size}")
        heads, dim = (3, 192) if name == "vit_tiny" else (6, 384)
        vit = tvm.VisionTransformer(
            image_size=image_size, patch_size=16, num_layers=12, num_heads=heads, hidden_dim=dim, mlp_dim=4 * dim
        )
        return _ViT(vit)
    if name == "tiny_cnn":
        return _Pooled(_tiny_trunk())
    raise KeyError(name)  # pragma: no cover - the registry and this function list the same names


def _tiny_trunk() -> nn.Sequential:
    from torch import nn

    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), block(128, 128))


def load_backbone_weights(backbone: nn.Module, path: Path) -> list[str]:
    """Load a local weights file into ``backbone`` (never unpickles code: ``weights_only=True``).

    Accepts a plain ``state_dict``, or a dict holding one under ``state_dict``/``model``/``backbone``, or an SSL
    Inspect checkpoint. Prefixes ``module.``/``backbone.``/``net.`` are matched; classifier heads are ignored.

    Returns:
        Names of backbone parameters that the file did not provide (kept at their random init).

    Raises:
        CheckpointError: if the file is missing, not a weights file, unsafe, or its shapes do not fit.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    from sslinspect.train.checkpoint import safe_torch_load

    obj = safe_torch_load(path, "not a safe weights file")
    state = obj
    for key in ("backbone_state", "state_dict", "model", "backbone"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: does not hold a state_dict of tensors")
    own = backbone.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        for cand in _candidates(str(k)):
            if cand in own:
                if own[cand].shape != v.shape:
                    raise CheckpointError(
                        f"{path}: tensor {k} has shape {tuple(v.shape)}, the backbone expects {tuple(own[cand].shape)}"
                    )
                mapped[cand] = v
                break
    if not mapped:
        raise CheckpointError(f"{path}: no tensor matches this backbone (wrong architecture?)")
    missing = [k for k in own if k not in mapped]
    if len(missing) > len(own) // 2:
        raise CheckpointError(f"{path}: only {len(mapped)} of {len(own)} backbone tensors found (wrong architecture?)")
    backbone.load_state_dict(mapped, strict=False)
    return missing


def _candidates(key: str) -> list[str]:
    out = [key]
    for prefix in ("module.", "backbone.", "encoder."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            out.append(key)
    out += ["net." + key, key.removeprefix("net.")]
    return out
