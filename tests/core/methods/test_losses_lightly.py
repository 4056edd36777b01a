"""Our losses against ``lightly``'s implementations (a test-only dependency; skipped when it is not installed).

MoCo's loss has no lightly counterpart: lightly's memory-bank NT-Xent leaves the other keys of the batch out of the
negatives, ours keeps them (see docs/methods.md); it is checked against the reference in ``test_losses.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sslinspect.methods import losses

lightly_loss = pytest.importorskip("lightly.loss")

BATCHES = [2, 5, 16]
TEMPS = [0.07, 0.2, 1.0]


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("t", TEMPS)
def test_ntxent_matches_lightly(n: int, t: float) -> None:
    z0, z1 = _randn(n, 16, seed=1), _randn(n, 16, seed=2)
    want = lightly_loss.NTXentLoss(temperature=t)(z0, z1)
    torch.testing.assert_close(losses.NTXentLoss(t)(z0, z1), want)


@pytest.mark.parametrize("n", BATCHES)
def test_negative_cosine_matches_lightly(n: int) -> None:
    p, z = _randn(n, 16, seed=1), _randn(n, 16, seed=2)
    want = lightly_loss.NegativeCosineSimilarity()(p, z)  # −cos; ours is BYOL's 2 − 2·cos
    torch.testing.assert_close(losses.NegativeCosineLoss()(p, z), 2 + 2 * want)


@pytest.mark.parametrize("n", [4, 16, 64])
def test_barlow_twins_matches_lightly(n: int) -> None:
    z0, z1 = _randn(n, 32, seed=1), _randn(n, 32, seed=2)
    want = lightly_loss.BarlowTwinsLoss(lambda_param=5e-3)(z0, z1)
    torch.testing.assert_close(losses.BarlowTwinsLoss(5e-3)(z0, z1), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("tt", [0.04, 0.07])
@pytest.mark.parametrize("n_local", [0, 4])
def test_dino_matches_lightly_including_the_center(n: int, tt: float, n_local: int) -> None:
    teacher = [_randn(n, 32, seed=s) for s in (1, 2)]
    student = [_randn(n, 32, seed=s) for s in range(10, 12 + n_local)]
    theirs = lightly_loss.DINOLoss(output_dim=32, warmup_teacher_temp=tt, teacher_temp=tt, center_momentum=0.9)
    ours = losses.DINOLoss(32, center_momentum=0.9)
    for _ in range(2):  # the second call uses the centre updated by the first
        torch.testing.assert_close(ours(student, teacher, tt), theirs(teacher, student, teacher_temp=tt))
    torch.testing.assert_close(ours.center, theirs.center.view(1, -1))


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("n_local", [0, 2])
def test_swav_matches_lightly(n: int, n_local: int) -> None:
    protos = F.normalize(_randn(20, 8, seed=50), dim=1)
    scores = [F.normalize(_randn(n, 8, seed=s), dim=1) @ protos.T for s in range(2 + n_local)]
    want = lightly_loss.SwaVLoss(temperature=0.1)(scores[:2], scores[2:])
    torch.testing.assert_close(losses.SwAVLoss(0.1)(scores[:2], scores[2:]), want.view(()))
