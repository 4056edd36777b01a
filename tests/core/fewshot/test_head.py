"""Fitting the inspection head: memory estimate first, held-out calibration, curves, heatmap normalisation."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sslinspect import api
from sslinspect.config import FewShotConfig
from sslinspect.data.cache import build_cache
from sslinspect.events import CollectingReporter, Log, Progress
from sslinspect.fewshot.classifier import CVReport
from sslinspect.fewshot.fit import load_head
from sslinspect.fewshot.head import _decision_rule, fit_head
from sslinspect.fewshot.patchcore import FeatureNet
from sslinspect.model.backbones import build_backbone
from sslinspect.project import GOOD, Project


@pytest.fixture
def images_and_labels(trained_project: Path) -> tuple[np.ndarray, list[str | None]]:
    project = Project.open(trained_project)
    cache = build_cache(project, 32)
    labels = project.store.labels()
    out = np.asarray(cache.images), [labels.get(i) for i in cache.ids]
    project.close()
    return out


def test_metrics_record_a_held_out_percentile_threshold_and_curves(trained_project: Path) -> None:
    project = Project.open(trained_project)
    run = project.latest("fewshot")
    assert run is not None
    metrics = json.loads((run / "metrics.json").read_text())
    rows = list(csv.DictReader((run / "scores.csv").read_text().splitlines()))
    labels = project.store.labels()
    calib = [
        float(r["anomaly_score"])
        for r in rows
        if labels.get(int(r["image_id"])) in (None, GOOD) and r["suspected"] == "0"
    ]
    assert len(calib) == metrics["calibration_images"]
    assert metrics["threshold"] == pytest.approx(np.percentile(calib, metrics["threshold_percentile"]), rel=1e-5)
    roc, pr = metrics["curves"]["roc"], metrics["curves"]["pr"]
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["threshold"]) >= 2
    assert len(pr["precision"]) == len(pr["recall"]) == len(pr["threshold"]) >= 2
    assert metrics["anomaly_kind"] == "patch" and metrics["memory_estimate"]["peak_mb"] > 0
    project.close()


def test_good_images_look_calm_on_the_normalised_map(trained_project: Path) -> None:
    project = Project.open(trained_project)
    run = project.latest("fewshot")
    assert run is not None
    head, _ = load_head(project)
    maps = head.anomaly.normalise(np.load(run / "maps.npy").astype(np.float32))
    metrics = json.loads((run / "metrics.json").read_text())
    rows = list(csv.DictReader((run / "scores.csv").read_text().splitlines()))
    good = [
        k for k, r in enumerate(rows) if r["suspected"] == "0" and float(r["anomaly_score"]) <= metrics["threshold"]
    ]
    # 0 is a typical good patch and 1 the threshold: most good pixels sit near 0, none above 1.
    assert abs(float(np.median(maps[good]))) < 0.25
    assert float(maps[good].max()) <= 1.0 + 1e-5
    project.close()


def test_memory_estimate_is_reported_before_the_bank_is_built(
    images_and_labels: tuple[np.ndarray, list[str | None]],
) -> None:
    images, labels = images_and_labels
    torch.manual_seed(0)
    net = FeatureNet(build_backbone("tiny_cnn", 32), 32)
    rep = CollectingReporter()
    cfg = FewShotConfig(device="cpu", patch_candidates=2000, patch_bank_size=300, contamination=0.1)
    fitted = fit_head(net, images, labels, cfg, device=torch.device("cpu"), report=rep)
    first_bank = next(k for k, e in enumerate(rep.events) if isinstance(e, Progress) and e.stage == "bank")
    estimate = next(k for k, e in enumerate(rep.events) if isinstance(e, Log) and "patch memory bank" in e.message)
    assert estimate < first_bank
    assert fitted.estimate is not None and fitted.estimate.candidates == 2000
    assert len(fitted.head.anomaly.bank) <= 300
    unlabelled = sum(lab is None for lab in labels)
    assert len(fitted.suspected) == round(0.1 * unlabelled)
    assert not {labels[i] for i in fitted.suspected.tolist()} - {None}  # only unlabelled images are suspected


def test_review_band_sits_below_the_threshold(images_and_labels: tuple[np.ndarray, list[str | None]]) -> None:
    images, labels = images_and_labels
    torch.manual_seed(0)
    net = FeatureNet(build_backbone("tiny_cnn", 32), 32)
    cfg = FewShotConfig(device="cpu", patch_bank_size=200, review_percentile=80, threshold_percentile=97)
    head = fit_head(net, images, labels, cfg, device=torch.device("cpu")).head
    assert head.anomaly.review_threshold < head.anomaly.threshold
    scores = np.array([head.anomaly.review_threshold - 1, head.anomaly.review_threshold + 1e-4, 1e9])
    proba = np.tile(np.eye(len(head.classes))[0], (3, 1))  # the classifier says "good"
    assert head.decide(proba, scores)[1].tolist() == [0, 1, 2]


class _GlobalOnly(torch.nn.Module):
    """A backbone that gives pooled features only (like an imported plain classifier trunk)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = build_backbone("tiny_cnn", 32)
        self.feature_dim = self.inner.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_backbone_without_maps_falls_back_to_image_knn_and_says_so(
    images_and_labels: tuple[np.ndarray, list[str | None]],
) -> None:
    images, labels = images_and_labels
    torch.manual_seed(0)
    rep = CollectingReporter()
    net = FeatureNet(_GlobalOnly(), 32)
    fitted = fit_head(net, images, labels, FewShotConfig(device="cpu"), device=torch.device("cpu"), report=rep)
    assert fitted.head.anomaly.kind == "knn" and fitted.maps is None
    assert any(isinstance(e, Log) and "no feature maps" in e.message for e in rep.events)


