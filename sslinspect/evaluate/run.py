"""``sslinspect evaluate``: score a pretraining run's backbone on the project's labels with one protocol.

Each evaluation is its own run folder (``runs/evaluate/<id>/``: config, events, status, ``metrics.json``) that names
the pretraining run it scored; pretraining run folders stay untouched after they finish.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import AugmentConfig, EvaluateConfig, PretrainConfig
from sslinspect.configio import from_dict, to_dict
from sslinspect.data.cache import build_cache
from sslinspect.errors import DataError, ProjectError
from sslinspect.evaluate.protocols import finetune_oof, knn_oof, linear_oof, score, stratified_folds
from sslinspect.events import Artifact, Log, Reporter, null_reporter
from sslinspect.fsutil import atomic_write_json
from sslinspect.model.checkpoint import build_backbone_from_checkpoint, load_checkpoint
from sslinspect.model.embed import embed_images
from sslinspect.model.runtime import pick_device, seed_everything, versions
from sslinspect.project import Project
from sslinspect.runs import CHECKPOINT, latest_checkpoint, open_run
from sslinspect.train.health import labelled_set

METRICS = "metrics.json"


@dataclass(frozen=True, slots=True)
class EvaluateResult:
    """Outcome of one evaluation; paths relative to the project root."""

    run_dir: str
    pretrain_run: str
    protocol: str
    folds: int
    accuracy: float
    balanced_accuracy: float
    classes: tuple[str, ...]
    labelled: int
    recall: dict[str, float]
    confusion: list[list[int]]


def find_pretrain_run(project: Project, run: str | None) -> Path:
    """The checkpoint of pretraining run ``run`` (a run id under ``runs/pretrain`` or a path), else the latest.

    Raises:
        ProjectError: if the run does not exist or has no checkpoint.
    """
    if not run:
        return latest_checkpoint(project)
    candidates = [project.root / "runs" / "pretrain" / run, Path(run), project.resolve(run)]
    for folder in candidates:
        if (folder / CHECKPOINT).is_file():
            return folder / CHECKPOINT
    known = ", ".join(p.name for p in project.runs("pretrain")) or "none"
    raise ProjectError(f"{project.root}: no pretraining run {run!r} with a checkpoint (runs: {known})")


def run_evaluate(
    project: Project,
    cfg: EvaluateConfig,
    *,
    run: str | None = None,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> EvaluateResult:
    """Evaluate a pretraining run (see :func:`sslinspect.api.evaluate`)."""
    seed_everything(cfg.seed)
    ckpt_path = find_pretrain_run(project, run)
    ckpt = load_checkpoint(ckpt_path)
    pretrain_dir = ckpt_path.parent.parent
    image_size = int(ckpt["image_size"])
    cache = build_cache(project, image_size, cancel=cancel)
    labelled = labelled_set(cache.ids, project.store.labels())
    if labelled is None:
        raise DataError(f"{project.root}: evaluation needs ≥ 2 classes with ≥ 2 labelled images each")
    device = pick_device(cfg.device)
    run_dir = project.new_run_dir("evaluate", f"{cfg.protocol}-{pretrain_dir.name}")
    config = {
        "evaluate": to_dict(cfg),
        "pretrain_run": project.relative(pretrain_dir),
        "checkpoint": project.relative(ckpt_path),
        "versions": versions(),
    }
    with open_run("evaluate", run_dir, config, report=report) as ev:
        y, classes = labelled.y, labelled.classes
        images = np.ascontiguousarray(cache.images[labelled.rows])
        splits = stratified_folds(y, cfg.folds, cfg.seed)
        ev.report(
            Log(
                level="INFO",
                message=f"{cfg.protocol} on {len(y)} labelled images of {len(classes)} classes, "
                f"{len(splits)}-fold CV, backbone of {pretrain_dir.name}",
            )
        )
        if cfg.protocol == "finetune":
            aug = _augment_of(ckpt)
            proba = finetune_oof(
                lambda: build_backbone_from_checkpoint(ckpt),
                images,
                y,
                len(classes),
                splits,
                cfg,
                aug,
                device=device,
                report=ev.report,
                cancel=cancel,
            )
        else:
            backbone = build_backbone_from_checkpoint(ckpt)
            emb = embed_images(backbone, images, device=device, batch_size=cfg.batch_size, cancel=cancel)
            if cfg.protocol == "knn":
                proba = knn_oof(emb, y, len(classes), splits, cfg)
            else:
                proba = linear_oof(emb, y, classes, splits, cfg.seed)
        s = score(cfg.protocol, len(splits), y, proba, classes)
        result = EvaluateResult(
            run_dir=project.relative(run_dir),
            pretrain_run=project.relative(pretrain_dir),
            protocol=cfg.protocol,
            folds=s.folds,
            accuracy=s.accuracy,
            balanced_accuracy=s.balanced_accuracy,
            classes=classes,
            labelled=len(y),
            recall=s.recall,
            confusion=s.confusion,
        )
        atomic_write_json(run_dir / METRICS, dataclasses.asdict(result))
        ev.report(Artifact(kind="metrics", path=project.relative(run_dir / METRICS)))
        ev.report(
            Log(
                level="INFO",
                message=f"{cfg.protocol}: balanced accuracy {s.balanced_accuracy:.3f}, accuracy {s.accuracy:.3f}",
            )
        )
    return result


def _augment_of(ckpt: dict[str, object]) -> AugmentConfig:
    """The pretraining run's augmentations (fine-tuning uses a milder crop of the same recipe)."""
    stored = ckpt.get("config")
    if isinstance(stored, dict):
        return from_dict(PretrainConfig, stored, section="pretrain").augment
    return AugmentConfig()
