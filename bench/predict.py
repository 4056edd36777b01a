"""Line-side predict throughput: end to end (decode + preprocess + inference) vs. a raw ONNX Runtime session on
pre-decoded tensors with the same model, INT8 vs. FP32 speed and accuracy, and batch-1 latency; one run.

The model is the real exported graph (preprocessing, backbone, patch anomaly model with its map, classifier),
exported by ``export_model`` with its parity and INT8 accuracy checks. By default it is built on a random-init
backbone from generated demo data (speed does not depend on the weights); ``--project`` uses a trained project's
latest head and checkpoint instead. Rounds alternate the measured paths so that load from other processes hits
them alike. Prints one JSON object.

    python bench/predict.py                       # CPU: about two minutes
    python bench/predict.py --device cuda --size 224 --batch 32
    python bench/predict.py --project P.sslproj --threads 1   # a shared machine: one thread contends less
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout: `python bench/predict.py`

import numpy as np
import onnxruntime as ort
import torch

from bench.machine import describe as describe_machine
from sslinspect.config import ExportConfig, FewShotConfig
from sslinspect.demo.dataset import generate_demo
from sslinspect.export.onnx import ExportInputs, export_model
from sslinspect.fewshot.head import fit_head
from sslinspect.fewshot.model import InspectionHead
from sslinspect.fewshot.patchcore import FeatureNet
from sslinspect.imageio import load_for_model
from sslinspect.infer.onnx_predictor import Predictor
from sslinspect.model.backbones import build_backbone
from sslinspect.project import GOOD


def _rows(csv_path: Path, root: Path) -> list[tuple[Path, str]]:
    with csv_path.open(newline="", encoding="utf-8") as fh:
        return [(root / r["path"], r["label"]) for r in csv.DictReader(fh)]


def _model(args: argparse.Namespace, data: Any, device: torch.device) -> tuple[torch.nn.Module, InspectionHead, Any]:
    """Backbone, head and the extras a project's model exports with: ``{"decoder", "typing"}`` (empty otherwise)."""
    if args.project:
        from sslinspect.fewshot.fit import load_head
        from sslinspect.fewshot.segmap import decoder_from_checkpoint
        from sslinspect.fewshot.typing_step import load_typing
        from sslinspect.model.checkpoint import build_backbone_from_checkpoint, load_checkpoint
        from sslinspect.project import Project

        project = Project.open(Path(args.project))
        head, ckpt_path = load_head(project)
        ckpt = load_checkpoint(ckpt_path)
        backbone = build_backbone_from_checkpoint(ckpt)
        run = project.latest("fewshot")
        extras = {
            "decoder": decoder_from_checkpoint(ckpt, backbone) if head.anomaly.kind == "segment" else None,
            "typing": load_typing(run) if run else None,
        }
        return backbone, head, extras
    torch.manual_seed(0)
    backbone = build_backbone(args.backbone, args.size)
    labels = {p.name: lab for p, lab in _rows(data.labels_csv, data.root)}
    files = sorted(data.unlabeled_dir.iterdir())
    images = np.stack([load_for_model(p, args.size) for p in files])
    cfg = FewShotConfig(device=device.type, patch_bank_size=args.bank, batch_size=32)
    fitted = fit_head(FeatureNet(backbone, args.size), images, [labels.get(p.name) for p in files], cfg, device=device)
    return backbone.cpu(), fitted.head, {}


def _throughput_e2e(pred: Predictor, paths: list[Path], batch: int) -> float:
    t0 = time.perf_counter()
    n = sum(1 for p in pred.predict_paths(paths, batch_size=batch) if not p.error)
    return n / (time.perf_counter() - t0)


def _throughput_raw(pred: Predictor, tensors: np.ndarray, batch: int) -> float:
    t0 = time.perf_counter()
    for s in range(0, len(tensors), batch):
        pred.run_all(tensors[s : s + batch])
    return len(tensors) / (time.perf_counter() - t0)


def _latency_ms(fn: Any, n: int) -> dict[str, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)), "runs": n}


def _test_metrics(pred: Predictor, test: list[tuple[Path, str]], size: int) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score

    x = np.stack([load_for_model(p, size) for p, _ in test])
    out = pred.run_all(x)
    truth = [lab for _, lab in test]
    bad = np.array([t != GOOD for t in truth])
    return {
        "defect_type_balanced_accuracy": float(
            balanced_accuracy_score(truth, [pred.classes[i] for i in out["probabilities"].argmax(1)])
        ),
        "ok_ng_balanced_accuracy": float(balanced_accuracy_score(bad, out["is_defect"])),
    }


