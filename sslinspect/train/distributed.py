"""Multi-process data parallel pretraining on PyTorch's own engine: DDP in processes launched by ``torchrun``.

One process per GPU (or a few CPU processes with the gloo backend, as the tests do). ``batch_size`` stays the
*global* batch: every rank trains on a disjoint ``batch_size / world_size`` slice of each step's batch. Contrastive
losses see the negatives of all ranks through :func:`gather_with_grad`; BatchNorm is synchronised across ranks by
:class:`GlobalBatchNorm` (two asynchronous all-reduces per layer; ``nn.SyncBatchNorm`` drops empty ranks with a
boolean index, a host synchronisation in every layer of every step); only rank 0 writes checkpoints, events and
snapshots.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from sslinspect.errors import ConfigError


@dataclass(frozen=True, slots=True)
class DistInfo:
    """This process's place in a distributed job (``world_size == 1``: a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and reports events."""
        return self.rank == 0


SINGLE = DistInfo()


def env_info() -> DistInfo:
    """The rank/world size that ``torchrun`` put in the environment (single process when absent).

    Raises:
        ConfigError: if the variables are malformed.
    """
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ConfigError(f"malformed torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from exc
    return DistInfo(rank, world, local) if world > 1 else SINGLE


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group of a ``torchrun`` job (no-op for a single process).

    ``nccl`` on CUDA, ``gloo`` on CPU. Rendezvous comes from torchrun's ``MASTER_ADDR``/``MASTER_PORT``.
    """
    info = env_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend, timeout=_dt.timedelta(minutes=30))
    return info


def shutdown_distributed() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        rank, world = _world()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.world = rank, world  # type: ignore[attr-defined]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        # Every rank computed a loss over the gathered batch, so the gradient of rank r's slice is the sum of what
        # all ranks send back for it.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad.chunk(ctx.world)[ctx.rank]  # type: ignore[attr-defined]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``all_gather`` of ``(B, ...)`` across ranks → ``(world·B, ...)`` in rank order, differentiable.

    The backward pass sums the incoming gradients over ranks and returns each rank its own slice, so losses that
    average over each rank's own anchors against the gathered candidates, with DDP averaging the parameter
    gradients, give exactly the gradient of the global-batch loss on one process. Identity without a process group.
    """
    if _world()[1] == 1:
        return x
    out: torch.Tensor = _GatherWithGrad.apply(x)
    return out


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over ranks (``torch.distributed.nn`` has one, deprecated since torch 2.7)."""
    if _world()[1] == 1:
        return x
    out: torch.Tensor = _AllReduceSum.apply(x)
    return out


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics cover the whole global batch, on CPU (gloo) and CUDA (NCCL).

    The computation of ``torch.nn.SyncBatchNorm`` with two differentiable all-reduces (sum and count, then the
    centred sum of squares), and nothing that waits for the GPU: ``SyncBatchNorm`` (accelerators only) indexes its
    gathered statistics with a boolean mask, a host synchronisation in every layer. Statistics are in fp32.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {input.dim()}-D)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalise with global batch statistics in training, running statistics in eval."""
        if not self.training or _world()[1] == 1:
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()
        count = x.new_full((1,), x.numel() // x.shape[1])  # a fill on the device, not a copy from the host
        sums = all_reduce_sum(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        var = all_reduce_sum(((x - mean.view(shape)) ** 2).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp(min=1), alpha=m)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm in ``module`` by a synchronised one (same parameters and buffers, same state keys).

    :class:`GlobalBatchNorm` on every device. Parameters are moved, not copied, so an optimiser built before or
    after sees the same tensors.
    """
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm | nn.SyncBatchNorm):
        bn = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        ).to(device)
        if module.affine:
            bn.weight, bn.bias = module.weight, module.bias
        bn.running_mean, bn.running_var = module.running_mean, module.running_var
        bn.num_batches_tracked = module.num_batches_tracked
        bn.train(module.training)
        return bn
    for name, child in module.named_children():
        new = convert_batchnorm(child, device)
        if new is not child:
            setattr(module, name, new)
    return module


@dataclass(frozen=True, slots=True)
class ProcessGroupGather:
    """The distributed :class:`~sslinspect.methods.base.Gather`: :func:`gather_with_grad` plus this rank's place."""

    rank: int
    world_size: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """All-gather ``x`` across ranks with gradients."""
        return gather_with_grad(x)


def attach_gather(model: nn.Module) -> bool:
    """Set ``model.gather`` (the methods' contract, see :mod:`sslinspect.methods.base`) for this process group.

    Returns False when the model declares no ``gather`` (then it has no batch-wide negatives or statistics).
    """
    if not hasattr(model, "gather"):
        return False
    rank, world = _world()
    setattr(model, "gather", ProcessGroupGather(rank, world))  # noqa: B010 - nn.Module typing forbids the plain form
    return True


def wrap_model(model: nn.Module, device: torch.device, info: DistInfo, *, sync_batchnorm: bool = True) -> nn.Module:
    """What the loop calls forward on: ``model`` itself, or a DDP wrapper with synced BatchNorm and gathers.

    Call before building the optimiser is not required (parameters are kept), but before the first forward.

    Buffers are not broadcast from rank 0 before every forward (DDP's default, a collective over every buffer, the
    MoCo queue included, in every step): synchronised BatchNorm and gathered statistics keep them equal, and
    :func:`average_batchnorm_stats` evens out local BatchNorm statistics at each epoch's end.
    """
    if not info.enabled:
        return model
    if sync_batchnorm:
        convert_batchnorm(model, device)
    attach_gather(model)
    ids = [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


@torch.no_grad()
def average_batchnorm_stats(model: nn.Module) -> None:
    """Average BatchNorm running statistics over ranks (once per epoch: unsynchronised BatchNorm leaves each rank
    its own, and checkpoints and replicas should agree). No-op for a single process."""
    _, world = _world()
    if world == 1:
        return
    for m in model.modules():
        if isinstance(m, _BatchNorm) and m.running_mean is not None and m.running_var is not None:
            for buf in (m.running_mean, m.running_var):
                dist.all_reduce(buf)
                buf.div_(world)


@contextmanager
def waiting_for_main(timeout: _dt.timedelta = _dt.timedelta(hours=24)) -> Iterator[None]:
    """Run the block (rank 0's one-off work, e.g. building the image cache) while the other ranks wait for it.

    The wait is a barrier on a side gloo group with its own long ``timeout``: on the main group (NCCL, 30 minutes)
    a first cache build of a large image set would time out and kill the job. No-op for a single process.
    """
    if _world()[1] == 1:
        yield
        return
    group = dist.new_group(backend="gloo", timeout=timeout)  # made by all ranks together, before the work
    assert isinstance(group, dist.ProcessGroup), "every rank is a member of the side group"
    try:
        yield
        dist.barrier(group=group)
    finally:
        dist.destroy_process_group(group)


def agree(flags: Sequence[bool], device: torch.device) -> list[bool]:
    """Each flag true on any rank becomes true on all (stop decisions must be taken together)."""
    return [v > 0 for v in max_over_ranks([float(f) for f in flags], device)]


def max_over_ranks(values: Sequence[float], device: torch.device) -> list[float]:
    """Each value's maximum over ranks, in one collective (the values themselves for a single process)."""
    if _world()[1] == 1:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [float(v) for v in t.tolist()]


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Average of a (detached) tensor over ranks; itself for a single process."""
    _, world = _world()
    if world == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if _world()[1] > 1:
        dist.barrier()


def torchrun_command(argv: Sequence[str], nproc: int, *, python: str = sys.executable) -> list[str]:
    """The ``torchrun`` command that runs ``sslinspect ARGV`` (minus ``--nproc-per-node``) in ``nproc`` processes.

    Examples:
        >>> torchrun_command(["pretrain", "p", "--nproc-per-node", "2", "--epochs", "3"], 2, python="py")[1:6]
        ['-m', 'torch.distributed.run', '--standalone', '--nproc-per-node', '2']
        >>> torchrun_command(["pretrain", "p", "--nproc-per-node=2"], 2, python="py")[-3:]
        ['sslinspect', 'pretrain', 'p']
    """
    rest: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--nproc-per-node", "--nproc_per_node"):
            skip = True
            continue
        if a.startswith(("--nproc-per-node=", "--nproc_per_node=")):
            continue
        rest.append(a)
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "sslinspect",
        *rest,
    ]
