"""Pretraining as a job: run folder, image cache, model, loop, checkpoints and the latest-run pointer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from sslinspect.backbones import build_backbone, load_backbone_weights
from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import PretrainConfig
from sslinspect.configio import from_dict, to_dict
from sslinspect.data.cache import build_cache
from sslinspect.data.loader import BatchSource
from sslinspect.errors import Cancelled, CheckpointError, DataError, ProjectError
from sslinspect.events import Artifact, Log, Reporter, null_reporter
from sslinspect.methods import load_method
from sslinspect.project import Project
from sslinspect.runs import open_run
from sslinspect.train.checkpoint import load_checkpoint
from sslinspect.train.loop import train_loop
from sslinspect.train.runtime import describe_device, pick_device, seed_everything, set_threads, versions
from sslinspect.train.snapshot import EmbeddingSnapshots

MIN_IMAGES = 8
CKPT = "checkpoints/last.pt"


@dataclass(frozen=True, slots=True)
class PretrainResult:
    """Outcome of a pretraining run; paths are relative to the project root."""

    run_dir: str
    checkpoint: str
    status: str  # "completed" | "time_budget" (a cancelled run raises Cancelled)
    epochs_done: int
    steps: int
    final_loss: float
    seconds: float
    images: int
    device: str


def latest_checkpoint(project: Project) -> Path:
    """The checkpoint of the latest pretraining run that has one.

    Raises:
        ProjectError: if no pretraining run has saved a checkpoint yet.
    """
    latest = project.latest("pretrain")
    candidates = ([latest] if latest else []) + list(reversed(project.runs("pretrain")))
    for run in candidates:
        if (run / CKPT).is_file():
            return run / CKPT
    raise ProjectError(f"{project.root}: no pretraining checkpoint yet (run `sslinspect pretrain` first)")


def run_pretrain(
    project: Project,
    cfg: PretrainConfig,
    *,
    resume: bool = False,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> PretrainResult:
    """Pretrain a backbone on the project's images (see :func:`sslinspect.api.pretrain`)."""
    ckpt = None
    if resume:
        ckpt_path = latest_checkpoint(project)
        ckpt = load_checkpoint(ckpt_path)
        run_dir = ckpt_path.parent.parent
        stored = from_dict(PretrainConfig, ckpt["config"], section="pretrain")
        # The architecture and data recipe come from the checkpoint; how long and where to run come from `cfg`.
        cfg = dataclasses.replace(
            stored,
            epochs=max(cfg.epochs, int(ckpt["epochs_done"])),
            max_minutes=cfg.max_minutes,
            device=cfg.device,
            threads=cfg.threads,
        )
    else:
        run_dir = project.new_run_dir("pretrain", cfg.method)
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    project.set_latest("pretrain", run_dir)
    config = {"pretrain": to_dict(cfg), "versions": versions(), "project": project.name}
    with open_run("pretrain", run_dir, config, report=report, resume=resume) as run:
        cache = build_cache(project, cfg.image_size, report=run.report, cancel=cancel)
        if len(cache) < MIN_IMAGES:
            raise DataError(
                f"{project.root}: pretraining needs at least {MIN_IMAGES} readable images, found {len(cache)}"
            )
        if cfg.batch_size > len(cache):
            run.report(
                Log(level="WARNING", message=f"batch size {cfg.batch_size} > {len(cache)} images; using {len(cache)}")
            )
        spec = load_method(cfg.method)
        backbone = build_backbone(cfg.backbone, cfg.image_size)
        if cfg.weights and ckpt is None:
            missing = load_backbone_weights(backbone, Path(cfg.weights))
            run.report(
                Log(level="INFO", message=f"started from {cfg.weights} ({len(missing)} tensors left at random init)")
            )
        model = spec.make_model(backbone, cfg)
        source = BatchSource(cache.images, cfg.batch_size, device, seed=cfg.seed)
        run.report(
            Log(
                level="INFO",
                message=(
                    f"pretraining {cfg.method}/{cfg.backbone} at {cfg.image_size}px on {len(cache)} images, "
                    f"{describe_device(device)}, batch {source.batch_size}, {cfg.epochs} epochs"
                    + (f", resuming after epoch {ckpt['epochs_done']}" if ckpt else "")
                    + (" (image cache in GPU memory)" if source.resident else "")
                ),
            )
        )
        meta = {
            "method": cfg.method,
            "backbone": cfg.backbone,
            "image_size": cfg.image_size,
            "feature_dim": model.feature_dim,
            "config": to_dict(cfg),
            "versions": versions(),
            "images": len(cache),
        }
        snapshots = EmbeddingSnapshots(run_dir, cache.images, cache.ids, seed=cfg.seed)

        def on_epoch_end(epoch: int) -> None:
            run.report(Artifact(kind="checkpoint", path=project.relative(run_dir / CKPT)))
            snap = snapshots.maybe_write(model.backbone, epoch, device, force=epoch == cfg.epochs)
            if snap is not None:
                run.report(Artifact(kind="embedding_map", path=project.relative(snap)))

        try:
            result = train_loop(
                model,
                spec.make_views(cfg),
                source,
                spec,
                cfg,
                device=device,
                checkpoint_path=run_dir / CKPT,
                checkpoint_meta=meta,
                resume=ckpt,
                report=run.report,
                cancel=cancel,
                on_epoch_end=on_epoch_end,
            )
        except torch.cuda.OutOfMemoryError as exc:
            raise DataError(
                f"GPU out of memory at batch size {cfg.batch_size}, {cfg.image_size}px: "
                "lower --batch-size or --image-size"
            ) from exc
        except (KeyError, RuntimeError) as exc:
            if ckpt is not None:
                raise CheckpointError(f"{run_dir / CKPT}: cannot resume ({str(exc).splitlines()[0][:160]})") from exc
            raise
        if result.reason == "cancelled":
            raise Cancelled(f"pretraining cancelled after {result.epochs_done} epoch(s); checkpoint kept")
        if result.reason == "time_budget":
            run.report(
                Log(
                    level="INFO",
                    message=f"time budget of {cfg.max_minutes:g} min reached after {result.epochs_done} epoch(s)",
                )
            )
    return PretrainResult(
        run_dir=project.relative(run_dir),
        checkpoint=project.relative(run_dir / CKPT),
        status=result.reason,
        epochs_done=result.epochs_done,
        steps=result.steps_done,
        final_loss=result.last_loss,
        seconds=result.seconds,
        images=len(cache),
        device=describe_device(device),
    )
