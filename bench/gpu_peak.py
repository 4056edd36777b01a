"""The GPU side of ``bench/pretrain.py``'s FLOP share: each GPU's spec peak (the share is taken against it) and a
measured matmul ceiling reported next to it."""

from __future__ import annotations

import time

import torch

from sslinspect.train.loop import amp_dtype

#: Dense (no sparsity) tensor-core peak in TFLOP/s with FP32 accumulation, from NVIDIA's datasheets: bf16, or fp16
#: for GPUs without bf16 (Volta, Turing), the precision the engine's autocast uses there. Matched in order against
#: ``torch.cuda.get_device_name()``; a GPU not listed gets no spec share unless ``--peak-tflops`` gives its peak.
SPEC_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10", 125.0),  # not A10G (AWS), which is slower
    ("RTX 6000 Ada", 364.2),
    ("RTX A6000", 154.8),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
    ("V100", 125.0),  # fp16
    ("T4", 65.0),  # fp16
)


def spec_peak_tflops(name: str) -> float | None:
    """The :data:`SPEC_PEAK_TFLOPS` entry for a GPU name, or None.

    >>> spec_peak_tflops("NVIDIA H100 PCIe"), spec_peak_tflops("NVIDIA A10G"), spec_peak_tflops("NVIDIA L40S")
    (756.0, None, 362.1)
    """
    if "A10G" in name:
        return None
    return next((peak for key, peak in SPEC_PEAK_TFLOPS if key in name), None)


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA; nothing on the CPU), so a wall-clock timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device: torch.device, n: int = 8192, iters: int = 50) -> float:
    """Achievable matmul FLOP/s on ``device`` in the autocast precision (reported next to the spec peak)."""
    a = torch.randn(n, n, device=device, dtype=amp_dtype(device))
    b = torch.randn(n, n, device=device, dtype=amp_dtype(device))
    for _ in range(5):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - t0)
