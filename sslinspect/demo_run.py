"""``sslinspect demo``: the whole pipeline on the built-in demo data, and what pretraining bought.

Generates the data, creates a project, scans, imports the few-shot labels, pretrains, trains the head, exports
ONNX, predicts the held-out test set with ONNX Runtime, and compares against the same head on a random-init
backbone.

It drives :mod:`sslinspect.api` end to end, so it sits above ``api``; the demo data generator (:mod:`sslinspect.demo`)
sits below it (``api.open_demo_project`` uses it).
"""

from __future__ import annotations

import csv
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sslinspect import api
from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import FewShotConfig, PretrainConfig
from sslinspect.demo.dataset import DemoDataset, generate_demo
from sslinspect.errors import ProjectError
from sslinspect.events import Log, Progress, Reporter, null_reporter
from sslinspect.project import GOOD, Project, is_project

if TYPE_CHECKING:
    import torch

#: Quick: a few minutes on a 2-core CPU. Full: the recommended settings, best on a GPU. Both are the defect-aware
#: method at the frames' native size (the winner of bench/quality.py), the quick one on a 75 s budget.
QUICK = PretrainConfig(epochs=200, max_minutes=1.25, log_every=20)
FULL = PretrainConfig(epochs=100, batch_size=32)


@dataclass(frozen=True, slots=True)
class DemoRow:
    """Test-set metrics of one feature extractor with the same few-shot head recipe."""

    features: str
    defect_type_balanced_accuracy: float
    anomaly_auroc: float
    ok_ng_balanced_accuracy: float


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo did and measured."""

    project: str
    model: str
    predictions: str
    rows: tuple[DemoRow, ...]
    test_images: int
    parity_max_abs_diff: float
    device: str
    pretrain: PretrainConfig
    seconds: float


def _read_csv(path: Path, base: Path) -> list[tuple[Path, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [(base / r["path"], r["label"]) for r in csv.DictReader(fh)]


def _metrics(
    name: str,
    classes: tuple[str, ...],
    truth: list[str],
    proba: np.ndarray,
    scores: np.ndarray,
    is_defect: np.ndarray,
    labels: list[str] | None = None,
) -> DemoRow:
    """One row of the demo's table; ``labels`` (what ``predict`` wrote) override the argmax of ``proba``."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    pred = labels if labels is not None else [classes[i] for i in proba.argmax(1)]
    is_bad = np.array([t != GOOD for t in truth])
    with warnings.catch_warnings():
        # `unknown` (the open-set name) is never a true type: it counts as wrong, as intended; no warning in the table
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        types = float(balanced_accuracy_score(truth, pred))
    return DemoRow(
        name,
        types,
        float(roc_auc_score(is_bad, scores)),
        float(balanced_accuracy_score(is_bad, is_defect)),
    )


def _fresh_project(root: Path) -> Project:
    if root.exists():
        if not is_project(root) or not Project.open(root).data.get("demo"):
            raise ProjectError(f"{root}: exists and is not a demo project; choose another --out")
        shutil.rmtree(root)
    project = api.create_project(root, name=root.name.removesuffix(".sslproj"))
    project.update(lambda d: d.__setitem__("demo", True))
    return project


def _random_init_baseline(
    project: Project,
    cfg: PretrainConfig,
    fs_cfg: FewShotConfig,
    test_u8: np.ndarray,
    truth: list[str],
    dev: torch.device,
    size: int,
) -> DemoRow:
    """The same head fitted on a random-init backbone (patch memory bank: a random decoder would say nothing),
    scored on the test images at the model's input ``size``: what pretraining bought."""
    from sslinspect.data.cache import build_cache
    from sslinspect.export.module import InferenceModule
    from sslinspect.export.onnx import run_torch
    from sslinspect.fewshot.head import fit_head
    from sslinspect.fewshot.patchcore import FeatureNet
    from sslinspect.model.backbones import build_backbone
    from sslinspect.model.runtime import seed_everything

    seed_everything(cfg.seed)
    random_bb = build_backbone(cfg.backbone, size)
    net = FeatureNet(random_bb, size, fs_cfg.tiles)
    cache = build_cache(project, net.input_size)
    label_map = project.store.labels()
    fitted = fit_head(net, cache.images, [label_map.get(i) for i in cache.ids], fs_cfg, device=dev)
    rand_out = run_torch(InferenceModule(random_bb.cpu(), fitted.head).eval(), test_u8, fitted.head)
    return _metrics(f"random-init {cfg.backbone}", fitted.head.classes, truth, rand_out[0], rand_out[1], rand_out[2])


