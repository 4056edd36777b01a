"""Build the patch memory bank: estimate memory first, sample patch features of presumed-good images, thin them
by greedy coreset selection, and keep the patches of suspected defects out.

Memory stays bounded whatever the project size: at most ``patch_candidates`` patch features are held at once
(each image contributes an equal, seeded random share), and the bank keeps ``patch_bank_size`` of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import FewShotConfig
from sslinspect.errors import Cancelled
from sslinspect.events import Progress, Reporter, null_reporter
from sslinspect.fewshot.patchcore import BANK_CHUNK, FeatureNet, greedy_coreset, nn_distance

PROJ_DIM = 128


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Memory the patch model needs, computed before anything runs (reported to the user)."""

    images: int
    patches_per_image: int
    feature_dim: int
    candidates: int
    bank: int
    candidate_mb: float
    bank_mb: float
    peak_mb: float
    device: str
    batch_size: int = 0  # images per batch that fit (the configured batch, or fewer on a small GPU)
    requested_batch: int = 0

    def message(self) -> str:
        """One line for the log."""
        where = "GPU memory" if self.device == "cuda" else "RAM"
        smaller = (
            f"; batch {self.batch_size} instead of {self.requested_batch} to fit the free GPU memory"
            if self.batch_size < self.requested_batch
            else ""
        )
        return (
            f"patch memory bank: {self.candidates:,} candidate patches ({self.feature_dim}-d) from {self.images:,} "
            f"images → {self.bank:,} kept by coreset; needs about {self.peak_mb:,.0f} MB of {where} "
            f"(candidates {self.candidate_mb:,.0f} MB, bank {self.bank_mb:,.1f} MB){smaller}"
        )


GPU_SHARE = 0.8  # of the free GPU memory the fit may plan for (the allocator and cuDNN need the rest)


