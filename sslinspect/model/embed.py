"""Embed images with a frozen backbone: ``uint8`` batches → normalised features, L2-normalised."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.errors import Cancelled
from sslinspect.events import Progress, Reporter, null_reporter
from sslinspect.preprocess import normalize_u8


@torch.no_grad()
def embed_images(
    backbone: nn.Module,
    images: np.ndarray,
    *,
    device: torch.device,
    batch_size: int = 64,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> np.ndarray:
    """L2-normalised ``float32 (N, D)`` features of ``uint8 (N, S, S, 3)`` images (a memory map is fine).

    Raises:
        Cancelled: when ``cancel`` fires between batches.
    """
    backbone = backbone.to(device).eval()
    n = len(images)
    out: np.ndarray | None = None
    cuda = device.type == "cuda"
    for start in range(0, n, batch_size):
        if cancel.is_cancelled():
            raise Cancelled("embedding cancelled")
        batch = torch.from_numpy(np.array(images[start : start + batch_size])).to(device)  # copy: memmaps are read-only
        with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False):
            feats = backbone(normalize_u8(batch))
        feats = F.normalize(feats.float(), dim=1).cpu().numpy()
        if out is None:
            out = np.empty((n, feats.shape[1]), dtype=np.float32)
        out[start : start + len(feats)] = feats
        report(Progress(stage="embed", step=min(start + batch_size, n), total=n, message="embedding images"))
    assert out is not None, "embed_images needs at least one image"
    return out
