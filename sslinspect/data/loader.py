"""Batches of cached ``uint8`` images on the training device.

When the whole cache fits comfortably in GPU memory it is uploaded once and batches are gathered on the GPU;
otherwise a background thread gathers the next batches from the memory-mapped cache (pinned, non-blocking copy)
while the GPU works. Either way no per-sample Python work sits on the training path.

In a distributed run every rank draws the same seeded permutation per epoch and takes its own disjoint slice of
each step's global batch, so together the ranks see exactly the batches one process would.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator

import numpy as np
import torch


class BatchSource:
    """Shuffled, fixed-size batches of ``uint8 (B, S, S, 3)`` tensors on ``device``; the last short batch is dropped.

    ``batch_size`` is this rank's share of the global batch (they are equal for a single process).
    """

    def __init__(
        self,
        images: np.ndarray,
        batch_size: int,
        device: torch.device,
        *,
        seed: int = 0,
        gpu_share: float = 0.3,
        prefetch: int = 3,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """Serve ``images`` (a memory-mapped cache is fine) in global batches of ``batch_size``.

        The global batch is capped at the image count and rounded down to a multiple of ``world_size``.

        Raises:
            ValueError: if there are fewer images than ranks.
        """
        if len(images) < world_size:
            raise ValueError(f"{len(images)} images cannot be shared by {world_size} processes")
        self.images = images
        self.device = device
        self.seed = seed
        self.prefetch = prefetch
        self.rank, self.world_size = rank, world_size
        self.global_batch_size = 0
        self.batch_size = 0
        self.set_batch_size(batch_size)
        self.wait_s = 0.0  # time the consumer spent waiting for data (reset by the caller)
        self._resident: torch.Tensor | None = None
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if images.nbytes < gpu_share * free:
                self._resident = torch.from_numpy(np.array(images)).to(device)

    def set_batch_size(self, global_batch: int) -> None:
        """Change the global batch (the loop halves it after a GPU out-of-memory error)."""
        g = min(global_batch, len(self.images))
        g -= g % self.world_size
        self.global_batch_size = max(g, self.world_size)
        self.batch_size = self.global_batch_size // self.world_size

    @property
    def resident(self) -> bool:
        """True when the cache lives in GPU memory."""
        return self._resident is not None

    @property
    def steps_per_epoch(self) -> int:
        """Full (global) batches per epoch."""
        return len(self.images) // self.global_batch_size

    def order(self, epoch: int) -> np.ndarray:
        """The deterministic sample order of ``epoch`` (so a resumed run sees the same batches)."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.images))

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(rows, images)`` batches of ``epoch`` from ``start_step`` on.

        ``rows`` (int64, on the device) are the cache rows of the images, for methods that keep per-image state
        (DeepCluster's pseudo-labels).
        """
        perm = self.shard(epoch)
        steps = range(start_step, self.steps_per_epoch)
        b = self.batch_size
        if self._resident is not None:
            perm_t = torch.from_numpy(perm).to(self.device)
            for s in steps:
                rows = perm_t[s * b : (s + 1) * b]
                yield rows, self._resident[rows]
            return
        yield from self._threaded(perm, steps)

    def shard(self, epoch: int) -> np.ndarray:
        """This rank's rows of ``epoch`` in step order: its slice of every global batch, concatenated."""
        g, b = self.global_batch_size, self.batch_size
        steps = self.order(epoch)[: self.steps_per_epoch * g].reshape(self.steps_per_epoch, g)
        return np.ascontiguousarray(steps[:, self.rank * b : (self.rank + 1) * b]).reshape(-1)

    def _gather(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.sort(idx)  # sorted: sequential reads from the memory map
        batch, rows = torch.from_numpy(self.images[idx]), torch.from_numpy(idx.astype(np.int64))
        if self.device.type == "cuda":
            return rows.to(self.device), batch.pin_memory().to(self.device, non_blocking=True)
        return rows, batch

    def _threaded(self, perm: np.ndarray, steps: range) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        q: queue.Queue[tuple[torch.Tensor, torch.Tensor] | BaseException | None] = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def work() -> None:
            try:
                for s in steps:
                    if stop.is_set():
                        return
                    q.put(self._gather(perm[s * self.batch_size : (s + 1) * self.batch_size]))  # this rank's slice
                q.put(None)
            except BaseException as exc:
                q.put(exc)

        t = threading.Thread(target=work, name="batch-prefetch", daemon=True)
        t.start()
        try:
            while True:
                t0 = time.perf_counter()
                item = q.get()
                self.wait_s += time.perf_counter() - t0
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while t.is_alive():  # drain so the producer never blocks on a full queue
                with contextlib.suppress(queue.Empty):
                    q.get(timeout=0.1)
            t.join()
