"""Every loss against a plain reference computation written here with loops, for values and symmetry, over batch
sizes and temperatures; batch-wide losses also against a simulated second process (the ``gather`` contract)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn.functional as F

from sslinspect.methods.losses import (
    BarlowTwinsLoss,
    DINOLoss,
    MoCoLoss,
    NegativeCosineLoss,
    NTXentLoss,
    SwAVLoss,
    sinkhorn,
)

BATCHES = [2, 5, 16]
TEMPS = [0.07, 0.2, 1.0]


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float()


def ntxent_reference(z0: torch.Tensor, z1: torch.Tensor, t: float) -> float:
    z = torch.cat([z0, z1]).double()
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        den = sum(math.exp(_cos(z[i], z[k]) / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(_cos(z[i], z[pos]) / t) / den)
    return total / n2


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("t", TEMPS)
def test_ntxent_matches_reference_and_is_symmetric(n: int, t: float) -> None:
    z0, z1 = _randn(n, 8, seed=1), _randn(n, 8, seed=2)
    loss = NTXentLoss(t)
    assert float(loss(z0, z1)) == pytest.approx(ntxent_reference(z0, z1, t), rel=1e-5)
    assert float(loss(z0, z1)) == pytest.approx(float(loss(z1, z0)), rel=1e-6)


def test_ntxent_is_low_for_matching_views_and_high_for_random_ones() -> None:
    z = _randn(16, 32)
    loss = NTXentLoss(0.1)
    assert float(loss(z, z + 0.01 * _randn(16, 32, seed=3))) < 0.1 < float(loss(z, _randn(16, 32, seed=4)))


def moco_reference(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, t: float, scale: float) -> float:
    total = 0.0
    negatives = [*k, *queue]
    for i in range(len(q)):
        logits = [_cos(q[i], x) / t for x in negatives]
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    return scale * total / len(q)


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("t", TEMPS)
@pytest.mark.parametrize("queue_len", [0, 7])
def test_moco_matches_reference(n: int, t: float, queue_len: int) -> None:
    q, k, queue = _randn(n, 8, seed=1), _randn(n, 8, seed=2), _randn(queue_len, 8, seed=3)
    assert float(MoCoLoss(t, scale=2 * t)(q, k, queue=queue)) == pytest.approx(
        moco_reference(q, k, queue, t, 2 * t), rel=1e-5
    )


def test_moco_keys_get_no_gradient() -> None:
    q, k = _randn(4, 8).requires_grad_(), _randn(4, 8, seed=1).requires_grad_()
    MoCoLoss()(q, k).backward()
    assert q.grad is not None and k.grad is None


@pytest.mark.parametrize("n", BATCHES)
def test_negative_cosine_matches_reference_and_is_symmetric(n: int) -> None:
    p, z = _randn(n, 8, seed=1), _randn(n, 8, seed=2)
    want = sum(2 - 2 * _cos(p[i], z[i]) for i in range(n)) / n
    assert float(NegativeCosineLoss()(p, z)) == pytest.approx(want, rel=1e-5)
    assert float(NegativeCosineLoss()(z, p)) == pytest.approx(want, rel=1e-5)


def barlow_reference(z0: torch.Tensor, z1: torch.Tensor, lam: float) -> float:
    n, d = z0.shape
    a, b = z0.double(), z1.double()

    def standard(x: torch.Tensor, j: int) -> list[float]:
        col = [float(x[i, j]) for i in range(n)]
        mean = sum(col) / n
        var = sum((v - mean) ** 2 for v in col) / n
        return [(v - mean) / math.sqrt(var + 1e-5) for v in col]

    sa, sb = [standard(a, j) for j in range(d)], [standard(b, j) for j in range(d)]
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(sa[i][k] * sb[j][k] for k in range(n)) / n
            total += (c - 1) ** 2 if i == j else lam * c**2
    return total


@pytest.mark.parametrize("n", [4, 16])
@pytest.mark.parametrize("lam", [None, 5e-3])
def test_barlow_twins_matches_reference_and_is_symmetric(n: int, lam: float | None) -> None:
    z0, z1 = _randn(n, 6, seed=1), _randn(n, 6, seed=2)
    loss = BarlowTwinsLoss(lam)
    want = barlow_reference(z0, z1, lam if lam is not None else 1 / 6)
    assert float(loss(z0, z1)) == pytest.approx(want, rel=1e-4)
    assert float(loss(z1, z0)) == pytest.approx(want, rel=1e-4)


def dino_reference(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor, tt: float) -> float:
    total, pairs = 0.0, 0
    n = len(student[0])
    for ti, t in enumerate(teacher):
        for si, s in enumerate(student):
            if ti == si:
                continue
            for b in range(n):
                pt = F.softmax((t[b].double() - center.double()) / tt, dim=0)
                ls = F.log_softmax(s[b].double() / 0.1, dim=0)
                total += -float((pt * ls).sum()) / n
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("tt", [0.04, 0.07])
@pytest.mark.parametrize("n_local", [0, 3])
def test_dino_matches_reference_and_updates_its_center(n: int, tt: float, n_local: int) -> None:
    teacher = [_randn(n, 10, seed=s) for s in (1, 2)]
    student = [_randn(n, 10, seed=s) for s in range(10, 12 + n_local)]
    loss = DINOLoss(10, center_momentum=0.9)
    loss.center.copy_(_randn(1, 10, seed=99) * 0.1)
    before = loss.center.clone()
    assert float(loss(student, teacher, tt)) == pytest.approx(dino_reference(student, teacher, before[0], tt), rel=1e-5)
    want_center = 0.9 * before + 0.1 * torch.cat(teacher).mean(0, keepdim=True)
    torch.testing.assert_close(loss.center, want_center)


def test_dino_center_stays_put_in_eval_mode() -> None:
    loss = DINOLoss(4).eval()
    loss([_randn(2, 4)] * 3, [_randn(2, 4, seed=1)] * 2, 0.04)
    assert not loss.center.any()


def sinkhorn_reference(scores: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """SwAV's published algorithm, prototypes × samples."""
    q = torch.exp(scores.double() / eps).T
    k, b = q.shape
    q /= q.sum()
    for _ in range(iters):
        for r in range(k):
            q[r] /= q[r].sum() * k
        for c in range(b):
            q[:, c] /= q[:, c].sum() * b
    return (q * b).T


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("eps", [0.05, 0.5])
def test_sinkhorn_matches_reference_and_balances_prototypes(n: int, eps: float) -> None:
    scores = F.normalize(_randn(n, 4), dim=1) @ F.normalize(_randn(6, 4, seed=1), dim=1).T
    codes = sinkhorn(scores, epsilon=eps, iterations=3)
    torch.testing.assert_close(codes.double(), sinkhorn_reference(scores, eps, 3), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(codes.sum(1), torch.ones(n))
    balanced = sinkhorn(scores, epsilon=eps, iterations=200).sum(0)
    torch.testing.assert_close(balanced, torch.full((6,), n / 6), rtol=1e-3, atol=1e-3)


def swav_reference(global_scores: list[torch.Tensor], local_scores: list[torch.Tensor], t: float) -> float:
    views = global_scores + local_scores
    total = 0.0
    for i, g in enumerate(global_scores):
        q = sinkhorn_reference(g, 0.05, 3)
        sub = 0.0
        for v, z in enumerate(views):
            if v != i:
                sub += -float((q * F.log_softmax(z.double() / t, dim=1)).sum(1).mean())
        total += sub / (len(views) - 1)
    return total / len(global_scores)


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("n_local", [0, 2])
def test_swav_matches_reference_and_is_symmetric_in_its_global_views(n: int, n_local: int) -> None:
    protos = F.normalize(_randn(12, 8, seed=50), dim=1)
    scores = [F.normalize(_randn(n, 8, seed=s), dim=1) @ protos.T for s in range(2 + n_local)]
    loss = SwAVLoss(0.1)
    want = swav_reference(scores[:2], scores[2:], 0.1)
    assert float(loss(scores[:2], scores[2:])) == pytest.approx(want, rel=1e-5)
    assert float(loss(scores[1::-1], scores[2:])) == pytest.approx(want, rel=1e-5)


# -- the gather contract: a simulated second process -----------------------------------------------------------------
class ThreadGather:
    """A real all-gather between threads standing in for processes (rank order, own rows keep their graph)."""

    def __init__(self, rank: int, world_size: int, slots: list[torch.Tensor | None], barrier: threading.Barrier):
        self.rank, self.world_size, self._slots, self._barrier = rank, world_size, slots, barrier

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._slots[self.rank] = x
        self._barrier.wait()
        out = torch.cat([x if i == self.rank else s.detach() for i, s in enumerate(self._slots) if s is not None])
        self._barrier.wait()  # nobody overwrites a slot before everyone has read it
        return out


def run_processes(fn: Callable[[int, ThreadGather], float | torch.Tensor], world: int = 2) -> list:
    """Run ``fn(rank, gather)`` on ``world`` threads that gather from each other; results in rank order."""
    slots: list[torch.Tensor | None] = [None] * world
    barrier = threading.Barrier(world, timeout=30)
    with ThreadPoolExecutor(world) as pool:
        futures = [pool.submit(fn, r, ThreadGather(r, world, slots, barrier)) for r in range(world)]
        return [f.result() for f in futures]


@pytest.mark.parametrize(
    "make",
    [lambda: NTXentLoss(0.2), lambda: MoCoLoss(0.2, scale=0.4), lambda: BarlowTwinsLoss()],
    ids=["ntxent", "moco", "barlowtwins"],
)
def test_batch_wide_losses_give_every_process_the_global_batch_loss(make: Callable[[], torch.nn.Module]) -> None:
    inputs = [_randn(8, 6, seed=s) for s in range(2)]
    want = float(make()(*inputs))

    def rank_loss(rank: int, gather: ThreadGather) -> float:
        return float(make()(*[x[rank * 4 : (rank + 1) * 4] for x in inputs], gather=gather))

    assert run_processes(rank_loss) == pytest.approx([want, want], rel=1e-6)


def test_sinkhorn_on_two_processes_gives_each_its_rows_of_the_global_codes() -> None:
    scores = F.normalize(_randn(8, 4), dim=1) @ F.normalize(_randn(5, 4, seed=1), dim=1).T
    parts = run_processes(lambda r, g: sinkhorn(scores[r * 4 : (r + 1) * 4], gather=g))
    torch.testing.assert_close(torch.cat(parts), sinkhorn(scores))


def test_dino_center_on_two_processes_is_the_global_mean() -> None:
    teacher = [_randn(8, 5, seed=s) for s in (1, 2)]
    whole = DINOLoss(5)
    whole([_randn(8, 5, seed=3)] * 2, teacher, 0.04)

    def rank_center(rank: int, gather: ThreadGather) -> torch.Tensor:
        loss = DINOLoss(5)
        loss.update_center([t[rank * 4 : (rank + 1) * 4] for t in teacher], gather)
        return loss.center

    for center in run_processes(rank_center):
        torch.testing.assert_close(center, whole.center)
