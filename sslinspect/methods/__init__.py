"""The explicit registry of self-supervised methods.

``METHODS`` is torch-free (names, papers, summaries, which backbones fit) so configs and the CLI can list methods
quickly; :func:`load_method` imports the method's module and returns its
:class:`~sslinspect.methods.base.MethodSpec`. ``docs/methods.md`` says when to use which.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sslinspect.errors import ConfigError

if TYPE_CHECKING:
    from sslinspect.config import PretrainConfig
    from sslinspect.methods.base import MethodSpec

ANY = ("cnn", "vit")


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """What a method is, before importing it."""

    name: str
    module: str
    family: str
    summary: str
    paper: str
    backbones: tuple[str, ...] = ANY  # backbone families (BackboneInfo.family) it works with
    backbone: str = "resnet18"  # the recommended backbone, used when none is chosen


def _info(
    name: str, family: str, summary: str, paper: str, backbones: tuple[str, ...] = ANY, backbone: str = "resnet18"
) -> MethodInfo:
    return MethodInfo(name, f"sslinspect.methods.{name}", family, summary, paper, backbones, backbone)


METHODS: dict[str, MethodInfo] = {
    "simclr": _info(
        "simclr",
        "contrastive",
        "SimCLR: two views, NT-Xent loss against the other images of the batch.",
        "Chen et al., 2020, https://arxiv.org/abs/2002.05709",
    ),
    "mocov2": _info(
        "mocov2",
        "contrastive",
        "MoCo v2: momentum encoder + a queue of past keys as negatives; works with small batches.",
        "Chen et al., 2020, https://arxiv.org/abs/2003.04297",
    ),
    "mocov3": _info(
        "mocov3",
        "contrastive",
        "MoCo v3: momentum encoder, predictor, in-batch negatives; stable for ViTs.",
        "Chen, Xie & He, 2021, https://arxiv.org/abs/2104.02057",
    ),
    "byol": _info(
        "byol",
        "non-contrastive",
        "BYOL: an online network predicts a momentum target network; no negatives needed.",
        "Grill et al., 2020, https://arxiv.org/abs/2006.07733",
    ),
    "simsiam": _info(
        "simsiam",
        "non-contrastive",
        "SimSiam: BYOL without the momentum encoder; a stop-gradient prevents collapse.",
        "Chen & He, 2020, https://arxiv.org/abs/2011.10566",
    ),
    "barlowtwins": _info(
        "barlowtwins",
        "non-contrastive",
        "Barlow Twins: cross-correlation of the two views' embeddings driven to the identity.",
        "Zbontar et al., 2021, https://arxiv.org/abs/2103.03230",
    ),
    "dino": _info(
        "dino",
        "non-contrastive",
        "DINO: self-distillation with multi-crop; the student matches a centred, sharpened momentum teacher.",
        "Caron et al., 2021, https://arxiv.org/abs/2104.14294",
    ),
    "swav": _info(
        "swav",
        "clustering",
        "SwAV: online clustering; each view predicts the other's Sinkhorn-balanced prototype code.",
        "Caron et al., 2020, https://arxiv.org/abs/2006.09882",
    ),
    "deepcluster": _info(
        "deepcluster",
        "clustering",
        "DeepCluster: k-means pseudo-labels of all images, re-clustered every epoch, learnt as classes.",
        "Caron et al., 2018, https://arxiv.org/abs/1807.05520",
    ),
    "mae": _info(
        "mae",
        "generative",
        "MAE: hide 75 % of a ViT's patches and reconstruct their pixels (ViT backbones only).",
        "He et al., 2021, https://arxiv.org/abs/2111.06377",
        ("vit",),
        "vit_small",
    ),
    "inpaint": _info(
        "inpaint",
        "generative",
        "Context encoder: reconstruct a hidden region of the image from the rest.",
        "Pathak et al., 2016, https://arxiv.org/abs/1604.07379",
    ),
    "rotnet": _info(
        "rotnet",
        "pretext",
        "RotNet: predict which of four 90° rotations was applied (parts with a fixed orientation).",
        "Gidaris, Singh & Komodakis, 2018, https://arxiv.org/abs/1803.07728",
    ),
    "jigsaw": _info(
        "jigsaw",
        "pretext",
        "Jigsaw: predict the permutation of 3×3 shuffled tiles (CNN backbones only).",
        "Noroozi & Favaro, 2016, https://arxiv.org/abs/1603.09246",
        ("cnn",),
    ),
    "relpatch": _info(
        "relpatch",
        "pretext",
        "Relative patch position: predict where a neighbouring tile sits around the centre tile (CNNs only).",
        "Doersch, Gupta & Efros, 2015, https://arxiv.org/abs/1505.05192",
        ("cnn",),
    ),
}


def load_method(name: str) -> MethodSpec:
    """Import and return the spec of method ``name``.

    Raises:
        KeyError: for an unknown method.
    """
    info = METHODS[name]
    spec: MethodSpec = importlib.import_module(info.module).SPEC
    return spec


def check_config(cfg: PretrainConfig) -> None:
    """Refuse method/backbone/size combinations that cannot work, before anything is built.

    Raises:
        ConfigError: naming the option to change.
    """
    from sslinspect.backbones import BACKBONES

    info, bb = METHODS[cfg.method], BACKBONES[cfg.backbone]
    if bb.family not in info.backbones:
        fits = ", ".join(name for name, b in BACKBONES.items() if b.family in info.backbones)
        raise ConfigError(f"pretrain.backbone: {cfg.method} does not work with {cfg.backbone}; use one of {fits}")
    if bb.family == "vit" and cfg.image_size % 16:
        raise ConfigError(f"pretrain.image_size must be a multiple of 16 for {cfg.backbone}; got {cfg.image_size}")