def test_vit_patch_tokens_feed_the_patch_model(images_and_labels: tuple[np.ndarray, list[str | None]]) -> None:
    images, labels = images_and_labels
    torch.manual_seed(0)
    net = FeatureNet(build_backbone("vit_tiny", 32), 32)
    cfg = FewShotConfig(device="cpu", patch_bank_size=50)
    fitted = fit_head(net, images[:48], labels[:48], cfg, device=torch.device("cpu"))
    assert fitted.head.anomaly.kind == "patch"
    assert fitted.maps is not None and fitted.maps.shape == (48, 2, 2)  # 32 px / stride 16


def test_set_threshold_is_kept_for_export(trained_project: Path, tmp_path: Path) -> None:
    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    project = api.open_project(root)
    with pytest.raises(ValueError, match="must not exceed"):
        api.set_threshold(project, 0.2, review_threshold=0.3)
    api.set_threshold(project, 0.25, review_threshold=0.2)
    head, _ = load_head(project)
    assert (head.anomaly.threshold, head.anomaly.review_threshold) == pytest.approx((0.25, 0.2))
    run = project.latest("fewshot")
    assert run is not None
    assert json.loads((run / "metrics.json").read_text())["threshold_override"]["threshold"] == pytest.approx(0.25)
    project.close()


def _cv(pred: list[int], y: np.ndarray) -> CVReport:
    from sklearn.metrics import balanced_accuracy_score

    bal = float(balanced_accuracy_score(y, pred))
    return CVReport("logistic", 5, bal, float(np.mean(np.asarray(pred) == y)), [], oof_pred=pred)


def test_auto_rule_adds_the_classifier_only_when_it_is_credible() -> None:
    classes = (GOOD, "scratch", "spot", "crack", "dent")
    y = np.repeat(np.arange(5), 5)  # 5 labels per class
    missed = np.zeros(25, bool)  # the anomaly score flags no labelled defect
    # a classifier that tells good from defects and types most defects: it joins the rule
    good_pred = [int(c) if i % 5 else (int(c) + 1) % 5 for i, c in enumerate(y)]
    assert _decision_rule("auto", _cv(good_pred, y), y, classes, missed) == "anomaly_or_class"
    # a chance-level classifier that calls nearly everything a defect "gains" OK/NG accuracy on 5 good labels by
    # luck (4 of 5 classes are defects); it must not join the rule
    rng = np.random.default_rng(0)
    noise = [int(p) for p in rng.permutation(np.r_[np.zeros(1, int), rng.integers(1, 5, 24)])]
    noise[:5] = [0, 1, 2, 3, 4]
    report = _cv(noise, y)
    assert report.balanced_accuracy < 0.4
    assert _decision_rule("auto", report, y, classes, missed) == "anomaly"
    # explicit choices are kept
    assert _decision_rule("anomaly_or_class", report, y, classes, missed) == "anomaly_or_class"
