"""Pretraining throughput: the engine's data path vs. a per-sample PIL/DataLoader-worker baseline, in one run.

Both train the same SSL method, model, batch and image size with the same optimiser step (``train_step``); only
the data path differs:

- engine: every image decoded once into a ``uint8`` array (the image cache), batches gathered on the device (GPU
  resident when it fits), views made by batched on-device augmentation, run by the real ``train_loop``;
- baseline: the usual torchvision recipe, each sample decoded from its file with PIL and augmented twice by
  ``torchvision.transforms.v2`` in DataLoader worker processes (pinned memory, prefetching).

Both are timed by wall clock over the same measured steps, reporting included (the loss read back and the health
metrics every ``log_every`` steps, as the engine's loop does). Prints one JSON object: images/s of both and their
ratio, the share of wall time spent waiting for data and, for the engine, the share spent augmenting (its views are
made on the training stream, so they never show as data wait); on CUDA the FLOPs per image
(``torch.utils.flop_counter``) and the share of the detected GPU's *spec* peak
(:data:`bench.gpu_peak.SPEC_PEAK_TFLOPS`, dense tensor-core bf16, fp16 on GPUs without bf16), next to a measured
matmul ceiling for reference.

``--cache-tier pinned|stream`` forces the path the engine takes for data larger than GPU memory (cache in pinned
host memory, or read from a memory-mapped file on disk, copied on a side stream): the data set itself stays small.

    python bench/pretrain.py                            # CPU, small: about a minute
    python bench/pretrain.py --preset cpu-edge          # CPU, MobileNet-v3 (edge PCs)
    python bench/pretrain.py --device cuda --preset r18-128
    python bench/pretrain.py --device cuda --preset r50-224 [--compile]
    python bench/pretrain.py --device cuda --preset r18-128 --cache-tier stream
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
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

from bench.gpu_peak import matmul_flops, spec_peak_tflops, sync
from bench.machine import describe as describe_machine
from sslinspect.cancel import NEVER
from sslinspect.config import AugmentConfig, PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.demo.synth import render
from sslinspect.events import CollectingReporter, Event, Metric
from sslinspect.imageio import read_image, resize_square
from sslinspect.methods import load_method
from sslinspect.methods.base import SSLModel
from sslinspect.model.backbones import build_backbone
from sslinspect.model.runtime import configure_cuda, describe_device, pick_device
from sslinspect.preprocess import MEAN, STD
from sslinspect.train.health import health_metrics
from sslinspect.train.loop import amp_dtype, autocast_for, grad_scaler_for, make_optimizer, train_loop, train_step

PRESETS: dict[str, dict[str, Any]] = {
    # steps: measured per round and data path; warmup: unmeasured steps before them; rounds alternate the two paths
    # Sources are camera-like 1-megapixel PNG frames (--source-px 256 for small files); cpu-small trains at 64 px.
    "cpu-small": {
        "backbone": "resnet18",
        "image_size": 64,
        "batch_size": 16,
        "steps": 4,
        "warmup": 2,
        "rounds": 3,
        "source": 1024,
    },
    # the edge-PC backbone a CPU-only line PC would train: a lighter step, so the data path matters more
    "cpu-edge": {
        "backbone": "mobilenet_v3_large",
        "image_size": 64,
        "batch_size": 16,
        "steps": 8,
        "warmup": 2,
        "rounds": 3,
        "source": 1024,
    },
    "r18-128": {
        "backbone": "resnet18",
        "image_size": 128,
        "batch_size": 256,
        "steps": 30,
        "warmup": 5,
        "rounds": 2,
        "source": 1024,
    },
    "r50-224": {
        "backbone": "resnet50",
        "image_size": 224,
        "batch_size": 256,
        "steps": 20,
        "warmup": 5,
        "rounds": 2,
        "source": 1024,
    },
}
TARGETS = {"cpu": {"speedup": 1.5}, "cuda": {"speedup": 5.0, "data_wait": 0.05}}
FLOP_TARGETS = {"r18-128": 0.08, "r50-224": 0.15}
POOL = 256  # distinct source images (64 above 256 px, to keep the set-up short); the epoch cycles through them


def write_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` synthetic production-line PNGs of ``size`` px: metal and fabric demo renders (at ≤ 256 px, scaled up
    with camera noise added, so large frames are quick to make but still compress like real ones)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = render("fabric" if i % 2 else "metal", None, rng, min(size, 256))
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        if size > 256:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
            img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
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


@dataclass(frozen=True, slots=True)
class Segment:
    """One measured stretch: images trained, wall seconds, seconds spent waiting for data."""

    images: int
    seconds: float
    wait_s: float
    cpu_s: float  # CPU seconds of this process and its DataLoader workers (robust on a shared machine)
    tier: str = ""  # engine: where the image cache lived (device, pinned, stream)
    augment_s: float = 0.0  # engine: seconds of the measured steps spent making views (timed apart, synchronised)


def _tree_cpu_s(it: object) -> float:
    """CPU seconds used so far by this process and the DataLoader's worker processes (Linux ``/proc``)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for w in getattr(it, "_workers", []):  # private, but only a benchmark reads it
        stat = Path(f"/proc/{w.pid}/stat")
        if stat.exists():
            fields = stat.read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def summarise(segments: list[Segment]) -> dict[str, Any]:
    """images/s and data-wait share over all stretches, plus images/s of each."""
    images, seconds = sum(s.images for s in segments), sum(s.seconds for s in segments)
    out = {
        "images_per_s": images / seconds,
        "images_per_cpu_s": images / sum(s.cpu_s for s in segments),
        "data_wait": sum(s.wait_s for s in segments) / seconds,
        "rounds_images_per_s": [round(s.images / s.seconds, 2) for s in segments],
    }
    if any(s.tier for s in segments):  # the engine: augmentation on the training stream (the baseline's is in workers)
        out["augment_share"] = sum(s.augment_s for s in segments) / seconds
    return out