def estimate_memory(
    n_images: int,
    patches_per_image: int,
    dim: int,
    cfg: FewShotConfig,
    device: str = "cpu",
    free_bytes: int | None = None,
) -> MemoryEstimate:
    """Memory for building and using the bank from ``n_images`` with ``patches_per_image`` patches of ``dim``.

    On CUDA the batch is chosen from the estimate and the free memory (``free_bytes``, else asked of the current
    GPU): the per-batch blocks (feature maps; the patch-to-bank similarity block, e.g. ~13 GB at batch 64, 4 tiles,
    224 px) shrink with it, so the fit fits instead of running out of memory.
    """
    candidates = min(n_images * patches_per_image, cfg.patch_candidates)
    bank = min(cfg.patch_bank_size, candidates)
    mb = 2.0**20
    cand = candidates * dim * 4
    coreset = candidates * (min(dim, PROJ_DIM) + 2) * 4  # projection, squared norms, running min distances
    per_image = max(
        patches_per_image * dim * 4 * 3,  # maps, pooled maps, patch features
        patches_per_image * min(bank, BANK_CHUNK) * 4 * 2,  # similarity block and its distances
    )
    fixed = cand + coreset + bank * dim * 4
    batch = cfg.batch_size
    if free_bytes is None and device == "cuda":
        free_bytes = int(torch.cuda.mem_get_info()[0])
    if free_bytes is not None:
        batch = max(1, min(batch, (int(free_bytes * GPU_SHARE) - fixed) // per_image))
    peak = fixed + batch * per_image
    return MemoryEstimate(
        images=n_images,
        patches_per_image=patches_per_image,
        feature_dim=dim,
        candidates=candidates,
        bank=bank,
        candidate_mb=cand / mb,
        bank_mb=bank * dim * 4 / mb,
        peak_mb=peak / mb,
        device=device,
        batch_size=batch,
        requested_batch=cfg.batch_size,
    )


def iter_features(
    net: nn.Module,
    images: np.ndarray,
    rows: np.ndarray,
    *,
    device: torch.device,
    batch_size: int,
    stage: str,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield ``(rows, global, patches)`` batch by batch for ``images[rows]`` (uint8 NHWC; a memory map is fine).

    ``net`` maps a uint8 batch to a pair of tensors: a :class:`FeatureNet` (global, patch features) or a
    :class:`~sslinspect.fewshot.segmap.SegmentationNet` (global, raw defect map).

    Raises:
        Cancelled: when ``cancel`` fires between batches.
    """
    for start in range(0, len(rows), batch_size):
        if cancel.is_cancelled():
            raise Cancelled(f"{stage} cancelled")
        r = rows[start : start + batch_size]
        batch = torch.from_numpy(np.asarray(images[r])).to(device)  # fancy indexing copies: memmaps are read-only
        # fp32, autocast off even inside a caller's: the bank, threshold and map scale must come from the features
        # the exported fp32 graph serves (bf16 features would shift them, unseen by the CPU parity check)
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            g, p = net(batch)
        yield r, g.float(), p.float()
        done = min(start + batch_size, len(rows))
        report(Progress(stage=stage, step=done, total=len(rows), message=f"{stage}: {done}/{len(rows)} images"))


@dataclass(frozen=True, slots=True)
class PatchBank:
    """The kept patches, the image row each came from, and the rows left out as suspected defects."""

    bank: torch.Tensor  # (M, D) unit rows, on the fitting device
    owners: torch.Tensor  # (M,) image row of each patch
    suspected: np.ndarray  # image rows kept out (most unusual unlabelled images)
    estimate: MemoryEstimate


def build_bank(
    net: FeatureNet,
    images: np.ndarray,
    pool: np.ndarray,
    unlabelled: np.ndarray,
    cfg: FewShotConfig,
    estimate: MemoryEstimate,
    *,
    device: torch.device,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> PatchBank:
    """Sample candidates from ``images[pool]``, select a coreset, and drop patches of suspected defects.

    Args:
        net: Feature extractor (on ``device``).
        images: All images (uint8 NHWC).
        pool: Rows presumed good (unlabelled + labelled good).
        unlabelled: Boolean mask over all rows: only unlabelled images can be suspected.
        cfg: Sizes and the expected defect share (``contamination``).
        estimate: From :func:`estimate_memory` (fixes the sizes).
        device: Where features and the coreset live.
        report: Receives progress.
        cancel: Checked between batches.
    """
    per_image = max(1, math.ceil(estimate.candidates / max(len(pool), 1)))
    gen = torch.Generator().manual_seed(cfg.seed)
    feats: list[torch.Tensor] = []
    owners: list[torch.Tensor] = []
    for rows, _, p in iter_features(
        net, images, pool, device=device, batch_size=estimate.batch_size, stage="bank", report=report, cancel=cancel
    ):
        n, d, h, w = p.shape
        flat = p.permute(0, 2, 3, 1).reshape(n, h * w, d)
        k = min(per_image, h * w)
        pick = torch.stack([torch.randperm(h * w, generator=gen)[:k] for _ in range(n)]).to(device)
        feats.append(torch.gather(flat, 1, pick[:, :, None].expand(n, k, d)).reshape(n * k, d))
        owners.append(torch.from_numpy(np.repeat(rows, k)).to(device))
    cand, own = torch.cat(feats), torch.cat(owners)
    del feats
    report(Progress(stage="coreset", step=0, total=1, message=f"coreset selection of {estimate.bank:,} patches"))
    keep = greedy_coreset(cand, estimate.bank, proj_dim=PROJ_DIM, seed=cfg.seed)
    bank, bank_owner = cand[keep], own[keep]
    report(Progress(stage="coreset", step=1, total=1, message="coreset done"))
    suspected = np.zeros(0, dtype=np.int64)
    candidates = pool[unlabelled[pool]]
    n_out = round(cfg.contamination * len(candidates))
    if n_out > 0:
        # The most unusual unlabelled images (held-out score on their sampled patches) are presumed defective:
        # greedy coreset keeps rare patches on purpose, so their defects would otherwise become "normal".
        k = cand.shape[0] // len(pool)
        scores = np.empty(len(pool), np.float32)
        step = estimate.batch_size
        for s in range(0, len(pool), step):
            blk = cand[s * k : (s + step) * k].reshape(-1, k, cand.shape[1])
            who = own[s * k : (s + step) * k : k]
            dist, _ = nn_distance(blk, bank, owners=bank_owner, exclude=who)
            scores[s : s + len(blk)] = dist.amax(1).cpu().numpy()
        order = np.argsort(-scores[unlabelled[pool]], kind="stable")
        suspected = np.sort(candidates[order[:n_out]])
        keep_rows = ~torch.isin(bank_owner, torch.from_numpy(suspected).to(device))
        bank, bank_owner = bank[keep_rows], bank_owner[keep_rows]
    return PatchBank(bank, bank_owner, suspected, estimate)