def run_demo(
    out_dir: Path,
    *,
    quick: bool = False,
    product: str = "metal",
    pretrain: PretrainConfig | None = None,
    device: str = "auto",
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> DemoResult:
    """Run the pipeline end to end on generated demo data under ``out_dir``.

    Raises:
        ProjectError: if ``out_dir`` holds a non-demo project where the demo wants to write.
    """
    from sslinspect.imageio import load_for_model
    from sslinspect.infer.onnx_predictor import Predictor
    from sslinspect.model.runtime import describe_device, pick_device

    t0 = time.monotonic()
    out_dir = Path(out_dir).resolve()
    cfg = replace(pretrain or (QUICK if quick else FULL), device=device)
    report(Progress(stage="demo", step=0, total=7, message="generating demo images"))
    ds: DemoDataset = generate_demo(out_dir / "data", product=product, size=128, seed=0)
    project = _fresh_project(out_dir / f"{product}.sslproj")
    project.add_source(ds.unlabeled_dir)

    report(Progress(stage="demo", step=1, total=7, message="scanning images"))
    scan = api.scan_images(project, report=report, cancel=cancel)
    report(Log(level="INFO", message=f"scanned {scan.ok} images ({scan.failed} unreadable)"))
    labels = api.import_labels(project, ds.labels_csv)
    for problem in labels.problems:
        report(Log(level="WARNING", message=problem))
    report(Log(level="INFO", message=f"imported {labels.imported} labels: {labels.counts}"))

    report(Progress(stage="demo", step=2, total=7, message=f"pretraining {cfg.method}/{cfg.backbone}"))
    pre = api.pretrain(project, cfg, report=report, cancel=cancel)
    report(Progress(stage="demo", step=3, total=7, message="training classifier and anomaly model"))
    fs_cfg = FewShotConfig(device=device)
    api.fit_fewshot(project, fs_cfg, report=report, cancel=cancel)
    report(Progress(stage="demo", step=4, total=7, message="exporting ONNX"))
    model_path = project.root / "exports" / "demo" / "model.onnx"
    exported = api.export_onnx(project, model_path, report=report, cancel=cancel)

    report(Progress(stage="demo", step=5, total=7, message="predicting the test set with ONNX Runtime"))
    test = _read_csv(ds.test_csv, ds.root)
    truth = [lab for _, lab in test]
    pred_csv = project.root / "exports" / "demo" / "test_predictions.csv"
    api.predict(model_path, [p for p, _ in test], out=pred_csv, device=device, report=report)
    predictor = Predictor(model_path, device=device)
    test_u8 = np.stack([load_for_model(p, predictor.image_size) for p, _ in test])
    p_onnx, s_onnx, d_onnx = predictor.run(test_u8)
    with pred_csv.open(newline="", encoding="utf-8") as fh:  # the types predict names (region typing), per image
        named = {r["path"]: r["label"] for r in csv.DictReader(fh)}
    ssl_row = _metrics(
        f"SSL {cfg.method}/{cfg.backbone} ({pre.epochs_done} ep), ONNX",
        predictor.classes,
        truth,
        p_onnx,
        s_onnx,
        d_onnx,
        labels=[named[str(p)] for p, _ in test],
    )

    report(Progress(stage="demo", step=6, total=7, message="baseline: same head on a random-init backbone"))
    dev = pick_device(device)
    rand_row = _random_init_baseline(project, cfg, fs_cfg, test_u8, truth, dev, predictor.image_size)
    report(Progress(stage="demo", step=7, total=7, message="done"))
    return DemoResult(
        project=str(project.root),
        model=str(model_path),
        predictions=str(pred_csv),
        rows=(rand_row, ssl_row),
        test_images=len(test),
        parity_max_abs_diff=exported.parity.max_abs_diff,
        device=describe_device(dev),
        pretrain=cfg,
        seconds=time.monotonic() - t0,
    )


def format_table(result: DemoResult) -> str:
    """The metrics table the CLI prints."""
    head = f"{'features':<44} {'defect type bal.acc':>19} {'anomaly AUROC':>13} {'OK/NG bal.acc':>13}"
    lines = [head, "-" * len(head)]
    for r in result.rows:
        lines.append(
            f"{r.features:<44} {r.defect_type_balanced_accuracy:>19.3f} {r.anomaly_auroc:>13.3f} "
            f"{r.ok_ng_balanced_accuracy:>13.3f}"
        )
    lines.append(
        f"test set: {result.test_images} held-out images; device {result.device}; "
        f"ONNX parity max |Δ| {result.parity_max_abs_diff:.1e}; {result.seconds:.0f} s"
    )
    return "\n".join(lines)
