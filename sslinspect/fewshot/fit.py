"""Training the inspection head as a job: load the pretrained backbone, fit anomaly model, thresholds and few-shot
classifier (:mod:`sslinspect.fewshot.head`), and write the run folder the GUI, the export and the report read."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import FewShotConfig
from sslinspect.configio import to_dict
from sslinspect.data.cache import build_cache
from sslinspect.errors import Cancelled
from sslinspect.events import Artifact, Log, Progress, Reporter, null_reporter
from sslinspect.fewshot.anomaly import histogram
from sslinspect.fewshot.head import HeadFit, fit_head
from sslinspect.fewshot.model import InspectionHead
from sslinspect.fewshot.patchcore import FeatureNet
from sslinspect.fewshot.segmap import SegmentationNet, decoder_from_checkpoint, has_decoder
from sslinspect.fewshot.stored import load_head as load_head  # re-exported: callers import it from here
from sslinspect.fewshot.suggest_step import candidate_rows, suggest_types, write_suggestions
from sslinspect.fewshot.typing_step import (
    SharpMaps,
    TypingStep,
    ViewRows,
    describe_views,
    fit_defect_types,
    norm_map,
    save_typing,
    view_images,
)
from sslinspect.fsutil import atomic_path, atomic_write_json
from sslinspect.model.checkpoint import build_backbone_from_checkpoint, load_checkpoint
from sslinspect.model.runtime import pick_device, seed_everything, versions
from sslinspect.project import GOOD, Project
from sslinspect.runs import TYPING_SUGGESTIONS, latest_checkpoint, open_run, refuse_running

#: Images a batch when the kind probabilities of the described images are computed.
KIND_BATCH = 16


@dataclass(frozen=True, slots=True)
class FewShotResult:
    """Outcome of ``sslinspect fit``; paths relative to the project root."""

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
    anomaly_kind: str = "knn"
    review_threshold: float | None = None
    tiles: int = 1
    descriptor: str = "global"
    memory_estimate_mb: float | None = None
    suspected_defects: int = 0
    typing_classifier: str | None = None
    typing_cv_balanced_accuracy: float | None = None
    # the typing head's confidence cut (above 1: no name is sure); out of fold, the share of labelled regions named
    # sure and the share right among them
    typing_sure_cut: float | None = None
    typing_sure_coverage: float | None = None
    typing_sure_accuracy: float | None = None


def run_fit(
    project: Project,
    cfg: FewShotConfig,
    *,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
    allow_running: bool = False,
) -> FewShotResult:
    """Fit the inspection head from the latest pretraining run (see :func:`sslinspect.api.fit_fewshot`)."""
    seed_everything(cfg.seed)
    ckpt_path = latest_checkpoint(project)
    ckpt = load_checkpoint(ckpt_path)
    if not allow_running:
        refuse_running(ckpt_path.parent.parent, "pretraining", ckpt.get("epochs_done"))
    image_size = int(ckpt["image_size"])
    device = pick_device(cfg.device)
    run_dir = project.new_run_dir("fewshot", str(ckpt["method"]))
    config = {"fit": to_dict(cfg), "checkpoint": project.relative(ckpt_path), "versions": versions()}
    with open_run("fewshot", run_dir, config, report=report) as run:
        net = _feature_net(ckpt, image_size, cfg, run.report)
        cache = build_cache(project, net.input_size, report=run.report, cancel=cancel)
        ids = np.array(cache.ids, dtype=np.int64)
        label_map = project.store.labels()
        labels = [label_map.get(int(i)) for i in ids]
        orphan = len(label_map) - sum(lab is not None for lab in labels)
        if orphan:
            run.report(Log(level="WARNING", message=f"{orphan} labelled image(s) are not readable any more; skipped"))
        fitted = fit_head(net, cache.images, labels, cfg, device=device, report=run.report, cancel=cancel)
        _report_dropped(fitted, cfg, run.report)
        head = fitted.head
        sharp = _sharp_maps(fitted, _kind_maps(net, fitted, cache.images, labels, device, cancel))
        naming = _typing_step(net, fitted, sharp, cache.images, ids, labels, cfg, device, run.report, cancel)
        _write_run(run_dir, project, ids, fitted, naming, labels, cfg)
        if naming is not None:
            _write_suggestions(run_dir, fitted, sharp, naming, cache.images, ids, labels, run.report)
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
    sure = _sure_shares(naming)
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
        anomaly_kind=head.anomaly.kind,
        review_threshold=head.anomaly.review_threshold if cfg.review_percentile else None,
        tiles=head.tiles,
        descriptor=head.descriptor,
        memory_estimate_mb=fitted.estimate.peak_mb if fitted.estimate else None,
        suspected_defects=len(fitted.suspected),
        typing_classifier=naming.fit.head.kind if naming else None,
        typing_cv_balanced_accuracy=naming.cv_balanced_accuracy if naming else None,
        typing_sure_cut=float(naming.fit.head.sure_cut) if naming else None,
        typing_sure_coverage=sure[0],
        typing_sure_accuracy=sure[1],
    )


def _report_dropped(fitted: HeadFit, cfg: FewShotConfig, report: Reporter) -> None:
    """A warning per class left out for too few labels."""
    for cls, n in fitted.dropped.items():
        report(
            Log(
                level="WARNING",
                message=f"class {cls!r} has {n} label(s), fewer than {cfg.min_shots}: left out (label more examples)",
            )
        )


def _sure_shares(naming: TypingStep | None) -> tuple[float | None, float | None]:
    """Out-of-fold coverage and accuracy of the sure names (None: no typing head, or not measurable)."""
    if naming is None:
        return None, None
    coverage, accuracy = naming.fit.selective()
    return (None if np.isnan(coverage) else coverage), (None if np.isnan(accuracy) else accuracy)


def _typing_step(
    net: FeatureNet | SegmentationNet,
    fitted: HeadFit,
    sharp: SharpMaps | None,
    images: np.ndarray,
    ids: np.ndarray,
    labels: list[str | None],
    cfg: FewShotConfig,
    device: torch.device,
    report: Reporter,
    cancel: CancelToken,
) -> TypingStep | None:
    """Name the defects: the typing head fitted on the labelled defects' regions (None without two types)."""
    defect_types = [c for c in fitted.head.classes if c != GOOD]
    if len(defect_types) < 2:
        return None
    if fitted.maps is None:
        report(
            Log(
                level="WARNING",
                message="too many images to keep their anomaly maps: defect types not fitted, no suggestions",
            )
        )
        return None
    a = fitted.head.anomaly
    views = _labelled_views(net, fitted, images, labels, cfg, device, report, cancel)
    step = fit_defect_types(
        images,
        ids,
        fitted.maps,
        labels,
        fitted.head.classes,
        map_low=a.map_low,
        map_high=a.map_high,
        sharp=sharp,
        views=views,
        seed=cfg.seed,
    )
    if step is not None:
        cv = step.cv_balanced_accuracy
        missed = int((~step.located).sum())
        report(
            Log(
                level="INFO",
                message=f"defect types from their regions: {step.fit.head.kind}, cross-validated balanced accuracy "
                + (f"{cv:.3f}" if cv is not None else "n/a")
                + f"; {step.sure_summary()}"
                + (f"; {missed} labelled defect(s) scored low by the anomaly map" if missed else "")
                + (f"; also learnt from {len(views.of)} views of them (flipped, re-exposed)" if views else ""),
            )
        )
    return step