def build_model(cfg: PretrainConfig, device: torch.device) -> SSLModel:
    torch.manual_seed(cfg.seed)
    return load_method(cfg.method).make_model(build_backbone(cfg.backbone, cfg.image_size), cfg).to(device)


def decode_pool(paths: list[Path], size: int) -> tuple[np.ndarray, float]:
    """Decode every source image once at ``size`` px (what the image cache holds); returns it and seconds/image."""
    t0 = time.perf_counter()
    pool = np.stack([resize_square(read_image(p)[0], size) for p in paths])
    return pool, (time.perf_counter() - t0) / len(paths)


def engine_round(
    cfg: PretrainConfig, pool: np.ndarray, steps: int, device: torch.device, tmp: Path, tier: str | None = None
) -> Segment:
    """One measured stretch of the real ``train_loop``; the first report interval is the warm-up.

    Timed by wall clock from the end of the first report to the end of the last, so every measured step and every
    report (loss read back, health metrics) counts. ``tier`` forces where the image cache lives; ``stream`` reads
    it from a memory-mapped file, as a cache larger than memory is read.
    """
    spec = load_method(cfg.method)
    model = build_model(cfg, device)
    images = np.resize(pool, ((steps + cfg.log_every) * cfg.batch_size, *pool.shape[1:]))
    if tier == "stream":
        np.save(tmp / "cache.npy", images)
        images = np.load(tmp / "cache.npy", mmap_mode="r")
    source = BatchSource(images, cfg.batch_size, device, tier=tier)  # type: ignore[arg-type]
    reporter = CollectingReporter()
    stamps: list[tuple[float, float]] = []  # (wall, CPU) seconds at the end of each report interval

    def report(event: Event) -> None:
        if isinstance(event, Metric) and event.name == "images_per_s":
            stamps.append((time.perf_counter(), time.process_time()))  # the loop has synchronised and reported
        reporter(event)

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
        report=report,
        cancel=NEVER,
    )
    metrics = [e for e in reporter.events if isinstance(e, Metric)]
    ips = [e.value for e in metrics if e.name == "images_per_s"][1:]
    wait = [e.value for e in metrics if e.name == "data_wait"][1:]
    loop_seconds = [cfg.log_every * cfg.batch_size / x for x in ips]  # the loop's own intervals (no reporting)
    waited = sum(w * t for w, t in zip(wait, loop_seconds, strict=True))
    measured = len(ips) * cfg.log_every
    aug_s = augment_seconds(spec.make_views(cfg), source, cfg.log_every, device) * measured
    wall, cpu_s = stamps[-1][0] - stamps[0][0], stamps[-1][1] - stamps[0][1]
    return Segment(measured * cfg.batch_size, wall, waited, cpu_s, source.tier, aug_s)


