"""Frozen configuration dataclasses, one per pipeline stage, validated on construction.

Each field's ``metadata`` carries ``label``/``help`` and, where they apply, ``min``/``max``/``choices``: the GUI's
config form and the CLI's ``--help`` are built from this one source. Serialisation lives in ``configio``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from sslinspect.catalog import BACKBONE_NAMES, METHOD_NAMES
from sslinspect.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "int8")
CLASSIFIERS = ("auto", "prototype", "logistic")
ANOMALY_MODELS = ("auto", "segment", "patch", "knn")
DESCRIPTORS = ("global", "defect")
DECISIONS = ("auto", "anomaly", "anomaly_or_class")
EXPORT_FORMATS = ("onnx", "triton")


def _f(default: Any, label: str, help: str, **meta: Any) -> Any:
    """A dataclass field with GUI/CLI hints in its metadata."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in configs")
    return field(default=default, metadata={"label": label, "help": help, **meta})


INT_LIMIT = 2**63 - 1  # every integer setting must fit a 64-bit integer (torch, numpy, SQLite)


def _check(cfg: object, section: str) -> None:
    """Validate every field of ``cfg`` against its ``min``/``max``/``choices`` metadata.

    Numbers must also be finite (``nan`` would pass every comparison) and integers must fit 64 bits.
    """
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name)
        meta = f.metadata
        name = f"{section}.{f.name}"
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, meta['choices']))}; got {value!r}")
        if value is None and f.default is not None:  # only fields whose default is None may be None
            raise ConfigError(f"{name} must be set, got None")
        if isinstance(value, bool) or value is None:
            continue
        if ("min" in meta or "max" in meta) and not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
        if isinstance(value, int) and abs(value) > INT_LIMIT:
            raise ConfigError(f"{name} is too large: {value}")
        if "min" in meta and value < meta["min"]:
            raise ConfigError(f"{name} must be ≥ {meta['min']}, got {value}")
        if "max" in meta and value > meta["max"]:
            raise ConfigError(f"{name} must be ≤ {meta['max']}, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DataConfig:
    """How image folders are scanned and decoded."""

    max_pixels: int = _f(
        120_000_000,
        "Pixel limit",
        "Refuse images with more pixels than this (decompression-bomb guard).",
        min=1,
        max=2_000_000_000,
    )
    max_file_mb: float = _f(512.0, "File size limit (MB)", "Skip files larger than this.", min=0.001, max=100_000)
    include_hidden: bool = _f(False, "Include hidden files", "Also scan files and folders whose name starts with '.'.")
    follow_symlinks: bool = _f(True, "Follow symbolic links", "Follow links to folders (loops are detected).")

    def __post_init__(self) -> None:
        """Validate ranges."""
        _check(self, "data")


@dataclass(frozen=True, slots=True, kw_only=True)
class AugmentConfig:
    """Augmentations that make two views of one image; defaults suit industrial parts (no hue shifts)."""

    crop_min_scale: float = _f(
        0.35, "Min crop area", "Smallest random crop, as a share of the image.", min=0.05, max=1.0
    )
    flip: bool = _f(True, "Flips", "Random horizontal and vertical flips (orientation does not matter).")
    rot90: bool = _f(False, "90° rotations", "Random 90° rotations (only when the part has no fixed orientation).")
    rotate_deg: float = _f(10.0, "Small rotations (°)", "Random rotation in ±degrees.", min=0.0, max=180.0)
    brightness: float = _f(0.3, "Brightness jitter", "Relative brightness change.", min=0.0, max=1.0)
    contrast: float = _f(0.3, "Contrast jitter", "Relative contrast change.", min=0.0, max=1.0)
    saturation: float = _f(
        0.0, "Saturation jitter", "Colour saturation change (0 for grayscale parts).", min=0.0, max=1.0
    )
    hue: float = _f(0.0, "Hue jitter", "Hue shift; keep 0 when colour matters for defects.", min=0.0, max=0.5)
    blur_prob: float = _f(0.3, "Blur probability", "Chance of a Gaussian blur (defocus).", min=0.0, max=1.0)
    noise_std: float = _f(0.02, "Sensor noise", "Std of added Gaussian noise on [0,1] pixels.", min=0.0, max=0.5)
    local_min_scale: float = _f(
        0.1,
        "Min local-crop area",
        "Smallest local crop of DINO/SwAV multi-crop, as a share of the image (local crops go up to Min crop area).",
        min=0.02,
        max=1.0,
    )

    def __post_init__(self) -> None:
        """Validate ranges."""
        _check(self, "pretrain.augment")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> AugmentConfig:
        """The augmentations of preset ``name`` (see :data:`AUGMENT_PRESETS`), with ``overrides`` on top.

        Raises:
            ConfigError: for an unknown preset or a bad override.
        """
        if name not in AUGMENT_PRESETS:
            raise ConfigError(f"pretrain.augment: unknown preset {name!r}; known: {', '.join(AUGMENT_PRESETS)}")
        try:
            return cls(**{**AUGMENT_PRESETS[name], **overrides})
        except TypeError as exc:
            raise ConfigError(f"pretrain.augment: {exc}") from exc


#: Named augmentation recipes: field overrides of :class:`AugmentConfig`'s defaults. ``--set pretrain.augment=NAME``
#: or ``"augment": "NAME"`` in a config file picks one; later ``--set pretrain.augment.FIELD=...`` refine it.
AUGMENT_PRESETS: dict[str, dict[str, Any]] = {
    # the defaults: grayscale or colour parts whose colour must not be altered; flips allowed
    "industrial-gray": {},
    # colour parts: a little saturation change (lighting), still no hue shift (a stain's hue is the defect)
    "industrial-color": {"saturation": 0.15},
    # turned, round or textured parts with no fixed orientation: any 90° turn or flip is the same part
    "orientation-free": {"flip": True, "rot90": True, "rotate_deg": 15.0},
    # parts with a fixed layout (labels, connectors, text): no flips, barely any rotation
    "fixed-orientation": {"flip": False, "rot90": False, "rotate_deg": 3.0},
    # SimCLR's recipe for natural photos, for comparison: strong crops and colour distortion
    "natural": {
        "crop_min_scale": 0.08,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.4,
        "hue": 0.1,
        "blur_prob": 0.5,
        "noise_std": 0.0,
    },
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PretrainConfig:
    """Self-supervised pretraining of a backbone."""

    # Defaults follow bench/quality.py (bench/RESULTS.md): the defect-aware method at the frames' native size wins
    # on every surface; the global methods (SimCLR & co.) stay a choice for other uses (docs/methods.md).
    method: str = _f("synthdefect", "Method", "Self-supervised method (see docs/methods.md).", choices=METHOD_NAMES)
    backbone: str = _f("resnet18", "Backbone", "Network trained from scratch (weights=None).", choices=BACKBONE_NAMES)
    image_size: int = _f(
        0,
        "Image size (px)",
        "Images are resized to a square of this size; 0 = native: the project's frame size (no shrinking).",
        min=0,
        max=1024,
    )
    epochs: int = _f(50, "Epochs", "Passes over the images.", min=1, max=10_000)
    batch_size: int = _f(16, "Batch size", "Images per step (contrastive methods want 64 or more).", min=2, max=8192)
    lr: float = _f(0.0, "Learning rate", "0 picks the method's default for this batch size.", min=0.0, max=10.0)
    weight_decay: float = _f(1e-6, "Weight decay", "L2 penalty on weights.", min=0.0, max=1.0)
    warmup_epochs: int = _f(1, "Warm-up epochs", "Linear learning-rate warm-up.", min=0, max=1000)
    max_minutes: float = _f(0.0, "Time budget (min)", "Stop after this many minutes (0 = no limit).", min=0.0)
    device: str = _f("auto", "Device", "auto uses the GPU when there is one.", choices=DEVICES)
    seed: int = _f(0, "Seed", "Random seed (recorded in config.json).", min=0)
    threads: int = _f(0, "CPU threads", "torch threads (0 = default; the GUI lowers it).", min=0, max=512)
    amp: bool = _f(True, "Mixed precision", "bf16 autocast on CUDA (ignored on CPU).")
    channels_last: bool = _f(True, "channels_last", "NHWC memory format on CUDA.")
    compile: bool = _f(False, "torch.compile", "Compile the model (measure first; slow start).")
    grad_clip: float = _f(0.0, "Gradient clip", "Max gradient norm (0 = off).", min=0.0)
    proj_dim: int = _f(128, "Projection dim", "Output size of the projection head.", min=8, max=65536)
    hidden_dim: int = _f(1024, "Head hidden dim", "Hidden size of projection/prediction heads.", min=8, max=65536)
    temperature: float = _f(0.2, "Temperature", "Softmax temperature of contrastive losses.", min=0.001, max=10.0)
    ema_momentum: float = _f(0.99, "EMA momentum", "Base momentum of target/momentum encoders.", min=0.0, max=1.0)
    weights: str = _f("", "Start weights", "Optional local backbone weights file (.pt / .pth, state_dict).")
    log_every: int = _f(10, "Report every (steps)", "Metrics interval in steps.", min=1)
    augment: AugmentConfig = field(
        default_factory=AugmentConfig,
        metadata={
            "label": "Augmentations",
            "help": "View augmentations (a preset name such as orientation-free, or fields).",
            "presets": tuple(AUGMENT_PRESETS),
        },
    )
    local_crops: int = _f(
        4, "Local crops", "Small extra crops per image for DINO and SwAV (multi-crop).", min=0, max=16
    )
    queue_size: int = _f(
        4096,
        "Queue size",
        "MoCo v2 negatives kept from past batches (used up to half the number of images).",
        min=0,
        max=1_000_000,
    )
    num_prototypes: int = _f(
        512, "Prototypes", "Output width of DINO's head and number of SwAV prototypes.", min=8, max=65536
    )
    teacher_temp: float = _f(
        0.07, "Teacher temperature", "DINO's teacher softmax temperature after warm-up from 0.04.", min=0.01, max=1.0
    )
    crop_size: int = _f(
        0,
        "Crop size (px)",
        "Synthetic defects: training crops cut from the frames at native scale (0 = half the frame, ≥ 64 px).",
        min=0,
        max=4096,
    )
    mask_ratio: float = _f(0.75, "Mask ratio", "Share of patches MAE hides from the encoder.", min=0.1, max=0.95)
    clusters: int = _f(
        100,
        "Clusters",
        "DeepCluster k-means clusters (capped at an eighth of the number of images).",
        min=2,
        max=100_000,
    )

    def __post_init__(self) -> None:
        """Validate ranges and names (method and backbone names come from :mod:`sslinspect.catalog`)."""
        _check(self, "pretrain")
        if 0 < self.image_size < 32:
            raise ConfigError(f"pretrain.image_size must be 0 (native) or ≥ 32, got {self.image_size}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FewShotConfig:
    """Few-shot defect classifier and k-NN anomaly score on frozen embeddings."""

    classifier: str = _f("auto", "Classifier", "auto picks by cross-validation on the labels.", choices=CLASSIFIERS)
    cv_folds: int = _f(5, "CV folds", "Cross-validation folds (capped by the smallest class).", min=2, max=50)
    knn_k: int = _f(5, "k (anomaly)", "Neighbours averaged for the anomaly score.", min=1, max=100)
    bank_size: int = _f(20_000, "Memory bank size", "Max reference embeddings kept (bounds memory).", min=10)
    threshold_percentile: float = _f(
        97.0,
        "Threshold percentile",
        "Anomaly threshold = this percentile of held-out scores of presumed-good images.",
        min=50.0,
        max=100.0,
    )
    review_percentile: float = _f(
        0.0,
        "Review percentile",
        "Optional review band: scores between this percentile of good scores and the threshold are marked "
        "'review' (0 = off).",
        min=0.0,
        max=100.0,
    )
    anomaly: str = _f(
        "auto",
        "Anomaly model",
        "segment: the defect-aware map of a synthdefect pretraining run; patch: memory bank of patch features with "
        "heatmaps (CNN backbones); knn: image-level k-NN; auto: segment when the run has a defect decoder, else "
        "patch when the backbone has feature maps.",
        choices=ANOMALY_MODELS,
    )
    tiles: int = _f(
        1,
        "Tiles per side",
        "Inspect images at tiles × the pretraining size, as tiles × tiles tiles: keeps small defects on large "
        "images visible (cost grows with tiles²).",
        min=1,
        max=8,
    )
    patch_candidates: int = _f(
        50_000,
        "Patch pool",
        "Patch features sampled from good images before coreset selection (bounds memory).",
        min=100,
        max=10_000_000,
    )
    patch_bank_size: int = _f(
        4_000, "Patch memory bank", "Patches kept by greedy coreset selection (bounds memory and speed).", min=10
    )
    contamination: float = _f(
        0.05,
        "Expected defect share",
        "Share of unlabelled images presumed defective: the most unusual ones are kept out of the memory bank "
        "and the threshold calibration.",
        min=0.0,
        max=0.5,
    )
    descriptor: str = _f(
        "global",
        "Classifier input",
        "global: pooled image features; defect: pooled features + the patch at the most anomalous spot.",
        choices=DESCRIPTORS,
    )
    decision: str = _f(
        "auto",
        "NG rule",
        "anomaly: NG when the anomaly score exceeds the threshold; anomaly_or_class: also when the classifier "
        "picks a defect class; auto: the better of the two on the labels (out-of-fold).",
        choices=DECISIONS,
    )
    min_shots: int = _f(2, "Min labels per class", "Classes with fewer labels are left out, with a warning.", min=1)
    batch_size: int = _f(64, "Batch size", "Images per forward pass when embedding.", min=1)
    device: str = _f("auto", "Device", "auto uses the GPU when there is one.", choices=DEVICES)
    seed: int = _f(0, "Seed", "Random seed.", min=0)

    def __post_init__(self) -> None:
        """Validate ranges."""
        _check(self, "fit")
        if self.review_percentile and self.review_percentile >= self.threshold_percentile:
            raise ConfigError(
                f"train.review_percentile must be below train.threshold_percentile ({self.threshold_percentile:g}), "
                f"got {self.review_percentile:g}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportConfig:
    """ONNX export and its parity check."""

    precision: str = _f("fp32", "Precision", "Weights/activations precision of the exported model.", choices=PRECISIONS)
    opset: int = _f(18, "ONNX opset", "ONNX operator set version.", min=17, max=23)
    parity_images: int = _f(
        16, "Parity images", "Real project images compared between PyTorch and ONNX Runtime.", min=1
    )
    parity_atol: float = _f(
        1e-3, "Parity tolerance", "Max absolute difference allowed on probabilities and anomaly scores.", min=0.0
    )
    format: str = _f(
        "onnx",
        "Format",
        "onnx: one .onnx file + .json sidecar; triton: a Triton model repository.",
        choices=EXPORT_FORMATS,
    )
    tolerance: float = _f(
        0.01,
        "Precision tolerance",
        "FP16/INT8: max change in accuracy and in OK/NG decisions against FP32 (0.01 = 1 point); beyond it the "
        "export is refused unless forced.",
        min=0.0,
        max=1.0,
    )
    calibration_images: int = _f(
        128, "Calibration images", "Project images that calibrate INT8 activation ranges.", min=1, max=10_000
    )
    int8_reduce_range: bool = _f(
        False,
        "INT8 7-bit weights",
        "INT8: 7-bit weights, for x86 CPUs without VNNI (AVX2 only), where 8-bit weights can saturate ONNX Runtime's "
        "integer multiply-add; costs accuracy.",
    )
    check_images: int = _f(
        200,
        "Check images",
        "Held-out project images (besides every labelled one) on which FP16/INT8 is compared with FP32.",
        min=0,
        max=100_000,
    )

    def __post_init__(self) -> None:
        """Validate ranges."""
        _check(self, "export")


PROTOCOLS = ("knn", "linear", "finetune")


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluateConfig:
    """Evaluation of a pretrained backbone on the project's labels (cross-validated), to compare runs and methods."""

    protocol: str = _f(
        "knn",
        "Protocol",
        "knn: k-NN on frozen embeddings; linear: logistic regression on them; finetune: briefly train the backbone "
        "and a linear head.",
        choices=PROTOCOLS,
    )
    folds: int = _f(5, "CV folds", "Stratified folds (capped by the smallest class).", min=2, max=50)
    knn_k: int = _f(5, "k", "Neighbours that vote in the k-NN protocol.", min=1, max=200)
    knn_temperature: float = _f(0.1, "k-NN temperature", "Vote weight exp(cos/T).", min=0.001, max=10.0)
    finetune_epochs: int = _f(20, "Fine-tune epochs", "Passes over each fold's training labels.", min=1, max=1000)
    finetune_max_steps: int = _f(300, "Fine-tune step cap", "Upper bound on steps per fold.", min=1)
    finetune_lr: float = _f(
        3e-4, "Fine-tune learning rate", "Backbone learning rate (the head gets 10×).", min=1e-7, max=1.0
    )
    batch_size: int = _f(32, "Batch size", "Images per step when embedding or fine-tuning.", min=2, max=4096)
    device: str = _f("auto", "Device", "auto uses the GPU when there is one.", choices=DEVICES)
    seed: int = _f(0, "Seed", "Random seed (folds, fine-tuning).", min=0)

    def __post_init__(self) -> None:
        """Validate ranges."""
        _check(self, "evaluate")
