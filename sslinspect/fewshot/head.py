"""Fit the inspection head (pure computation, no files): anomaly model first, then thresholds and heatmap
normalisation from held-out scores of presumed-good images, then the few-shot classifier on the labels."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import FewShotConfig
from sslinspect.errors import DataError
from sslinspect.events import Log, Reporter, null_reporter
from sslinspect.fewshot.anomaly import AnomalyModel, calibrate_threshold, knn_scores, score_curves, subsample_bank
from sslinspect.fewshot.bank import MemoryEstimate, PatchBank, build_bank, estimate_memory, iter_features
from sslinspect.fewshot.classifier import CVReport, LinearHead, select_classifier
from sslinspect.fewshot.model import InspectionHead
from sslinspect.fewshot.patchcore import MAP_SIGMA, FeatureNet, defect_descriptor, gaussian_kernel, score_patches
from sslinspect.fewshot.segmap import SegmentationNet
from sslinspect.project import GOOD

#: Keep every held-out map in memory (for the report and the GUI) below this many map cells.
MAX_KEPT_MAP_CELLS = 50_000_000


@dataclass(frozen=True, slots=True)
class HeadFit:
    """A fitted head plus the evidence for it.

    Attributes:
        head: The head.
        cv: Cross-validated classifier metrics (None with fewer than two labelled classes).
        candidates: Balanced accuracy of each classifier kind tried.
        anomaly_auroc: AUROC of held-out anomaly scores, labelled good vs labelled defects.
        scores: Held-out anomaly score of every image.
        dropped: Classes left out for too few labels, with their counts.
        embeddings: Global features of every image (``embeddings.npy``).
        features: The classifier's input for every image (the global features, or the defect descriptors).
        maps: Held-out smoothed raw distance maps ``(N, H, W)`` float16, or None when too large to keep.
        sharp: The defect-aware model's held-out sharp maps (before spreading) ``(N, H, W)`` float16, kept with
            ``maps``; None for the other models.
        suspected: Rows of unlabelled images kept out of the bank and the calibration.
        calibration: Rows whose scores set the threshold.
        curves: ROC/PR curve points on the labels (empty without labelled good and defects).
        estimate: Memory estimate of the patch bank (None for the k-NN model).
    """

    head: InspectionHead
    cv: CVReport | None
    candidates: dict[str, float]
    anomaly_auroc: float | None
    scores: np.ndarray
    dropped: dict[str, int]
    embeddings: np.ndarray
    features: np.ndarray
    maps: np.ndarray | None
    suspected: np.ndarray
    calibration: np.ndarray
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    estimate: MemoryEstimate | None = None
    sharp: np.ndarray | None = None


@dataclass(slots=True)
class _Scored:
    glob: np.ndarray
    desc: np.ndarray | None
    scores: np.ndarray
    medians: np.ndarray
    maps: np.ndarray | None
    sharp: _Scored | None = None  # the segment model's sharp map: its scores, medians and maps (no features)


def _keep(out: _Scored, rows: np.ndarray, g: torch.Tensor, raw: torch.Tensor) -> None:
    """Store one batch's global features, image scores (map maxima), map medians and (when small enough) maps;
    ``raw`` ``(B, 2, H, W)`` holds the segment model's spread and sharp maps (the sharp one goes to ``out.sharp``)."""
    n = len(out.scores)
    first = not out.glob.size
    if first:
        out.glob = np.empty((n, g.shape[1]), np.float32)
        if raw.ndim == 4:
            out.sharp = _Scored(
                np.empty((0, 0), np.float32), None, np.empty(n, np.float32), np.empty(n, np.float32), None
            )
    out.glob[rows] = g.cpu().numpy()
    if raw.ndim == 4 and out.sharp is not None:
        _keep_map(out.sharp, rows, raw[:, 1], first)
        raw = raw[:, 0]
    _keep_map(out, rows, raw, first)