def _labelled_views(
    net: FeatureNet | SegmentationNet,
    fitted: HeadFit,
    images: np.ndarray,
    labels: list[str | None],
    cfg: FewShotConfig,
    device: torch.device,
    report: Reporter,
    cancel: CancelToken,
) -> ViewRows | None:
    """The described :func:`~sslinspect.fewshot.typing_step.view_images` of every labelled defect of a type the
    head knows, from the defect-aware model's maps (None for other models). Made one labelled image at a time: only
    descriptors are kept."""
    a = fitted.head.anomaly
    if not isinstance(net, SegmentationNet) or not net.sharp or not a.has_sharp or fitted.sharp is None:
        return None
    types = set(fitted.head.classes) - {GOOD}
    rows = [i for i, lab in enumerate(labels) if lab in types]
    rng = np.random.default_rng(cfg.seed)
    of, x = [], []
    for done, r in enumerate(rows, 1):
        if cancel.is_cancelled():
            raise Cancelled("views cancelled")
        imgs = view_images(images[r], rng)
        raw, kinds = _run_segment(net, imgs, device, a.has_kinds)  # one batch: the image's views
        spread, sharp = raw[:, 0].numpy(), raw[:, 1].numpy()
        x.append(describe_views(imgs, a.normalise(spread), norm_map(sharp, a.sharp_low, a.sharp_high), kinds))
        of.extend([r] * len(imgs))
        report(
            Progress(
                stage="views", step=done, total=len(rows), message=f"views of labelled defects: {done}/{len(rows)}"
            )
        )
    return ViewRows(np.array(of, np.int64), np.concatenate(x)) if x else None