def augment_seconds(make_views: Any, source: BatchSource, n: int, device: torch.device) -> float:
    """Seconds per step spent making the views of a batch, timed apart from training (synchronised)."""
    batches = [b for _, (_, b) in zip(range(n), source.epoch(0), strict=False)]
    make_views(batches[0])  # warm-up (kernels, caches)
    sync(device)
    t0 = time.perf_counter()
    for b in batches:
        make_views(b)
    sync(device)
    return (time.perf_counter() - t0) / len(batches)


def baseline_round(cfg: PretrainConfig, paths: list[Path], steps: int, workers: int, device: torch.device) -> Segment:
    """One measured stretch of the per-sample pipeline; fresh workers, so none of them runs outside its stretch.

    Reports like the engine's loop (loss read back and health metrics every ``log_every`` steps), inside the timing.
    """
    spec = load_method(cfg.method)
    model = build_model(cfg, device)
    cuda = device.type == "cuda"
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if cfg.compile else model
    opt = make_optimizer(spec, model, cfg)
    scaler = grad_scaler_for(device, cfg.amp)
    warmup = cfg.log_every
    data = FileViews(paths, (steps + warmup) * cfg.batch_size, cfg.augment, cfg.image_size)
    loader = DataLoader(
        data,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=cuda,
        prefetch_factor=4 if workers else None,
    )
    model.train()
    t0, wait = time.perf_counter(), 0.0
    it = iter(loader)
    autocast = autocast_for(device, cfg.amp)
    for s in range(warmup + steps):
        if s == warmup:
            sync(device)
            t0, wait, cpu0 = time.perf_counter(), 0.0, _tree_cpu_s(it)
        tw = time.perf_counter()
        v0, v1 = next(it)
        wait += time.perf_counter() - tw
        views = [v.to(device, non_blocking=True) for v in (v0, v1)]
        if cuda and cfg.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        out = train_step(forward, model, opt, views, None, autocast=autocast, grad_clip=0, progress=0.5, scaler=scaler)
        if (s + 1) % cfg.log_every == 0 and out.features is not None:  # what the engine's loop reports
            float(out.loss)
            health_metrics(out.features, out.features2)
    sync(device)
    segment = Segment(steps * cfg.batch_size, time.perf_counter() - t0, wait, _tree_cpu_s(it) - cpu0)
    del it, loader  # stop the workers before the next stretch
    return segment