def _keep_map(out: _Scored, rows: np.ndarray, raw: torch.Tensor, first: bool) -> None:
    """Image scores (map maxima), map medians and (when small enough to keep, decided on the ``first`` batch) maps."""
    n = len(out.scores)
    if first and n * raw.shape[1] * raw.shape[2] <= MAX_KEPT_MAP_CELLS:
        out.maps = np.empty((n, *raw.shape[1:]), np.float16)
    out.scores[rows] = raw.amax((1, 2)).cpu().numpy()
    out.medians[rows] = raw.flatten(1).median(1).values.cpu().numpy()
    if out.maps is not None:
        out.maps[rows] = raw.cpu().numpy().astype(np.float16)


def _classes(labels: list[str | None], min_shots: int) -> tuple[tuple[str, ...], dict[str, int], dict[str, int]]:
    counts: dict[str, int] = {}
    for lab in labels:
        if lab is not None:
            counts[lab] = counts.get(lab, 0) + 1
    dropped = {c: n for c, n in counts.items() if n < min_shots}
    kept = sorted((c for c in counts if c not in dropped), key=lambda c: (c != GOOD, c))
    if GOOD not in kept:
        kept.insert(0, GOOD)
    return tuple(kept), counts, dropped


def _score_patch(
    net: FeatureNet,
    images: np.ndarray,
    bank: PatchBank,
    want_desc: bool,
    cfg: FewShotConfig,
    device: torch.device,
    report: Reporter,
    cancel: CancelToken,
) -> _Scored:
    """Held-out maps, scores and features of every image: an image never matches its own bank patches."""
    n = len(images)
    kernel = gaussian_kernel(MAP_SIGMA).to(device)
    out = _Scored(np.empty((0, 0), np.float32), None, np.empty(n, np.float32), np.empty(n, np.float32), None)
    for rows, g, p in iter_features(
        net, images, np.arange(n), device=device, batch_size=cfg.batch_size, stage="score", report=report, cancel=cancel
    ):
        exclude = torch.from_numpy(rows).to(device)
        sm, idx = score_patches(p, bank.bank, kernel, owners=bank.owners, exclude=exclude)
        _keep(out, rows, g, sm)
        if want_desc:
            d = defect_descriptor(g, p, sm, bank.bank, idx).cpu().numpy()
            if out.desc is None:
                out.desc = np.empty((n, d.shape[1]), np.float32)
            out.desc[rows] = d
    return out


def _score_knn(
    net: FeatureNet,
    images: np.ndarray,
    pool: np.ndarray,
    cfg: FewShotConfig,
    device: torch.device,
    report: Reporter,
    cancel: CancelToken,
) -> tuple[_Scored, np.ndarray]:
    """Image-level k-NN: global features of every image; held out (leave-self-out) for bank members."""
    glob: np.ndarray | None = None
    for rows, g, _ in iter_features(
        net,
        images,
        np.arange(len(images)),
        device=device,
        batch_size=cfg.batch_size,
        stage="embed",
        report=report,
        cancel=cancel,
    ):
        if glob is None:
            glob = np.empty((len(images), g.shape[1]), np.float32)
        glob[rows] = g.cpu().numpy()
    assert glob is not None
    bank_rows = pool[subsample_bank(glob[pool], cfg.bank_size, cfg.seed)]
    scores = knn_scores(glob, glob[bank_rows], cfg.knn_k)
    scores[bank_rows] = knn_scores(glob[bank_rows], glob[bank_rows], cfg.knn_k, exclude_self=True)
    return _Scored(glob, None, scores, scores.copy(), None), bank_rows


#: The classifier joins the NG rule only when its out-of-fold balanced accuracy is at least this share of the way from
#: chance to perfect (0.625 for 2 classes, 0.4 for 5)...
CLASSIFIER_TRUST = 0.25
#: ...and it raises the out-of-fold OK/NG balanced accuracy by at least this much.
MIN_GAIN = 0.05


