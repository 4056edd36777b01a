"""Device choice, seeding and thread limits."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from sslinspect.errors import ConfigError


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error.

    Raises:
        ConfigError: if ``cuda`` is asked for and there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available (use --device auto or cpu)")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """A human-readable device name, e.g. ``cuda:0 (NVIDIA H100, 79 GiB)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        idx = device.index or 0
        props = torch.cuda.get_device_properties(idx)
        return f"cuda:{idx} ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    return f"cpu ({torch.get_num_threads()} threads)"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(n: int) -> None:
    """Limit torch's intra-op threads (0 leaves the default). The GUI lowers it so the window stays responsive."""
    if n > 0:
        torch.set_num_threads(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))


def versions() -> dict[str, str]:
    """Versions recorded in checkpoints, configs and model metadata."""
    import sslinspect

    out = {"sslinspect": sslinspect.__version__, "torch": str(torch.__version__)}  # TorchVersion would pickle a class
    try:
        import torchvision

        out["torchvision"] = str(torchvision.__version__)
    except ImportError:  # pragma: no cover - torchvision is a dependency
        pass
    return out


def configure_cuda(device: torch.device) -> None:
    """Fast CUDA defaults: cuDNN autotuning (fixed input sizes) and TF32 matmuls for the fp32 parts."""
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