def flops_per_image(cfg: PretrainConfig, device: torch.device) -> float:
    """Forward + backward FLOPs of one training step, per image, counted by ``FlopCounterMode``."""
    model = build_model(cfg, device).train()
    batch = torch.randint(0, 256, (cfg.batch_size, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8, device=device)
    views = load_method(cfg.method).make_views(cfg)(batch)
    with FlopCounterMode(display=False) as counter, autocast_for(device, cfg.amp):
        model(views, None).loss.backward()
    return counter.get_total_flops() / cfg.batch_size


def machine(device: torch.device) -> dict[str, Any]:
    return describe_machine(device=describe_device(device), torch=torch.__version__)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--preset", choices=list(PRESETS), help="default: cpu-small on CPU, r18-128 on CUDA")
    p.add_argument("--method", default="simclr")
    p.add_argument("--backbone", help="override the preset's backbone")
    p.add_argument("--image-size", type=int, help="override the preset's training image size")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--source-px", type=int, help="override the preset's source image size (files on disk)")
    p.add_argument("--steps", type=int, help="measured steps per round and data path")
    p.add_argument("--rounds", type=int, help="alternations engine/baseline (a shared machine drifts)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="baseline workers (default: all cores)")
    p.add_argument("--threads", type=int, help="torch intra-op threads of the training process (default: torch's)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (both paths)")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument(
        "--cache-tier",
        choices=["auto", "device", "pinned", "stream"],
        default="auto",
        help="force where the engine's image cache lives: pinned/stream take the path of data larger than GPU memory",
    )
    p.add_argument("--peak-tflops", type=float, help="the GPU's spec peak when it is not in SPEC_PEAK_TFLOPS")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    if args.cache_tier == "pinned" and device.type != "cuda":
        p.error("--cache-tier pinned needs CUDA (page-locked memory)")
    tier = None if args.cache_tier == "auto" else args.cache_tier
    configure_cuda(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.preset or ("r18-128" if device.type == "cuda" else "cpu-small")
    overrides = {
        "backbone": args.backbone,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "source": args.source_px,
    }
    preset = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
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
        n_pool = POOL if preset["source"] <= 256 else POOL // 4
        paths = write_images(tmp, n_pool, preset["source"])
        print(f"wrote {n_pool} source images in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        pool, decode_s = decode_pool(paths, cfg.image_size)
        runs: dict[str, list[Segment]] = {"engine": [], "baseline": []}
        for r in range(args.rounds or preset["rounds"]):
            runs["engine"].append(engine_round(cfg, pool, steps, device, tmp, tier))
            runs["baseline"].append(baseline_round(cfg, paths, steps, args.workers, device))
            print(
                f"round {r + 1}: "
                + ", ".join(f"{k} {v[-1].images / v[-1].seconds:.1f} images/s" for k, v in runs.items()),
                file=sys.stderr,
            )
        engine, baseline = summarise(runs["engine"]), summarise(runs["baseline"])
        engine.update(decode_once_s_per_image=decode_s, cache_tier=runs["engine"][0].tier)
        ratios = sorted(e.images / e.seconds * b.seconds / b.images for e, b in zip(*runs.values(), strict=True))
        baseline["workers"] = args.workers
    out: dict[str, Any] = {
        "bench": "pretrain",
        "preset": name,
        "machine": machine(device),
        "config": {
            "method": cfg.method,
            "backbone": cfg.backbone,
            "image_size": cfg.image_size,
            "batch_size": cfg.batch_size,
            "measured_steps_per_round": steps,
            "warmup_steps": warmup,
            "rounds": args.rounds or preset["rounds"],
            "source_px": preset["source"],
            "amp": cfg.amp and device.type == "cuda",
            "cache_tier": args.cache_tier,
            "channels_last": cfg.channels_last and device.type == "cuda",
            "compile": cfg.compile,
            "threads": torch.get_num_threads(),
        },
        "engine": engine,
        "baseline": baseline,
        "speedup": engine["images_per_s"] / baseline["images_per_s"],
        "speedup_median_round": ratios[len(ratios) // 2],
        "cpu_efficiency_ratio": engine["images_per_cpu_s"] / baseline["images_per_cpu_s"],
    }
    targets = dict(TARGETS[device.type])
    if device.type == "cuda":
        fpi = flops_per_image(cfg, device)
        gpu = torch.cuda.get_device_name(device)
        spec = args.peak_tflops or spec_peak_tflops(gpu)
        measured = matmul_flops(device)
        out.update(
            gpu=gpu,
            amp_dtype=str(amp_dtype(device)).removeprefix("torch.") if cfg.amp else "float32",
            flops_per_image=fpi,
            spec_peak_tflops=spec,
            flop_share=fpi * engine["images_per_s"] / (spec * 1e12) if spec else None,
            baseline_flop_share=fpi * baseline["images_per_s"] / (spec * 1e12) if spec else None,
            measured_matmul_tflops=measured / 1e12,
            flop_share_of_measured_matmul=fpi * engine["images_per_s"] / measured,
        )
        if name in FLOP_TARGETS:
            targets["flop_share"] = FLOP_TARGETS[name]
    out["targets"] = targets
    out["meets_targets"] = all(
        (engine["data_wait"] <= v) if k == "data_wait" else (out[k] is not None and out[k] >= v)
        for k, v in targets.items()
    )  # an unknown GPU peak (no spec share) does not meet a FLOP target
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