def _run_segment(
    net: SegmentationNet, images: np.ndarray, device: torch.device, kinds: bool
) -> tuple[torch.Tensor, np.ndarray | None]:
    """The raw maps ``(B, 2, S, S)`` (on the CPU) and, with ``kinds``, the kind probabilities of a uint8 batch;
    fp32 like :func:`~sslinspect.fewshot.bank.iter_features`."""
    batch = torch.from_numpy(np.asarray(images)).to(device)
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        if not kinds:
            return net(batch)[1].float().cpu(), None
        _, raw, probs = net.forward_kinds(batch)
    return raw.float().cpu(), probs.float().cpu().numpy()


def _kind_maps(
    net: FeatureNet | SegmentationNet,
    fitted: HeadFit,
    images: np.ndarray,
    labels: list[str | None],
    device: torch.device,
    cancel: CancelToken,
) -> dict[int, np.ndarray] | None:
    """The kind probabilities of every image a region is described from (the labelled defects of a kept type and
    the suggestion candidates), keyed by row; None when the model has none, no maps are kept or fewer than two
    types are labelled. A second pass over those rows only: keeping every image's kind maps in the scoring pass
    would add a third to the memory the kept maps take."""
    a = fitted.head.anomaly
    types = set(fitted.head.classes) - {GOOD}
    if not isinstance(net, SegmentationNet) or not a.has_kinds or fitted.maps is None or len(types) < 2:
        return None  # (with fewer than two types nothing is named, as in _typing_step)
    labelled = [i for i, lab in enumerate(labels) if lab in types]
    rows = np.union1d(np.array(labelled, np.int64), candidate_rows(fitted.scores, labels, a.threshold))
    out: dict[int, np.ndarray] = {}
    for start in range(0, len(rows), KIND_BATCH):
        if cancel.is_cancelled():
            raise Cancelled("kind maps cancelled")
        chunk = rows[start : start + KIND_BATCH]
        _, probs = _run_segment(net, images[chunk], device, True)
        assert probs is not None
        out.update({int(r): p for r, p in zip(chunk.tolist(), probs, strict=True)})
    return out


def _sharp_maps(fitted: HeadFit, kinds: dict[int, np.ndarray] | None = None) -> SharpMaps | None:
    """The defect-aware model's held-out sharp maps with their normalisation and the ``kinds`` probabilities
    (None: the model has no sharp map)."""
    a = fitted.head.anomaly
    if not a.has_sharp or fitted.sharp is None:
        return None
    return SharpMaps(fitted.sharp, a.sharp_low, a.sharp_high, kinds)


def _write_suggestions(
    run_dir: Path,
    fitted: HeadFit,
    sharp: SharpMaps | None,
    naming: TypingStep,
    images: np.ndarray,
    ids: np.ndarray,
    labels: list[str | None],
    report: Reporter,
) -> None:
    """``typing_suggestions.csv``: the flagged and highest-scoring unlabelled images, their main region named."""
    if fitted.maps is None:  # _typing_step fits no types without maps; kept for the type checker
        return
    a = fitted.head.anomaly
    rows = candidate_rows(fitted.scores, labels, a.threshold)
    named = suggest_types(
        naming.fit.head, images, fitted.maps, rows, map_low=a.map_low, map_high=a.map_high, sharp=sharp
    )
    write_suggestions(run_dir / TYPING_SUGGESTIONS, naming.fit.head, ids[rows], named)
    report(Log(level="INFO", message=f"defect types suggested for {len(rows)} unlabelled image(s)"))


def _write_run(
    run_dir: Path,
    project: Project,
    ids: np.ndarray,
    fitted: HeadFit,
    naming: TypingStep | None,
    labels: list[str | None],
    cfg: FewShotConfig,
) -> None:
    """The run folder: head, typing head, features, maps, per-image scores and metrics."""
    fitted.head.save(run_dir / "head.npz")
    _save_npy(run_dir / "embeddings.npy", fitted.embeddings)
    _save_npy(run_dir / "embedding_ids.npy", ids)
    if fitted.maps is not None:
        _save_npy(run_dir / "maps.npy", fitted.maps)
    _write_scores(run_dir / "scores.csv", project, ids, fitted.head, fitted, labels)
    metrics = _metrics(fitted, labels, cfg)
    if naming is not None:
        save_typing(run_dir, naming)
        metrics["typing"] = naming.metrics()
    atomic_write_json(run_dir / "metrics.json", metrics)


