"""Batches of cached ``uint8`` images on the training device.

Where the cache lives is chosen once (:func:`plan_cache`):

- ``device``: the whole cache fits comfortably in GPU memory. It is uploaded once, in chunks (the host never holds
  a second copy of a cache that can be larger than RAM), and batches are gathered on the GPU.
- ``pinned``: on CUDA, when it does not fit the GPU but fits host RAM: it is copied into page-locked host memory;
  a background thread gathers each batch there and copies it to the GPU on a side stream, overlapping the
  training step.
- ``stream``: otherwise a background thread gathers batches from the memory-mapped cache (on CUDA into pinned
  buffers, copied on the side stream as above).

No per-sample Python work sits on the training path. The loop moves a GPU-resident cache out of GPU memory
(:meth:`BatchSource.release_device_cache`) when the GPU runs out of memory.

In a distributed run every rank draws the same seeded permutation per epoch and takes its own disjoint slice of
each step's global batch, so together the ranks see exactly the batches one process would.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch

Tier = Literal["device", "pinned", "stream"]
CHUNK_BYTES = 256 * 2**20  # upload / pinning granularity: the largest extra host buffer a cache move needs


def available_host_bytes() -> int | None:
    """Memory the OS can still give this process (Linux ``MemAvailable``), or None when unknown."""
    try:
        with Path("/proc/meminfo").open(encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def plan_cache(
    nbytes: int,
    device: torch.device,
    *,
    free_device: int | None,
    free_host: int | None,
    gpu_share: float = 0.3,
    host_share: float = 0.5,
) -> Tier:
    """Where a cache of ``nbytes`` should live for training on ``device`` (see the module docstring)."""
    if device.type != "cuda":
        return "stream"
    if free_device is not None and nbytes < gpu_share * free_device:
        return "device"
    if free_host is not None and nbytes < host_share * free_host:
        return "pinned"
    return "stream"


def copy_in_chunks(images: np.ndarray, out: torch.Tensor, chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """Copy ``images`` (a memory map is fine) into ``out`` (same shape, any device), ``chunk_bytes`` at a time.

    Only one chunk is read into host memory at once (pinned, when ``out`` is on a GPU, so the copy is a DMA).
    """
    n = len(images)
    per_row = max(1, images[:1].nbytes)
    rows = max(1, chunk_bytes // per_row)
    staging: torch.Tensor | None = None
    for start in range(0, n, rows):
        part = np.ascontiguousarray(images[start : start + rows])
        src = torch.from_numpy(part)
        if out.device.type == "cuda":
            if staging is None:
                staging = torch.empty((rows, *images.shape[1:]), dtype=torch.uint8, pin_memory=True)
            src = staging[: len(part)].copy_(src)
        out[start : start + len(part)].copy_(src)  # blocking: the staging buffer is reused next
    return out


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
        tier: Tier | None = None,
        rows: np.ndarray | None = None,
    ) -> None:
        """Serve ``images`` (a memory-mapped cache is fine) in global batches of ``batch_size``.

        The global batch is capped at the image count and rounded down to a multiple of ``world_size``. ``tier``
        forces where the cache lives (None: :func:`plan_cache` decides; ``device`` also works on the CPU, where
        the "device" is host memory, for tests). ``rows``: the cache rows to serve (None: every image); batches
        still carry cache row numbers.

        Raises:
            ValueError: if there are fewer images than ranks.
        """
        self.rows = np.arange(len(images), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        if len(self.rows) < world_size:
            raise ValueError(f"{len(self.rows)} images cannot be shared by {world_size} processes")
        self.images = images
        self.device = device
        self.seed = seed
        self.prefetch = prefetch
        self.rank, self.world_size = rank, world_size
        self.global_batch_size = 0
        self.batch_size = 0
        self.set_batch_size(batch_size)
        self.wait_s = 0.0  # time the consumer spent waiting for data (reset by the caller)
        self.cuda = device.type == "cuda"
        self._resident: torch.Tensor | None = None
        self._pinned: torch.Tensor | None = None
        self._copy_stream = torch.cuda.Stream(device) if self.cuda else None
        if tier is None:
            free_device = int(torch.cuda.mem_get_info(device)[0]) if self.cuda else None
            tier = plan_cache(
                images.nbytes, device, free_device=free_device, free_host=available_host_bytes(), gpu_share=gpu_share
            )
        if tier == "device":
            out = torch.empty(images.shape, dtype=torch.uint8, device=device)
            self._resident = copy_in_chunks(images, out)
        elif tier == "pinned":
            self._pin()

    def _pin(self) -> None:
        out = torch.empty(self.images.shape, dtype=torch.uint8, pin_memory=True)
        self._pinned = copy_in_chunks(self.images, out)

    @property
    def tier(self) -> Tier:
        """Where the cache lives now."""
        return "device" if self._resident is not None else "pinned" if self._pinned is not None else "stream"

    def release_device_cache(self) -> bool:
        """Move a GPU-resident cache out of GPU memory (to pinned host memory when it fits there, else served from
        the memory map); returns whether there was one. The caller empties the CUDA cache afterwards."""
        if self._resident is None:
            return False
        self._resident = None
        free_host = available_host_bytes()
        if self.cuda and free_host is not None and self.images.nbytes < 0.5 * free_host:
            self._pin()
        return True

    def set_batch_size(self, global_batch: int) -> None:
        """Change the global batch (the loop halves it after a GPU out-of-memory error)."""
        g = min(global_batch, len(self.rows))
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
        return len(self.rows) // self.global_batch_size

    def order(self, epoch: int) -> np.ndarray:
        """The deterministic sample order of ``epoch`` (so a resumed run sees the same batches)."""
        return self.rows[np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))]

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

    def _gather(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]:
        """This rank's batch ``idx`` on the device; on CUDA copied on the side stream, with the event to wait for."""
        idx = np.sort(idx)  # sorted: sequential reads from the memory map
        rows = torch.from_numpy(idx.astype(np.int64))
        if not self.cuda:
            return rows, torch.from_numpy(self.images[idx]), None
        batch = torch.empty((len(idx), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=True)
        if self._pinned is not None:
            torch.index_select(self._pinned, 0, rows, out=batch)
        else:
            np.take(self.images, idx, axis=0, out=batch.numpy())
        rows = rows.pin_memory()
        assert self._copy_stream is not None
        with torch.cuda.stream(self._copy_stream):  # overlaps the training step on the default stream
            rows_d = rows.to(self.device, non_blocking=True)
            batch_d = batch.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self._copy_stream)
        return rows_d, batch_d, done

    def _threaded(self, perm: np.ndarray, steps: range) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        q: queue.Queue[tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None] | BaseException | None]
        q = queue.Queue(maxsize=self.prefetch)
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
                rows, batch, done = item
                if done is not None:  # the training stream waits for the side-stream copy, not the host
                    stream = torch.cuda.current_stream(self.device)
                    stream.wait_event(done)
                    rows.record_stream(stream)
                    batch.record_stream(stream)
                yield rows, batch
        finally:
            stop.set()
            while t.is_alive():  # drain so the producer never blocks on a full queue
                with contextlib.suppress(queue.Empty):
                    q.get(timeout=0.1)
            t.join()
