"""Pretraining as a job: run folder, image cache, model, loop, checkpoints and the latest-run pointer.

Under ``torchrun`` every process runs this; rank 0 owns the run folder, the events and every file written, the
other ranks only train (see :mod:`sslinspect.train.distributed`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import PretrainConfig
from sslinspect.configio import from_dict, to_dict
from sslinspect.data.cache import ImageCache, build_cache
from sslinspect.data.frames import dominant_frame_size, native_image_size
from sslinspect.data.loader import BatchSource
from sslinspect.errors import Cancelled, DataError
from sslinspect.events import Artifact, Log, Metric, Reporter, null_reporter
from sslinspect.methods import load_method
from sslinspect.model.backbones import build_backbone
from sslinspect.model.checkpoint import load_backbone_weights, load_checkpoint
from sslinspect.model.runtime import (
    configure_cuda,
    describe_device,
    pick_device,
    seed_everything,
    set_threads,
    versions,
)
from sslinspect.names import GOOD
from sslinspect.project import Project
from sslinspect.runs import CHECKPOINT, MIN_IMAGES, latest_checkpoint, open_run
from sslinspect.train.distributed import DistInfo, init_distributed, shutdown_distributed, waiting_for_main
from sslinspect.train.health import KnnMonitor, labelled_set
from sslinspect.train.loop import LoopResult, train_loop
from sslinspect.train.snapshot import EmbeddingSnapshots


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


def resolve_image_size(project: Project, cfg: PretrainConfig, report: Reporter = null_reporter) -> PretrainConfig:
    """``image_size = 0`` means native: the project's dominant frame size (see :mod:`sslinspect.data.frames`)."""
    if cfg.image_size:
        return cfg
    frame = dominant_frame_size(project.store.images())
    size = native_image_size(frame)
    where = f"frames are mostly {frame[0]}×{frame[1]} px" if frame else "no frame size known yet"
    shrink = " (larger frames are shrunk to it)" if frame and max(frame) > size else ""
    report(Log(level="INFO", message=f"{where}: training at native resolution, {size} px{shrink}"))
    return dataclasses.replace(cfg, image_size=size)


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
    cfg = resolve_image_size(project, cfg, report)
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    dist = init_distributed(device.type)
    try:
        if dist.enabled and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
        configure_cuda(device)
        if not dist.is_main:  # the other ranks train, silently, and write nothing
            return _train(project, cfg, ckpt, None, null_reporter, cancel, device, dist)
        if ckpt is None:
            run_dir = project.new_run_dir("pretrain", cfg.method)
        project.set_latest("pretrain", run_dir)
        config: dict[str, Any] = {"pretrain": to_dict(cfg), "versions": versions(), "project": project.name}
        if dist.enabled:
            config["world_size"] = dist.world_size
        with open_run("pretrain", run_dir, config, report=report, resume=resume) as run:
            return _train(project, cfg, ckpt, run_dir, run.report, cancel, device, dist)
    finally:
        shutdown_distributed()


def _cache(project: Project, cfg: PretrainConfig, report: Reporter, cancel: CancelToken, dist: DistInfo) -> ImageCache:
    """Rank 0 builds (or updates) the cache; the others wait (however long it takes) and open the finished one."""
    with waiting_for_main():
        cache = build_cache(project, cfg.image_size, report=report, cancel=cancel) if dist.is_main else None
    return cache or build_cache(project, cfg.image_size, cancel=cancel)


