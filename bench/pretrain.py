"""Pretraining throughput: the engine's data path vs. a per-sample PIL/DataLoader-worker baseline, in one run.

Both train the same SSL method, model, batch and image size with the same optimiser step (``train_step``); only
the data path differs:

- engine: every image decoded once into a ``uint8`` array (the image cache), batches gathered on the device (GPU
  resident when it fits), views made by batched on-device augmentation, run by the real ``train_loop``;
- baseline: the usual torchvision recipe, each sample decoded from its file with PIL and augmented twice by
  ``torchvision.transforms.v2`` in DataLoader worker processes (pinned memory, prefetching).

Prints one JSON object: images/s of both and their ratio, the share of step time spent waiting for data, and on
CUDA the FLOPs per image (``torch.utils.flop_counter``) and the share of the peak measured with a bf16 matmul.

    python bench/pretrain.py                            # CPU, small: about a minute
    python bench/pretrain.py --device cuda --preset r18-128
    python bench/pretrain.py --device cuda --preset r50-224 [--compile]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout: `python bench/pretrain.py`

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

from sslinspect.backbones import build_backbone
from sslinspect.cancel import NEVER
from sslinspect.config import AugmentConfig, PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.demo.synth import render
from sslinspect.events import CollectingReporter, Metric
from sslinspect.imageio import read_image, resize_square
from sslinspect.methods import load_method
from sslinspect.preprocess import MEAN, STD
from sslinspect.train.loop import autocast_for, make_optimizer, train_loop, train_step
from sslinspect.train.runtime import configure_cuda, describe_device, pick_device

PRESETS: dict[str, dict[str, Any]] = {
    "cpu-small": {"backbone": "resnet18", "image_size": 64, "batch_size": 32, "steps": 4, "warmup": 2, "source": 128},
    "r18-128": {"backbone": "resnet18", "image_size": 128, "batch_size": 256, "steps": 30, "warmup": 5, "source": 256},
    "r50-224": {"backbone": "resnet50", "image_size": 224, "batch_size": 256, "steps": 20, "warmup": 5, "source": 320},
}
TARGETS = {"cpu": {"speedup": 1.5}, "cuda": {"speedup": 5.0, "data_wait": 0.05}}
FLOP_TARGETS = {"r18-128": 0.08, "r50-224": 0.15}
POOL = 256  # distinct source images; the epoch cycles through them


def write_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` synthetic production-line PNGs (metal and fabric demo renders) of ``size`` px."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = render("fabric" if i % 2 else "metal", None, rng, size)
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        paths.append(folder / f"img_{i:05d}.png")
        cv2.imwrite(str(paths[-1]), img)
    return paths


class FileViews(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The baseline: decode a file with PIL per sample, two views with torchvision.transforms.v2."""

    def __init__(self, paths: list[Path], length: int, aug: AugmentConfig, size: int) -> None:
        self.paths, self.length = paths, length
        blur_k = 2 * math.ceil(3 * (1.5 * size / 224 + 0.5)) + 1
        self.transform = v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(aug.crop_min_scale, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomVerticalFlip(),
                v2.RandomRotation(aug.rotate_deg),
                v2.ColorJitter(brightness=aug.brightness, contrast=aug.contrast),
                v2.RandomApply([v2.GaussianBlur(blur_k, sigma=(0.1, 1.5 * size / 224 + 0.5))], p=aug.blur_prob),
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
                v2.GaussianNoise(sigma=aug.noise_std, clip=True),
                v2.Normalize(MEAN, STD),
            ]
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.paths[i % len(self.paths)]) as im:
            img = im.convert("RGB")
        return self.transform(img), self.transform(img)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(cfg: PretrainConfig, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    return load_method(cfg.method).make_model(build_backbone(cfg.backbone, cfg.image_size), cfg).to(device)


def measure_engine(
    cfg: PretrainConfig, paths: list[Path], n_images: int, warmup: int, device: torch.device, tmp: Path
) -> dict[str, float]:
    t0 = time.perf_counter()
    pool = np.stack([resize_square(read_image(p)[0], cfg.image_size) for p in paths])  # decode once (the cache)
    cache_s = time.perf_counter() - t0
    images = np.resize(pool, (n_images, *pool.shape[1:]))
    spec = load_method(cfg.method)
    model = build_model(cfg, device)
    source = BatchSource(images, cfg.batch_size, device, seed=cfg.seed)
    reporter = CollectingReporter()
    meta = {"backbone": cfg.backbone, "image_size": cfg.image_size}
    train_loop(
        model,
        spec.make_views(cfg),
        source,
        spec,
        cfg,
        device=device,
        checkpoint_path=tmp / "bench.pt",
        checkpoint_meta=meta,
        resume=None,
        report=reporter,
        cancel=NEVER,
    )
    by_name: dict[str, list[float]] = {}
    for e in reporter.events:
        if isinstance(e, Metric) and e.name in ("images_per_s", "data_wait"):
            by_name.setdefault(e.name, []).append(e.value)
    ips, wait = by_name["images_per_s"][1:], by_name["data_wait"][1:]  # the first interval is the warm-up
    seconds = [cfg.log_every * cfg.batch_size / x for x in ips]
    return {
        "images_per_s": len(ips) * cfg.log_every * cfg.batch_size / sum(seconds),
        "data_wait": sum(w * s for w, s in zip(wait, seconds, strict=True)) / sum(seconds),
        "cache_build_s": cache_s / len(paths) * n_images,
        "resident_on_gpu": float(source.resident),
    }


def measure_baseline(
    cfg: PretrainConfig, paths: list[Path], steps: int, warmup: int, workers: int, device: torch.device
) -> dict[str, float]:
    spec = load_method(cfg.method)
    model = build_model(cfg, device)
    forward = torch.compile(model) if cfg.compile else model
    cuda = device.type == "cuda"
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(spec, model, cfg)
    data = FileViews(paths, (steps + warmup) * cfg.batch_size, cfg.augment, cfg.image_size)
    loader = DataLoader(
        data,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )
    model.train()
    it = iter(loader)
    t0, wait = time.perf_counter(), 0.0
    for s in range(warmup + steps):
        if s == warmup:
            _sync(device)
            t0, wait = time.perf_counter(), 0.0
        tw = time.perf_counter()
        v0, v1 = next(it)
        wait += time.perf_counter() - tw
        views = [v.to(device, non_blocking=True) for v in (v0, v1)]
        if cuda and cfg.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        train_step(forward, model, opt, views, None, autocast=autocast_for(device, cfg.amp), grad_clip=0, progress=0.5)
    _sync(device)
    dt = time.perf_counter() - t0
    return {"images_per_s": steps * cfg.batch_size / dt, "data_wait": wait / dt, "workers": workers}


def flops_per_image(cfg: PretrainConfig, device: torch.device) -> float:
    """Forward + backward FLOPs of one training step, per image, counted by ``FlopCounterMode``."""
    model = build_model(cfg, device).train()
    batch = torch.randint(0, 256, (cfg.batch_size, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8, device=device)
    views = load_method(cfg.method).make_views(cfg)(batch)
    with FlopCounterMode(display=False) as counter, autocast_for(device, cfg.amp):
        model(views, None).loss.backward()
    return counter.get_total_flops() / cfg.batch_size


def peak_bf16_flops(device: torch.device, n: int = 8192, iters: int = 50) -> float:
    """Achievable bf16 matmul FLOP/s on ``device`` (the ceiling the FLOP share is measured against)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - t0)


def machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor()
    info = Path("/proc/cpuinfo")
    if info.exists():
        lines = info.read_text(encoding="utf-8").splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), cpu)
    return {
        "device": describe_device(device),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--preset", choices=list(PRESETS), help="default: cpu-small on CPU, r18-128 on CUDA")
    p.add_argument("--method", default="simclr")
    p.add_argument("--steps", type=int, help="measured steps per data path")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="baseline DataLoader workers")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (both paths)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    configure_cuda(device)
    name = args.preset or ("r18-128" if device.type == "cuda" else "cpu-small")
    preset = PRESETS[name]
    steps, warmup = args.steps or preset["steps"], preset["warmup"]
    steps = math.ceil(steps / warmup) * warmup  # whole report intervals
    cfg = PretrainConfig(
        method=args.method,
        backbone=preset["backbone"],
        image_size=preset["image_size"],
        batch_size=preset["batch_size"],
        epochs=1,
        warmup_epochs=0,
        log_every=warmup,
        device=device.type,
        amp=not args.no_amp,
        compile=args.compile,
    )
    with tempfile.TemporaryDirectory(prefix="sslinspect-bench-") as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        paths = write_images(tmp, POOL, preset["source"])
        print(f"wrote {POOL} source images in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        engine = measure_engine(cfg, paths, (steps + warmup) * cfg.batch_size, warmup, device, tmp)
        print(f"engine: {engine['images_per_s']:.1f} images/s", file=sys.stderr)
        baseline = measure_baseline(cfg, paths, steps, warmup, args.workers, device)
        print(f"baseline: {baseline['images_per_s']:.1f} images/s", file=sys.stderr)
    out: dict[str, Any] = {
        "bench": "pretrain",
        "preset": name,
        "machine": machine(device),
        "config": {
            "method": cfg.method,
            "backbone": cfg.backbone,
            "image_size": cfg.image_size,
            "batch_size": cfg.batch_size,
            "measured_steps": steps,
            "warmup_steps": warmup,
            "source_px": preset["source"],
            "amp_bf16": cfg.amp and device.type == "cuda",
            "channels_last": cfg.channels_last and device.type == "cuda",
            "compile": cfg.compile,
        },
        "engine": engine,
        "baseline": baseline,
        "speedup": engine["images_per_s"] / baseline["images_per_s"],
    }
    targets = dict(TARGETS[device.type])
    if device.type == "cuda":
        fpi = flops_per_image(cfg, device)
        peak = peak_bf16_flops(device)
        out.update(
            flops_per_image=fpi,
            peak_bf16_tflops=peak / 1e12,
            flop_share=fpi * engine["images_per_s"] / peak,
            baseline_flop_share=fpi * baseline["images_per_s"] / peak,
        )
        if name in FLOP_TARGETS:
            targets["flop_share"] = FLOP_TARGETS[name]
    out["targets"] = targets
    out["meets_targets"] = all(
        (engine["data_wait"] <= v) if k == "data_wait" else (out[k] >= v) for k, v in targets.items()
    )
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