def main() -> None:
    """Run the benchmark and print its JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=128, help="model input size (px)")
    ap.add_argument("--source-px", type=int, default=512, help="side of the generated camera frames")
    ap.add_argument("--images", type=int, default=96, help="files scored per round")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bank", type=int, default=2000, help="patch memory bank size")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--project", help="use this trained project's latest head and checkpoint")
    ap.add_argument("--skip-int8", action="store_true")
    ap.add_argument(
        "--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default, one per core)"
    )
    args = ap.parse_args()
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp_name:
        tmp = Path(tmp_name)
        data = generate_demo(tmp / "data", n_images=max(args.images, 120), size=args.source_px, n_test_per_class=8)
        backbone, head, extras = _model(args, data, device)
        size = head.input_size
        files = sorted(data.unlabeled_dir.iterdir())
        u8 = np.stack([load_for_model(p, size) for p in files])
        labels = {p.name: lab for p, lab in _rows(data.labels_csv, data.root)}
        check = [labels.get(p.name) for p in files]
        inputs = ExportInputs(u8[:16], u8[-64:], u8, check)
        models: dict[str, Path] = {}
        checks: dict[str, Any] = {}
        for precision in ["fp32"] if args.skip_int8 else ["fp32", "int8"]:
            r = export_model(
                backbone,
                head,
                inputs,
                tmp / f"{precision}.onnx",
                ExportConfig(precision=precision),
                provenance={"bench": True},
                force=True,
                **extras,
            )
            models[precision] = Path(r.path)
            if r.precision_check is not None:
                checks[precision] = {
                    "passed": r.precision_check.passed,
                    "decision_agreement": r.precision_check.decision_agreement,
                    "labelled_accuracy_change": r.precision_check.accuracy_change,
                    "mean_abs_score_change_vs_margin": r.precision_check.score_change_vs_threshold,
                }
        ort_device = "cuda" if device.type == "cuda" else "cpu"
        preds = {k: Predictor(p, device=ort_device, threads=args.threads) for k, p in models.items()}
        paths = files[: args.images]
        tensors = np.stack([load_for_model(p, size) for p in paths])
        for pred in preds.values():  # warm-up: graph optimisation, arena allocation
            pred.run_all(tensors[: args.batch])
        e2e, raw, raw_int8 = [], [], []
        for _ in range(args.rounds):
            e2e.append(_throughput_e2e(preds["fp32"], paths, args.batch))
            raw.append(_throughput_raw(preds["fp32"], tensors, args.batch))
            if "int8" in preds:
                raw_int8.append(_throughput_raw(preds["int8"], tensors, args.batch))
        fp32 = preds["fp32"]
        one = tensors[:1]
        test = _rows(data.test_csv, data.root)
        result: dict[str, Any] = {
            "machine": describe_machine(onnxruntime=ort.__version__, provider=fp32.provider, threads=args.threads),
            "model": {
                "backbone": args.backbone if not args.project else "project",
                "input_px": size,
                "source_px": args.source_px,
                "anomaly": head.anomaly.kind,
                "bank": int(head.anomaly.bank.shape[0]),
                "classes": len(head.classes),
            },
            "batch": args.batch,
            "images_per_round": len(paths),
            "e2e_images_per_s": e2e,
            "raw_images_per_s": raw,
            "e2e_vs_raw": float(np.sum(e2e) / np.sum(raw)),
            "e2e_vs_raw_median_round": float(np.median(np.array(e2e) / np.array(raw))),
            "latency_ms_batch1": {
                "raw": _latency_ms(lambda: fp32.run_all(one), 60),
                "e2e": _latency_ms(lambda: next(iter(fp32.predict_paths(paths[:1], batch_size=1))), 30),
            },
            "test_fp32": _test_metrics(fp32, test, size),
        }
        if raw_int8:
            result["int8_raw_images_per_s"] = raw_int8
            result["int8_vs_fp32_speed"] = float(np.sum(raw_int8) / np.sum(raw))
            result["int8_vs_fp32_speed_median_round"] = float(np.median(np.array(raw_int8) / np.array(raw)))
            result["test_int8"] = _test_metrics(preds["int8"], test, size)
            result["int8_check"] = checks.get("int8")
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
