"""Health metrics and the k-NN vote against plain reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sslinspect.train.health import (
    alignment_uniformity,
    balanced_accuracy,
    effective_rank,
    embedding_std,
    health_metrics,
    knn_predict,
    labelled_set,
)


def test_embedding_std_separates_spread_from_collapsed_features() -> None:
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(512, 64, generator=g)
    assert embedding_std(spread) == pytest.approx(1.0, abs=0.05)
    collapsed = torch.ones(512, 64) + 1e-4 * torch.randn(512, 64, generator=g)
    assert embedding_std(collapsed) < 0.01


def test_effective_rank_counts_the_used_dimensions() -> None:
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(32, 32, generator=g))[0][:, :3]
    low = torch.randn(256, 3, generator=g) @ basis.T  # 3 equal directions in 32-D
    assert effective_rank(low) == pytest.approx(3.0, abs=0.3)
    assert effective_rank(torch.randn(256, 32, generator=g)) > 25


def test_alignment_and_uniformity_reference_values() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 16, generator=g)
    align, uniform = alignment_uniformity(z, z)
    assert align == pytest.approx(0.0, abs=1e-6)
    zn = torch.nn.functional.normalize(z, dim=1)
    d2 = [float((zn[i] - zn[j]).pow(2).sum()) for i in range(64) for j in range(i + 1, 64)]
    assert uniform == pytest.approx(math.log(np.mean(np.exp(-2 * np.array(d2)))), rel=1e-4)
    assert "alignment" in health_metrics(z, z) and "alignment" not in health_metrics(z)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_knn_predict_matches_a_plain_loop(exclude_self: bool) -> None:
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(30, 8))
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    labels = rng.integers(0, 3, 30)
    query = bank if exclude_self else bank[:10] + 0.1 * rng.normal(size=(10, 8))
    got = knn_predict(query, bank, labels, 3, k=4, temperature=0.5, exclude_self=exclude_self)
    for i, q in enumerate(query):
        sims = [(float(q @ b), j) for j, b in enumerate(bank) if not (exclude_self and i == j)]
        want = np.zeros(3)
        for s, j in sorted(sims, reverse=True)[:4]:
            want[labels[j]] += math.exp(s / 0.5)
        np.testing.assert_allclose(got[i], want, rtol=1e-9)


def test_labelled_set_keeps_classes_with_two_labels_and_needs_two_classes() -> None:
    ids = (10, 11, 12, 13, 14, 15)
    s = labelled_set(ids, {10: "good", 11: "scratch", 12: "good", 15: "scratch", 14: "dent", 99: "good"})
    assert s is not None and s.classes == ("good", "scratch")
    assert s.rows.tolist() == [0, 1, 2, 5] and s.y.tolist() == [0, 1, 0, 1]
    assert labelled_set(ids, {10: "good", 11: "good", 12: "dent"}) is None


def test_balanced_accuracy_weighs_classes_equally() -> None:
    y = np.array([0, 0, 0, 0, 1])
    assert balanced_accuracy(y, np.array([0, 0, 0, 0, 0])) == 0.5