def _train(
    project: Project,
    cfg: PretrainConfig,
    ckpt: dict[str, Any] | None,
    run_dir: Path | None,
    report: Reporter,
    cancel: CancelToken,
    device: torch.device,
    dist: DistInfo,
) -> PretrainResult:
    cache = _cache(project, cfg, report, cancel, dist)
    spec = load_method(cfg.method)
    rows = _training_rows(project, cache, cfg, spec.normal_only, report)
    left_out = len(cache) - len(rows)
    backbone = build_backbone(cfg.backbone, cfg.image_size)
    if cfg.weights and ckpt is None:
        missing = load_backbone_weights(backbone, Path(cfg.weights))
        report(Log(level="INFO", message=f"started from {cfg.weights} ({len(missing)} tensors left at random init)"))
    model = spec.make_model(backbone, cfg)
    source = BatchSource(
        cache.images, cfg.batch_size, device, seed=cfg.seed, rank=dist.rank, world_size=dist.world_size, rows=rows
    )
    if source.global_batch_size != min(cfg.batch_size, len(rows)):
        report(
            Log(
                level="WARNING",
                message=f"batch size {cfg.batch_size} is not a multiple of {dist.world_size} processes; "
                f"using {source.global_batch_size}",
            )
        )
    procs = f", {dist.world_size} processes × batch {source.batch_size}" if dist.enabled else ""
    report(
        Log(
            level="INFO",
            message=(
                f"pretraining {cfg.method}/{cfg.backbone} at {cfg.image_size}px on {len(rows)} images"
                + (
                    f" ({left_out} labelled defects left out: taught as normal, they would be missed)"
                    if left_out
                    else ""
                )
                + ", "
                f"{describe_device(device)}, batch {source.global_batch_size}{procs}, {cfg.epochs} epochs"
                + (f", resuming after epoch {ckpt['epochs_done']}" if ckpt else "")
                + {"device": " (image cache in GPU memory)", "pinned": " (image cache in pinned host memory)"}.get(
                    source.tier, ""
                )
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
        "images": len(rows),
    }
    ckpt_path = (run_dir or project.root / "runs" / "unused") / CHECKPOINT  # only rank 0 (which has a run_dir) saves
    on_epoch_end = _epoch_end_hook(project, cfg, cache, model, device, run_dir, report) if run_dir else None
    result = train_loop(
        model,
        spec.make_views(cfg),
        source,
        spec,
        cfg,
        device=device,
        checkpoint_path=ckpt_path,
        checkpoint_meta=meta,
        resume=ckpt,
        report=report,
        cancel=cancel,
        on_epoch_end=on_epoch_end,
        dist=dist,
    )
    return _finish(project, cfg, result, ckpt_path, len(rows), device, report)


def _training_rows(
    project: Project, cache: ImageCache, cfg: PretrainConfig, normal_only: bool, report: Reporter
) -> np.ndarray:
    """The cache rows a method trains on (a warning when they are fewer than a batch).

    A method that teaches its images as normal (``normal_only``: it paints synthetic defects on them) never sees
    an image a person labelled as a defect: taught as normal, that kind of defect would be missed. Unlabelled
    images stay (most are good; the head keeps the most unusual ones out of its calibration).

    Raises:
        DataError: if fewer than ``MIN_IMAGES`` are left.
    """
    rows = np.arange(len(cache), dtype=np.int64)
    if normal_only:
        labels = project.store.labels()
        rows = rows[np.array([labels.get(int(i), GOOD) == GOOD for i in cache.ids], bool)]
    left_out = len(cache) - len(rows)
    if len(rows) < MIN_IMAGES:
        raise DataError(
            f"{project.root}: pretraining needs at least {MIN_IMAGES} readable images, found {len(rows)}"
            + (f" ({left_out} labelled defects left out: {cfg.method} trains on normal images)" if left_out else "")
        )
    if cfg.batch_size > len(rows):
        report(Log(level="WARNING", message=f"batch size {cfg.batch_size} > {len(rows)} images; using {len(rows)}"))
    return rows


def _epoch_end_hook(
    project: Project,
    cfg: PretrainConfig,
    cache: ImageCache,
    model: torch.nn.Module,
    device: torch.device,
    run_dir: Path,
    report: Reporter,
) -> Callable[[int], None]:
    """Rank 0's work after each epoch: announce the checkpoint, k-NN on the labels, embedding-map snapshot.

    Labels are read again every epoch, so labels given while pretraining runs count from the next epoch on.
    """
    snapshots = EmbeddingSnapshots(run_dir, cache.images, cache.ids, seed=cfg.seed)
    if labelled_set(cache.ids, project.store.labels()) is None:
        report(Log(level="INFO", message="k-NN monitor off until ≥ 2 classes have ≥ 2 labelled images each"))
    backbone: torch.nn.Module = model.backbone  # type: ignore[assignment]

    def on_epoch_end(epoch: int) -> None:
        report(Artifact(kind="checkpoint", path=project.relative(run_dir / CHECKPOINT)))
        labelled = labelled_set(cache.ids, project.store.labels())
        if labelled is not None:
            acc = KnnMonitor(cache.images, labelled)(backbone, device)
            report(Metric(stage="pretrain", name="knn_acc", value=acc, epoch=epoch))
        snap = snapshots.maybe_write(backbone, epoch, device, force=epoch == cfg.epochs)
        if snap is not None:
            report(Artifact(kind="embedding_map", path=project.relative(snap)))

    return on_epoch_end


def _finish(
    project: Project,
    cfg: PretrainConfig,
    result: LoopResult,
    ckpt_path: Path,
    images: int,
    device: torch.device,
    report: Reporter,
) -> PretrainResult:
    if result.reason == "cancelled":
        raise Cancelled(f"pretraining cancelled after {result.epochs_done} epoch(s); checkpoint kept")
    if result.reason == "time_budget":
        report(
            Log(
                level="INFO",
                message=f"time budget of {cfg.max_minutes:g} min reached after {result.epochs_done} epoch(s)",
            )
        )
    return PretrainResult(
        run_dir=project.relative(ckpt_path.parent.parent),
        checkpoint=project.relative(ckpt_path),
        status=result.reason,
        epochs_done=result.epochs_done,
        steps=result.steps_done,
        final_loss=result.last_loss,
        seconds=result.seconds,
        images=images,
        device=describe_device(device),
    )