def _feature_net(
    ckpt: dict[str, Any], image_size: int, cfg: FewShotConfig, report: Reporter
) -> FeatureNet | SegmentationNet:
    """The defect-aware segmentation net when the run trained a decoder (and the config allows it), else the
    patch/global feature net. The segmentation net sees the whole frame at the pretraining size: no tiles."""
    backbone = build_backbone_from_checkpoint(ckpt)
    if has_decoder(ckpt) and cfg.anomaly in ("auto", "segment"):
        if cfg.tiles != 1:
            report(Log(level="INFO", message="the defect-aware map runs on the whole frame: tiles ignored"))
        return SegmentationNet(backbone, decoder_from_checkpoint(ckpt, backbone), image_size, sharp=True)
    return FeatureNet(backbone, image_size, cfg.tiles)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.save(fh, arr)


def _metrics(fitted: HeadFit, labels: list[str | None], cfg: FewShotConfig) -> dict[str, Any]:
    """``metrics.json``: what the GUI's train page and the QA report show."""
    head = fitted.head
    a = head.anomaly
    scores = fitted.scores
    edges = np.linspace(float(np.quantile(scores, 0.001)), float(max(scores.max(), a.threshold * 1.05)), 41)
    is_good = np.array([lab == GOOD for lab in labels])
    is_def = np.array([lab is not None and lab != GOOD for lab in labels])
    return {
        "classes": list(head.classes),
        "classifier": head.classifier.kind,
        "candidates": fitted.candidates,
        "cv": asdict(fitted.cv) if fitted.cv else None,
        "threshold": a.threshold,
        "threshold_percentile": cfg.threshold_percentile,
        "review_threshold": a.review_threshold,
        "review_percentile": cfg.review_percentile,
        "threshold_source": "percentile of held-out scores of presumed-good images",
        "anomaly_kind": a.kind,
        "anomaly_auroc_labelled": fitted.anomaly_auroc,
        "curves": fitted.curves,
        "score_histogram": {
            "edges": np.round(edges, 6).tolist(),
            "calibration": histogram(scores[fitted.calibration], edges),
            "labelled_good": histogram(scores[is_good], edges),
            "labelled_defect": histogram(scores[is_def], edges),
        },
        "map_normalisation": {"low": a.map_low, "high": a.map_high},
        "labelled": int(sum(lab is not None for lab in labels)),
        "bank_size": len(a.bank),
        "memory_estimate": asdict(fitted.estimate) if fitted.estimate else None,
        "images": len(labels),
        "calibration_images": len(fitted.calibration),
        "suspected_defects": len(fitted.suspected),
        "tiles": head.tiles,
        "input_size": head.input_size,
        "descriptor": head.descriptor,
        "decision": head.decision,
        "dropped_classes": fitted.dropped,
        "score_quantiles": {str(q): float(np.quantile(scores, q / 100)) for q in (50, 90, 95, 99)},
    }


def _write_scores(
    path: Path, project: Project, ids: np.ndarray, head: InspectionHead, fitted: HeadFit, labels: list[str | None]
) -> None:
    """Per-image predictions (held-out anomaly scores) for the label page: most unusual, most uncertain."""
    proba = head.classifier.predict_proba(fitted.features)
    recs = {r.id: r for r in project.store.images(status="ok", unique=True)}
    suspected = set(fitted.suspected.tolist())
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "image_id",
                "relpath",
                "anomaly_score",
                "label",
                "confidence",
                *[f"p_{c}" for c in head.classes],
                "suspected",
            ]
        )
        for k, i in enumerate(ids.tolist()):
            rec = recs.get(i)
            w.writerow(
                [
                    i,
                    rec.relpath if rec else "",
                    f"{fitted.scores[k]:.6f}",
                    head.classes[int(proba[k].argmax())],
                    f"{proba[k].max():.5f}",
                    *[f"{p:.5f}" for p in proba[k]],
                    int(k in suspected),
                ]
            )