def _decision_rule(
    choice: str, cv: CVReport | None, y: np.ndarray, classes: tuple[str, ...], anomalous: np.ndarray
) -> str:
    """``auto``: add "the classifier picks a defect class" to the NG rule only if the classifier is clearly better
    than chance (out-of-fold balanced accuracy ``CLASSIFIER_TRUST`` of the way from chance to 1) and adding it
    raises the out-of-fold OK/NG balanced accuracy on the labels by at least ``MIN_GAIN``.

    Why both: a few-shot classifier at chance calls most parts a defect when most classes are defects, and with
    5 labels per class a gain of one image is noise; OR-ing such a classifier into the NG rule flags good parts.
    """
    if choice != "auto":
        return choice
    if cv is None or GOOD not in classes:
        return "anomaly"
    bad = y != classes.index(GOOD)
    chance = 1 / len(classes)
    if bad.all() or not bad.any() or cv.balanced_accuracy < chance + CLASSIFIER_TRUST * (1 - chance):
        return "anomaly"
    by_class = anomalous | (np.asarray(cv.oof_pred) != classes.index(GOOD))
    gain = balanced_accuracy_score(bad, by_class) - balanced_accuracy_score(bad, anomalous)
    return "anomaly_or_class" if gain >= MIN_GAIN else "anomaly"


@dataclass(slots=True)
class _AnomalyFit:
    """What the anomaly step leaves for calibration: scores, the bank, and rows kept out as suspected defects."""

    kind: str
    scored: _Scored
    bank: np.ndarray
    suspected: np.ndarray
    estimate: MemoryEstimate | None = None
    spread: int = 0
    kinds: int = 0  # the segment model's kind channels (0: none)


def _score_segment(
    net: SegmentationNet,
    images: np.ndarray,
    cfg: FewShotConfig,
    device: torch.device,
    report: Reporter,
    cancel: CancelToken,
) -> _Scored:
    """Maps, scores and global features of every image from the defect-aware segmentation model."""
    n = len(images)
    out = _Scored(np.empty((0, 0), np.float32), None, np.empty(n, np.float32), np.empty(n, np.float32), None)
    for rows, g, raw in iter_features(
        net, images, np.arange(n), device=device, batch_size=cfg.batch_size, stage="score", report=report, cancel=cancel
    ):
        _keep(out, rows, g, raw)
    return out


def _anomaly_kind(net: FeatureNet | SegmentationNet, cfg: FewShotConfig, report: Reporter) -> str:
    """The anomaly model to fit: the segmentation map when the backbone was trained with one, else as configured."""
    if isinstance(net, SegmentationNet):
        return "segment"
    kind = "patch" if cfg.anomaly in ("auto", "segment") else cfg.anomaly
    if cfg.anomaly == "segment":
        report(Log(level="WARNING", message="no defect-aware decoder in this pretraining run: using the patch model"))
    if kind == "patch" and not net.maps:
        report(
            Log(
                level="WARNING",
                message="this backbone has no feature maps: anomaly score from the image-level k-NN, without "
                "localisation (heatmaps are uniform)",
            )
        )
        kind = "knn"
    return kind


def _suspect_by_score(scores: np.ndarray, pool: np.ndarray, unlabelled: np.ndarray, share: float) -> np.ndarray:
    """The ``share`` most unusual unlabelled images of ``pool`` (kept out of the calibration)."""
    candidates = pool[unlabelled[pool]]
    n_out = round(share * len(candidates))
    if n_out <= 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores[candidates], kind="stable")
    return np.sort(candidates[order[:n_out]])


