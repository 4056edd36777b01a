"""Pretrain a method on demo images with the real loop and probe the backbone with k-NN (shared by the slow tests
and by the augmentation measurements in docs/methods.md)."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sslinspect.backbones import build_backbone
from sslinspect.cancel import NEVER
from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.demo.dataset import DemoDataset
from sslinspect.events import Event, Metric
from sslinspect.imageio import load_for_model
from sslinspect.methods import check_config, load_method
from sslinspect.preprocess import normalize_u8
from sslinspect.train.health import embedding_std
from sslinspect.train.loop import train_loop


@dataclass(frozen=True)
class Probe:
    """k-NN balanced accuracy of the test set against the few-shot labels, leave-one-out k-NN balanced accuracy
    within the labelled test set, and the test embeddings' spread."""

    knn_bal_acc: float
    loo_bal_acc: float
    okng_bal_acc: float
    anomaly_auroc: float
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


def knn_balanced_accuracy(
    ref: torch.Tensor, ref_y: list[str], query: torch.Tensor, query_y: list[str], *, k: int = 1, loo: bool = False
) -> float:
    """Balanced accuracy of ``k``-nearest-neighbour (cosine, majority vote) classification of ``query`` by ``ref``;
    ``loo`` leaves each query out when ``ref`` is the query set itself."""
    sim = F.normalize(query.float(), dim=1) @ F.normalize(ref.float(), dim=1).T
    if loo:
        sim.fill_diagonal_(-2.0)
    nearest = sim.topk(k, dim=1).indices.tolist()
    votes = [[ref_y[i] for i in row] for row in nearest]
    pred = [max(v, key=v.count) for v in votes]  # ties go to the nearer neighbour
    classes = sorted(set(query_y))
    recalls = [np.mean([p == c for p, t in zip(pred, query_y, strict=True) if t == c]) for c in classes]
    return float(np.mean(recalls))


def prototype_balanced_accuracy(ref: torch.Tensor, ref_y: list[str], query: torch.Tensor, query_y: list[str]) -> float:
    """Balanced accuracy of nearest-class-mean (L2-normalised, cosine) classification, the few-shot head's default."""
    classes = sorted(set(ref_y))
    ref = F.normalize(ref.float(), dim=1)
    protos = torch.stack([ref[[i for i, y in enumerate(ref_y) if y == c]].mean(0) for c in classes])
    pred = [classes[i] for i in (F.normalize(query.float(), dim=1) @ F.normalize(protos, dim=1).T).argmax(1).tolist()]
    recalls = [np.mean([p == c for p, t in zip(pred, query_y, strict=True) if t == c]) for c in sorted(set(query_y))]
    return float(np.mean(recalls))


def knn_anomaly_auroc(bank: torch.Tensor, query: torch.Tensor, is_defect: list[bool], k: int = 5) -> float:
    """AUROC of the k-NN anomaly score (1 − mean cosine to the ``k`` nearest bank images) for good vs defect."""
    sim = F.normalize(query.float(), dim=1) @ F.normalize(bank.float(), dim=1).T
    score = (1 - sim.topk(k, dim=1).values.mean(1)).tolist()
    pos = [s for s, d in zip(score, is_defect, strict=True) if d]
    neg = [s for s, d in zip(score, is_defect, strict=True) if not d]
    return float(np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg]))


def probe(
    backbone: torch.nn.Module,
    shots: tuple[np.ndarray, list[str]],
    test: tuple[np.ndarray, list[str]],
    bank: np.ndarray | None = None,
) -> Probe:
    """k-NN probe of ``backbone``: few-shot labels as references, the labelled test set as queries, ``bank``
    (unlabeled images) as the anomaly model's memory."""
    ref, query = embed(backbone, shots[0]), embed(backbone, test[0])
    auroc = (
        math.nan if bank is None else knn_anomaly_auroc(embed(backbone, bank), query, [y != "good" for y in test[1]])
    )
    okng = ["good" if y == "good" else "defect" for y in test[1]]
    return Probe(
        prototype_balanced_accuracy(ref, shots[1], query, test[1]),
        knn_balanced_accuracy(query, test[1], query, test[1], k=5, loo=True),
        knn_balanced_accuracy(query, okng, query, okng, k=5, loo=True),
        auroc,
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
