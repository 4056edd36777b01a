"""Training the inspection head: embed the project's images with the pretrained backbone, cross-validate and fit
the few-shot classifier on the labels, build the anomaly memory bank and calibrate its threshold."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import FewShotConfig
from sslinspect.configio import to_dict
from sslinspect.data.cache import build_cache
from sslinspect.errors import DataError
from sslinspect.events import Artifact, Log, Progress, Reporter, null_reporter
from sslinspect.fewshot.anomaly import KnnAnomaly, calibrate_threshold, knn_scores, subsample_bank
from sslinspect.fewshot.classifier import CVReport, LinearHead, select_classifier
from sslinspect.fewshot.embed import embed_images
from sslinspect.fewshot.model import InspectionHead
from sslinspect.fsutil import atomic_path, atomic_write_json
from sslinspect.project import GOOD, Project
from sslinspect.runs import open_run
from sslinspect.train.checkpoint import build_backbone_from_checkpoint, load_checkpoint
from sslinspect.train.pretrain import latest_checkpoint
from sslinspect.train.runtime import pick_device, seed_everything, versions


@dataclass(frozen=True, slots=True)
class FewShotResult:
    """Outcome of ``sslinspect train``; paths relative to the project root."""

    run_dir: str
    head: str
    checkpoint: str
    classes: tuple[str, ...]
    classifier: str
    cv_balanced_accuracy: float | None
    candidates: dict[str, float]
    threshold: float
    anomaly_auroc: float | None
    labelled: int
    bank_size: int
    images: int


@dataclass(frozen=True, slots=True)
class HeadFit:
    """A fitted head plus the evidence for it (pure computation, no files)."""

    head: InspectionHead
    cv: CVReport | None
    candidates: dict[str, float]
    anomaly_auroc: float | None
    scores: np.ndarray  # held-out anomaly score of every embedded image
    dropped: dict[str, int]


def fit_head(emb: np.ndarray, labels: list[str | None], cfg: FewShotConfig, image_size: int) -> HeadFit:
    """Fit classifier + anomaly model on L2-normalised ``emb``; ``labels[i]`` is None for unlabeled rows.

    Raises:
        DataError: if there are too few images for a memory bank.
    """
    counts: dict[str, int] = {}
    for lab in labels:
        if lab is not None:
            counts[lab] = counts.get(lab, 0) + 1
    dropped = {c: n for c, n in counts.items() if n < cfg.min_shots}
    kept = sorted((c for c in counts if c not in dropped), key=lambda c: (c != GOOD, c))
    if GOOD not in kept:
        kept.insert(0, GOOD)
    classes = tuple(kept)
    lab_idx = np.array([i for i, lab in enumerate(labels) if lab in classes and lab in counts], dtype=np.int64)
    y = np.array([classes.index(labels[i]) for i in lab_idx], dtype=np.int64)
    cv: CVReport | None = None
    candidates: dict[str, float] = {}
    if len(set(y.tolist())) >= 2:
        clf, cv, candidates = select_classifier(cfg.classifier, emb[lab_idx], y, classes, cfg.cv_folds, cfg.seed)
    else:  # only "good" (or nothing) labelled: the anomaly score does the work
        clf = LinearHead(
            "constant", classes, np.zeros((len(classes), emb.shape[1]), np.float32), np.zeros(len(classes), np.float32)
        )

    defect_rows = np.array([lab is not None and lab != GOOD for lab in labels])
    pool = np.flatnonzero(~defect_rows)  # unlabeled + good: presumed (mostly) good
    if len(pool) < cfg.knn_k + 1:
        raise DataError(f"the anomaly model needs at least {cfg.knn_k + 1} images that are not labelled defects")
    bank_rows = pool[subsample_bank(emb[pool], cfg.bank_size, cfg.seed)]
    bank = emb[bank_rows]
    scores = knn_scores(emb, bank, cfg.knn_k)
    in_bank = np.zeros(len(emb), bool)
    in_bank[bank_rows] = True
    scores[bank_rows] = knn_scores(emb[bank_rows], bank, cfg.knn_k, exclude_self=True)  # held out
    threshold = calibrate_threshold(scores[pool], cfg.threshold_percentile)
    auroc = None
    is_good = np.array([lab == GOOD for lab in labels])
    if is_good.any() and defect_rows.any():
        sel = is_good | defect_rows
        auroc = float(roc_auc_score(defect_rows[sel], scores[sel]))
    head = InspectionHead(clf, KnnAnomaly(bank, cfg.knn_k, threshold), image_size)
    return HeadFit(head, cv, candidates, auroc, scores, dropped)


def run_fit(
    project: Project,
    cfg: FewShotConfig,
    *,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> FewShotResult:
    """Fit the inspection head from the latest pretraining run (see :func:`sslinspect.api.fit_fewshot`)."""
    seed_everything(cfg.seed)
    ckpt_path = latest_checkpoint(project)
    ckpt = load_checkpoint(ckpt_path)
    image_size = int(ckpt["image_size"])
    device = pick_device(cfg.device)
    run_dir = project.new_run_dir("fewshot", str(ckpt["method"]))
    config = {"train": to_dict(cfg), "checkpoint": project.relative(ckpt_path), "versions": versions()}
    with open_run("fewshot", run_dir, config, report=report) as run:
        backbone = build_backbone_from_checkpoint(ckpt)
        cache = build_cache(project, image_size, report=run.report, cancel=cancel)
        emb = embed_images(
            backbone, cache.images, device=device, batch_size=cfg.batch_size, report=run.report, cancel=cancel
        )
        ids = np.array(cache.ids, dtype=np.int64)
        label_map = project.store.labels()
        labels = [label_map.get(int(i)) for i in ids]
        orphan = len(label_map) - sum(lab is not None for lab in labels)
        if orphan:
            run.report(Log(level="WARNING", message=f"{orphan} labelled image(s) are not readable any more; skipped"))
        fitted = fit_head(emb, labels, cfg, image_size)
        for cls, n in fitted.dropped.items():
            run.report(
                Log(
                    level="WARNING",
                    message=(
                        f"class {cls!r} has {n} label(s), fewer than {cfg.min_shots}: left out (label more examples)"
                    ),
                )
            )
        head = fitted.head
        head.save(run_dir / "head.npz")
        with atomic_path(run_dir / "embeddings.npy") as tmp, tmp.open("wb") as fh:
            np.save(fh, emb)
        with atomic_path(run_dir / "embedding_ids.npy") as tmp, tmp.open("wb") as fh:
            np.save(fh, ids)
        _write_scores(run_dir / "scores.csv", project, ids, head, emb, fitted.scores)
        metrics = {
            "classes": list(head.classes),
            "classifier": head.classifier.kind,
            "candidates": fitted.candidates,
            "cv": asdict(fitted.cv) if fitted.cv else None,
            "threshold": head.anomaly.threshold,
            "threshold_percentile": cfg.threshold_percentile,
            "anomaly_auroc_labelled": fitted.anomaly_auroc,
            "labelled": int(sum(lab is not None for lab in labels)),
            "bank_size": len(head.anomaly.bank),
            "images": len(ids),
            "dropped_classes": fitted.dropped,
            "score_quantiles": {str(q): float(np.quantile(fitted.scores, q / 100)) for q in (50, 90, 95, 99)},
        }
        atomic_write_json(run_dir / "metrics.json", metrics)
        run.report(Artifact(kind="head", path=project.relative(run_dir / "head.npz")))
        if fitted.cv:
            run.report(
                Log(
                    level="INFO",
                    message=(
                        f"{head.classifier.kind} classifier: cross-validated balanced accuracy "
                        f"{fitted.cv.balanced_accuracy:.3f} over {fitted.cv.folds} folds"
                    ),
                )
            )
        run.report(Progress(stage="fewshot", step=1, total=1, message="done"))
    project.set_latest("fewshot", run_dir)
    return FewShotResult(
        run_dir=project.relative(run_dir),
        head=project.relative(run_dir / "head.npz"),
        checkpoint=project.relative(ckpt_path),
        classes=head.classes,
        classifier=head.classifier.kind,
        cv_balanced_accuracy=fitted.cv.balanced_accuracy if fitted.cv else None,
        candidates=fitted.candidates,
        threshold=head.anomaly.threshold,
        anomaly_auroc=fitted.anomaly_auroc,
        labelled=sum(lab is not None for lab in labels),
        bank_size=len(head.anomaly.bank),
        images=len(ids),
    )


def _write_scores(
    path: Path, project: Project, ids: np.ndarray, head: InspectionHead, emb: np.ndarray, scores: np.ndarray
) -> None:
    """Per-image predictions (held-out anomaly scores) for the label page: most unusual, most uncertain."""
    proba = head.classifier.predict_proba(emb)
    recs = {r.id: r for r in project.store.images(status="ok", unique=True)}
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "relpath", "anomaly_score", "label", "confidence", *[f"p_{c}" for c in head.classes]])
        for k, i in enumerate(ids.tolist()):
            rec = recs.get(i)
            w.writerow(
                [
                    i,
                    rec.relpath if rec else "",
                    f"{scores[k]:.6f}",
                    head.classes[int(proba[k].argmax())],
                    f"{proba[k].max():.5f}",
                    *[f"{p:.5f}" for p in proba[k]],
                ]
            )


def load_head(project: Project, run_dir: Path | None = None) -> tuple[InspectionHead, Path]:
    """The head of ``run_dir`` (default: latest fewshot run) and the checkpoint it was fitted on."""
    import json

    run_dir = run_dir or project.latest("fewshot")
    if run_dir is None or not (run_dir / "head.npz").is_file():
        raise DataError(f"{project.root}: no trained classifier yet (run `sslinspect train` first)")
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    return InspectionHead.load(run_dir / "head.npz"), project.resolve(cfg["checkpoint"])