def _fit_anomaly(
    net: FeatureNet | SegmentationNet,
    images: np.ndarray,
    pool: np.ndarray,
    unlabelled: np.ndarray,
    cfg: FewShotConfig,
    device: torch.device,
    report: Reporter,
    cancel: CancelToken,
) -> _AnomalyFit:
    """Step 1: the anomaly model (segmentation map, patch bank or image k-NN) and held-out scores of every image."""
    kind = _anomaly_kind(net, cfg, report)
    if isinstance(net, SegmentationNet):
        scored = _score_segment(net, images, cfg, device, report, cancel)
        suspected = _suspect_by_score(scored.scores, pool, unlabelled, cfg.contamination)
        empty = np.zeros((0, scored.glob.shape[1]), np.float32)
        kinds = net.decoder.kinds if net.has_kinds and net.sharp else 0
        return _AnomalyFit(kind, scored, empty, suspected, spread=int(net.spread), kinds=kinds)
    if kind == "patch":
        with torch.no_grad():
            _, probe = net(torch.zeros((1, net.input_size, net.input_size, 3), dtype=torch.uint8, device=device))
        estimate = estimate_memory(len(pool), probe.shape[2] * probe.shape[3], probe.shape[1], cfg, device.type)
        report(Log(level="INFO", message=estimate.message()))
        cfg = replace(cfg, batch_size=estimate.batch_size)  # the batch that fits the free GPU memory
        bank = build_bank(net, images, pool, unlabelled, cfg, estimate, device=device, report=report, cancel=cancel)
        scored = _score_patch(net, images, bank, cfg.descriptor == "defect", cfg, device, report, cancel)
        return _AnomalyFit(kind, scored, bank.bank.cpu().numpy().astype(np.float32), bank.suspected, estimate)
    scored, bank_rows = _score_knn(net, images, pool, cfg, device, report, cancel)
    return _AnomalyFit(kind, scored, scored.glob[bank_rows], np.zeros(0, np.int64))


def _calibrate(fit: _AnomalyFit, pool: np.ndarray, cfg: FewShotConfig) -> tuple[AnomalyModel, np.ndarray]:
    """Step 2: thresholds and map normalisation from held-out scores of presumed-good images."""
    calibration = np.setdiff1d(pool, fit.suspected)
    scores = fit.scored.scores[calibration]
    threshold = calibrate_threshold(scores, cfg.threshold_percentile)
    review = calibrate_threshold(scores, cfg.review_percentile) if cfg.review_percentile else threshold
    low = float(np.median(fit.scored.medians[calibration]))
    sharp_low = sharp_high = 0.0
    if fit.scored.sharp is not None:  # the sharp map's own scale: 0 typical good, 1 its threshold on good images
        sharp_low = float(np.median(fit.scored.sharp.medians[calibration]))
        sharp_high = max(
            calibrate_threshold(fit.scored.sharp.scores[calibration], cfg.threshold_percentile), sharp_low + 1e-6
        )
    anomaly = AnomalyModel(
        kind=fit.kind,
        bank=np.ascontiguousarray(fit.bank),
        k=cfg.knn_k if fit.kind == "knn" else 1,
        threshold=threshold,
        review_threshold=min(review, threshold),
        map_low=low,
        map_high=max(threshold, low + 1e-6),
        spread=fit.spread,
        sharp_low=sharp_low,
        sharp_high=sharp_high,
        kinds=fit.kinds,
    )
    return anomaly, calibration


def _fit_classifier(
    x: np.ndarray, labels: list[str | None], classes: tuple[str, ...], counts: dict[str, int], cfg: FewShotConfig
) -> tuple[LinearHead, CVReport | None, dict[str, float], np.ndarray, np.ndarray]:
    """Step 3: the few-shot classifier on the labelled rows of ``x`` (chosen by cross-validation)."""
    lab_idx = np.array([i for i, lab in enumerate(labels) if lab in classes and lab in counts], dtype=np.int64)
    y = np.array([classes.index(str(labels[i])) for i in lab_idx], dtype=np.int64)
    if len(set(y.tolist())) >= 2:
        clf, cv, candidates = select_classifier(cfg.classifier, x[lab_idx], y, classes, cfg.cv_folds, cfg.seed)
        return clf, cv, candidates, lab_idx, y
    # only "good" (or nothing) labelled: the anomaly score does the work
    weight = np.zeros((len(classes), x.shape[1]), np.float32)
    return LinearHead("constant", classes, weight, np.zeros(len(classes), np.float32)), None, {}, lab_idx, y


