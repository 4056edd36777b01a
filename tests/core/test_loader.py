"""Where the image cache lives for training (GPU, pinned host memory, memory map), how it gets there (in chunks,
never a second whole copy in host memory), and that every placement serves the same batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sslinspect.data.loader import BatchSource, copy_in_chunks, plan_cache

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
GB = 2**30


class Reads:
    """An array stand-in that records how many rows each read takes (a memory map would page them in)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.reads: list[int] = []
        self.shape, self.nbytes = data.shape, data.nbytes

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: slice) -> np.ndarray:
        out = self.data[key]
        self.reads.append(len(out))
        return out


def test_the_cache_is_copied_a_chunk_at_a_time() -> None:
    data = np.random.default_rng(0).integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    src = Reads(data)
    out = copy_in_chunks(src, torch.empty(data.shape, dtype=torch.uint8), chunk_bytes=7 * 8 * 8 * 3)  # type: ignore[arg-type]
    assert torch.equal(out, torch.from_numpy(data))
    assert max(src.reads) == 7 and sum(src.reads[1:]) == 50  # (the first read measures one row)


@pytest.mark.parametrize(
    ("nbytes", "device", "free_device", "free_host", "tier"),
    [
        (1 * GB, CUDA, 10 * GB, 64 * GB, "device"),
        (20 * GB, CUDA, 40 * GB, 64 * GB, "pinned"),  # over 30 % of the free GPU memory
        (40 * GB, CUDA, 40 * GB, 64 * GB, "stream"),  # over half the available RAM as well
        (20 * GB, CUDA, 40 * GB, None, "stream"),
        (1 * GB, CPU, None, 64 * GB, "stream"),  # on the CPU the memory map is the cache
    ],
)
def test_plan_cache(nbytes: int, device: torch.device, free_device: int, free_host: int, tier: str) -> None:
    assert plan_cache(nbytes, device, free_device=free_device, free_host=free_host) == tier


def test_a_resident_cache_serves_the_same_batches_as_the_memory_map() -> None:
    images = np.random.default_rng(1).integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    resident = BatchSource(images, 8, CPU, seed=5, tier="device")
    streamed = BatchSource(images, 8, CPU, seed=5)
    assert resident.tier == "device" and streamed.tier == "stream"
    for (r1, b1), (r2, b2) in zip(resident.epoch(1), streamed.epoch(1), strict=True):
        order = r1.argsort()  # the streamed batch is sorted by row (sequential reads)
        assert torch.equal(r1[order], r2) and torch.equal(b1[order], b2)
    assert resident.release_device_cache() and resident.tier == "stream"
    assert not resident.release_device_cache()


@pytest.mark.gpu
@pytest.mark.parametrize("tier", ["device", "pinned", "stream"])
def test_every_placement_serves_the_same_batches_on_cuda(tier: str) -> None:
    images = np.random.default_rng(1).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    source = BatchSource(images, 16, CUDA, seed=5, tier=tier)  # type: ignore[arg-type]
    reference = BatchSource(images, 16, CPU, seed=5)
    assert source.tier == tier
    for (rows, batch), (ref_rows, ref_batch) in zip(source.epoch(0), reference.epoch(0), strict=True):
        assert rows.device.type == batch.device.type == "cuda"
        order = rows.argsort()
        assert torch.equal(rows[order].cpu(), ref_rows) and torch.equal(batch[order].cpu(), ref_batch)


def test_a_source_limited_to_some_rows_serves_only_those_once_per_epoch() -> None:
    images = np.random.default_rng(2).integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    rows = np.array([1, 3, 4, 8, 9, 10, 15, 22, 23, 30, 31, 39])
    source = BatchSource(images, 4, CPU, seed=5, rows=rows)
    assert source.steps_per_epoch == 3
    served = torch.cat([r for r, _ in source.epoch(0)]).numpy()
    assert sorted(served) == sorted(rows)  # every kept row once, no other
    for r, b in source.epoch(1):
        assert torch.equal(b, torch.from_numpy(images[r.numpy()]))  # batches carry cache row numbers
    whole, every = BatchSource(images, 8, CPU, seed=5), BatchSource(images, 8, CPU, seed=5, rows=np.arange(40))
    assert np.array_equal(whole.order(3), every.order(3))
