"""Pretrain a method on demo images with the real loop and probe the backbone with k-NN (shared by the slow tests
and by the augmentation measurements in docs/methods.md)."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from sslinspect.cancel import NEVER
from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.demo.dataset import DemoDataset
from sslinspect.events import Event, Metric
from sslinspect.imageio import load_for_model
from sslinspect.methods import check_config, load_method
from sslinspect.model.backbones import FeatureMaps, build_backbone
from sslinspect.preprocess import normalize_u8
from sslinspect.train.health import embedding_std
from sslinspect.train.loop import train_loop


@dataclass(frozen=True)
class Probe:
    """What a backbone's features are worth on the demo: defect-type balanced accuracy of nearest-class-mean on the
    few-shot labels (test set), AUROC of a patch-level k-NN anomaly score (good vs defective test images), and the
    spread of the test embeddings (collapse detector)."""

    type_bal_acc: float
    patch_auroc: float
    emb_std: float


@dataclass(frozen=True)
class LearnResult:
    """A pretrained run probed, next to the same backbone at random init."""

    trained: Probe
    random: Probe
    first_loss: float
    last_loss: float
    seconds: float


def load_split(ds: DemoDataset, csv_path: Path, size: int) -> tuple[np.ndarray, list[str]]:
    """Images ``uint8 (N, S, S, 3)`` and labels of a ``path,label`` CSV of the demo."""
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return np.stack([load_for_model(ds.root / r["path"], size) for r in rows]), [r["label"] for r in rows]


def load_unlabeled(ds: DemoDataset, size: int) -> np.ndarray:
    """Every image of the demo's unlabeled folder at ``size`` px."""
    return np.stack([load_for_model(p, size) for p in sorted(ds.unlabeled_dir.iterdir())])


@torch.no_grad()
def embed(backbone: torch.nn.Module, images: np.ndarray) -> torch.Tensor:
    """Backbone features of ``uint8`` images (eval mode, CPU)."""
    backbone.eval()
    return torch.cat([backbone(normalize_u8(torch.from_numpy(images[i : i + 64]))) for i in range(0, len(images), 64)])


def prototype_balanced_accuracy(ref: torch.Tensor, ref_y: list[str], query: torch.Tensor, query_y: list[str]) -> float:
    """Balanced accuracy of nearest-class-mean (L2-normalised, cosine) classification, the few-shot head's default."""
    classes = sorted(set(ref_y))
    ref = F.normalize(ref.float(), dim=1)
    protos = torch.stack([ref[[i for i, y in enumerate(ref_y) if y == c]].mean(0) for c in classes])
    pred = [classes[i] for i in (F.normalize(query.float(), dim=1) @ F.normalize(protos, dim=1).T).argmax(1).tolist()]
    recalls = [np.mean([p == c for p, t in zip(pred, query_y, strict=True) if t == c]) for c in sorted(set(query_y))]
    return float(np.mean(recalls))


@torch.no_grad()
def patch_features(backbone: torch.nn.Module, images: np.ndarray) -> torch.Tensor:
    """L2-normalised local features ``(N, P, C)`` from the backbone's finest feature map (stride 8 on CNNs)."""
    backbone.eval()
    maps = [
        cast(FeatureMaps, backbone).feature_maps(normalize_u8(torch.from_numpy(images[i : i + 64])))[0]
        for i in range(0, len(images), 64)
    ]
    return F.normalize(torch.cat(maps).flatten(2).transpose(1, 2).float(), dim=-1)


def patch_anomaly_auroc(backbone: torch.nn.Module, bank: np.ndarray, test: tuple[np.ndarray, list[str]]) -> float:
    """AUROC (good vs defect) of the patch k-NN score: the largest distance of any patch of a test image to its
    nearest patch among the unlabeled ``bank`` images (a random 20 000 of them), as patch-level anomaly models do."""
    ref = patch_features(backbone, bank).flatten(0, 1)
    ref = ref[torch.randperm(len(ref), generator=torch.Generator().manual_seed(0))[:20_000]]
    score = [float((1 - q @ ref.T).amin(1).amax()) for q in patch_features(backbone, test[0])]
    pos = [s for s, y in zip(score, test[1], strict=True) if y != "good"]
    neg = [s for s, y in zip(score, test[1], strict=True) if y == "good"]
    return float(np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg]))


def probe(
    backbone: torch.nn.Module,
    shots: tuple[np.ndarray, list[str]],
    test: tuple[np.ndarray, list[str]],
    bank: np.ndarray,
) -> Probe:
    """Probe ``backbone`` with the few-shot labels, the labelled test set and the unlabeled images."""
    ref, query = embed(backbone, shots[0]), embed(backbone, test[0])
    return Probe(
        prototype_balanced_accuracy(ref, shots[1], query, test[1]),
        patch_anomaly_auroc(backbone, bank, test),
        embedding_std(query),
    )


def learn(
    cfg: PretrainConfig,
    unlabeled: np.ndarray,
    shots: tuple[np.ndarray, list[str]],
    test: tuple[np.ndarray, list[str]],
    workdir: Path,
    save: Path | None = None,
) -> LearnResult:
    """Pretrain with the real training loop on CPU, then probe the trained and a random-init backbone."""
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    spec = load_method(cfg.method)
    model = spec.make_model(build_backbone(cfg.backbone, cfg.image_size), cfg)
    losses: list[float] = []

    def report(event: Event) -> None:
        if isinstance(event, Metric) and event.name == "loss":
            losses.append(event.value)

    t0 = time.monotonic()
    train_loop(
        model,
        spec.make_views(cfg),
        BatchSource(unlabeled, cfg.batch_size, torch.device("cpu"), seed=cfg.seed),
        spec,
        cfg,
        device=torch.device("cpu"),
        checkpoint_path=workdir / "last.pt",
        checkpoint_meta={"method": cfg.method, "backbone": cfg.backbone, "image_size": cfg.image_size},
        resume=None,
        report=report,
        cancel=NEVER,
    )
    seconds = time.monotonic() - t0
    torch.manual_seed(cfg.seed)
    random = probe(build_backbone(cfg.backbone, cfg.image_size), shots, test, unlabeled)
    if save is not None:
        torch.save(model.backbone.state_dict(), save)
    return LearnResult(probe(model.backbone, shots, test, unlabeled), random, losses[0], losses[-1], seconds)