def _measure(labels: list[str | None], scores: np.ndarray) -> tuple[float | None, dict[str, dict[str, list[float]]]]:
    """Step 4: held-out anomaly AUROC and ROC/PR curves on the labels (good vs any defect)."""
    is_good = np.array([lab == GOOD for lab in labels])
    is_defect = np.array([lab is not None and lab != GOOD for lab in labels])
    if not (is_good.any() and is_defect.any()):
        return None, {}
    sel = is_good | is_defect
    return float(roc_auc_score(is_defect[sel], scores[sel])), score_curves(is_defect[sel], scores[sel])


def fit_head(
    net: FeatureNet | SegmentationNet,
    images: np.ndarray,
    labels: list[str | None],
    cfg: FewShotConfig,
    *,
    device: torch.device,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> HeadFit:
    """Fit anomaly model, thresholds and classifier on ``images`` (uint8, ``net.input_size`` square).

    Args:
        net: Feature extractor around the pretrained backbone, or the defect-aware segmentation net (on ``device``).
        images: Every project image; ``labels[i]`` is None for unlabelled rows.
        cfg: Head settings.
        device: Where features are computed.
        report: Receives progress, the memory estimate and warnings.
        cancel: Checked between batches.

    Raises:
        DataError: if too few images are not labelled defects.
        Cancelled: when ``cancel`` fires.
    """
    net = net.to(device).eval()
    classes, counts, dropped = _classes(labels, cfg.min_shots)
    is_defect = np.array([lab is not None and lab != GOOD for lab in labels])
    unlabelled = np.array([lab is None for lab in labels])
    pool = np.flatnonzero(~is_defect)  # unlabelled + good: presumed (mostly) good
    if len(pool) < max(cfg.knn_k + 1, 4):
        raise DataError(
            f"the anomaly model needs at least {max(cfg.knn_k + 1, 4)} images that are not labelled defects"
        )
    fit = _fit_anomaly(net, images, pool, unlabelled, cfg, device, report, cancel)
    if fit.suspected.size:
        report(
            Log(
                level="INFO",
                message=f"{len(fit.suspected)} unusual unlabelled image(s) kept out of the memory bank and calibration "
                f"(expected defect share {cfg.contamination:g}); label some of them to check",
            )
        )
    anomaly, calibration = _calibrate(fit, pool, cfg)
    scored = fit.scored
    descriptor = cfg.descriptor if scored.desc is not None else "global"
    if descriptor != cfg.descriptor:
        report(Log(level="WARNING", message="the defect descriptor needs the patch model: using global features"))
    x = scored.desc if scored.desc is not None else scored.glob
    clf, cv, candidates, lab_idx, y = _fit_classifier(x, labels, classes, counts, cfg)
    auroc, curves = _measure(labels, scored.scores)
    decision = _decision_rule(cfg.decision, cv, y, classes, scored.scores[lab_idx] > anomaly.threshold)
    tiles = getattr(net, "tiles", 1)
    tile_size = net.input_size // tiles
    head = InspectionHead(clf, anomaly, tile_size, tiles=tiles, descriptor=descriptor, decision=decision)
    return HeadFit(
        head=head,
        cv=cv,
        candidates=candidates,
        anomaly_auroc=auroc,
        scores=scored.scores,
        dropped=dropped,
        embeddings=scored.glob,
        features=x,
        maps=scored.maps,
        sharp=scored.sharp.maps if scored.sharp is not None and scored.maps is not None else None,
        suspected=fit.suspected,
        calibration=calibration,
        curves=curves,
        estimate=fit.estimate,
    )
