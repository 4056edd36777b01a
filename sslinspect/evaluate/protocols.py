"""Cross-validated evaluation protocols on labelled images: out-of-fold class probabilities for every image.

- ``knn``: k-NN vote on frozen L2-normalised embeddings (the bank is the training folds);
- ``linear``: class-balanced logistic regression on the same embeddings (the few-shot head's logistic fit);
- ``finetune``: a copy of the backbone plus a linear head trained briefly on the training folds, with mild
  augmentations and a bounded number of steps.

All three use the same stratified folds, so their numbers are comparable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from sklearn.model_selection import StratifiedKFold
from torch import nn

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import AugmentConfig, EvaluateConfig
from sslinspect.data.views import augment
from sslinspect.errors import Cancelled
from sslinspect.events import Progress, Reporter, null_reporter
from sslinspect.fewshot.classifier import fit_logistic
from sslinspect.preprocess import normalize_u8
from sslinspect.train.health import knn_predict


@dataclass(frozen=True, slots=True)
class ProtocolScore:
    """Cross-validated result of one protocol: pooled out-of-fold predictions scored once."""

    protocol: str
    folds: int
    accuracy: float
    balanced_accuracy: float
    recall: dict[str, float]
    confusion: list[list[int]]


def stratified_folds(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` index pairs; ``folds`` is capped by the smallest class.

    Raises:
        ValueError: if a class has fewer than 2 labels.
    """
    k = int(min(folds, np.bincount(y).min()))
    if k < 2:
        raise ValueError("cross-validation needs at least 2 labelled images per class")
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def score(protocol: str, folds: int, y: np.ndarray, proba: np.ndarray, classes: tuple[str, ...]) -> ProtocolScore:
    """Accuracy, balanced accuracy, per-class recall and confusion matrix of out-of-fold ``proba``."""
    pred = proba.argmax(1)
    cm = confusion_matrix(y, pred, labels=list(range(len(classes))))
    recall = {c: float(cm[i, i] / max(1, cm[i].sum())) for i, c in enumerate(classes)}
    return ProtocolScore(
        protocol, folds, float((pred == y).mean()), float(balanced_accuracy_score(y, pred)), recall, cm.tolist()
    )


def knn_oof(
    emb: np.ndarray, y: np.ndarray, n_classes: int, splits: list[tuple[np.ndarray, np.ndarray]], cfg: EvaluateConfig
) -> np.ndarray:
    """Out-of-fold k-NN class scores (normalised to sum to 1) of L2-normalised ``emb``."""
    out = np.zeros((len(y), n_classes))
    for tr, te in splits:
        s = knn_predict(emb[te], emb[tr], y[tr], n_classes, k=cfg.knn_k, temperature=cfg.knn_temperature)
        out[te] = s / s.sum(1, keepdims=True).clip(min=1e-12)
    return out


def linear_oof(
    emb: np.ndarray, y: np.ndarray, classes: tuple[str, ...], splits: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> np.ndarray:
    """Out-of-fold probabilities of a class-balanced logistic regression on ``emb``."""
    out = np.zeros((len(y), len(classes)))
    for tr, te in splits:
        if len(np.unique(y[tr])) < len(classes):  # pragma: no cover - stratified folds keep every class
            raise ValueError("a training fold lacks a class")
        out[te] = fit_logistic(emb[tr], y[tr], classes, seed).predict_proba(emb[te])
    return out


def finetune_oof(
    make_backbone: Callable[[], nn.Module],
    images: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    splits: list[tuple[np.ndarray, np.ndarray]],
    cfg: EvaluateConfig,
    augment_cfg: AugmentConfig,
    *,
    device: torch.device,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> np.ndarray:
    """Out-of-fold probabilities of a fresh backbone copy + linear head fine-tuned on each training fold.

    Raises:
        Cancelled: when ``cancel`` fires (checked every step).
    """
    mild = dataclasses.replace(augment_cfg, crop_min_scale=max(augment_cfg.crop_min_scale, 0.6))
    out = np.zeros((len(y), n_classes))
    size = images.shape[1]
    steps_per_fold = [_steps(len(tr), cfg) for tr, _ in splits]
    total, done = sum(steps_per_fold), 0
    for (tr, te), steps in zip(splits, steps_per_fold, strict=True):
        torch.manual_seed(cfg.seed)
        backbone = make_backbone().to(device).train()
        head = nn.Linear(int(backbone.feature_dim), n_classes).to(device)  # type: ignore[arg-type]
        opt = torch.optim.AdamW(
            [
                {"params": backbone.parameters(), "lr": cfg.finetune_lr},
                {"params": head.parameters(), "lr": 10 * cfg.finetune_lr},
            ],
            weight_decay=1e-4,
        )
        x_tr = torch.from_numpy(np.ascontiguousarray(images[tr])).to(device)
        y_tr = torch.from_numpy(y[tr]).to(device)
        weight = torch.from_numpy(len(tr) / (n_classes * np.bincount(y[tr], minlength=n_classes).clip(min=1)))
        batch = min(cfg.batch_size, len(tr))
        gen = torch.Generator().manual_seed(cfg.seed)
        for step in range(steps):
            if cancel.is_cancelled():
                raise Cancelled("fine-tuning cancelled")
            idx = torch.randperm(len(tr), generator=gen)[:batch].to(device)
            logits = head(backbone(augment(x_tr[idx], mild, size)))
            loss = F.cross_entropy(logits, y_tr[idx], weight=weight.float().to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if step == steps - 1 or done % 10 == 0:
                report(Progress(stage="evaluate", step=done, total=total, message="fine-tuning"))
        backbone.eval()
        with torch.no_grad():
            x_te = torch.from_numpy(np.ascontiguousarray(images[te])).to(device)
            out[te] = (
                torch.cat(
                    [
                        head(backbone(normalize_u8(x_te[i : i + cfg.batch_size]))).softmax(1)
                        for i in range(0, len(te), cfg.batch_size)
                    ]
                )
                .cpu()
                .numpy()
            )
    return out


def _steps(n_train: int, cfg: EvaluateConfig) -> int:
    return min(cfg.finetune_max_steps, cfg.finetune_epochs * math.ceil(n_train / cfg.batch_size))
