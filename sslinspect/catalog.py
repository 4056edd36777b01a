"""The torch-free catalog of self-supervised methods and backbones: names, summaries, papers, families.

Configs validate against it (``choices`` metadata), the CLI builds its ``--method``/``--backbone`` choices and help
from that metadata, and the GUI lists the names; nothing here imports torch. :mod:`sslinspect.methods` loads a
method's module by name and :mod:`sslinspect.model.backbones` builds a backbone by name.
"""

from __future__ import annotations

from dataclasses import dataclass


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


ANY = ("cnn", "vit")  # every backbone family


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
    "synthdefect": _info(
        "synthdefect",
        "defect-aware",
        "Synthetic defects: paints artificial scratches, spots and blemishes onto crops of your own images and learns "
        "to outline them; its map finds real defects (CNN backbones only).",
        "Zavrtanik et al. (DRAEM), 2021, https://arxiv.org/abs/2108.07610; Schlüter et al. (NSA), 2022",
        ("cnn",),
    ),
}


METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
BACKBONE_NAMES: tuple[str, ...] = tuple(BACKBONES)
