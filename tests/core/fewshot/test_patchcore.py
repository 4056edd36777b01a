"""Patch features, tiling, coreset selection and held-out nearest-neighbour distances."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sslinspect.fewshot.patchcore import (
    FeatureNet,
    defect_descriptor,
    gaussian_kernel,
    greedy_coreset,
    nn_distance,
    score_patches,
)
from sslinspect.model.backbones import build_backbone


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def test_tiles_are_processed_alone_and_stitched_in_place() -> None:
    torch.manual_seed(0)
    net = FeatureNet(build_backbone("tiny_cnn", 32), 32, tiles=2).eval()
    single = FeatureNet(net.backbone, 32, tiles=1).eval()
    x = _images(2, 64)
    with torch.no_grad():
        g, p = net(x)
        _, p_tl = single(x[:, :32, 32:])  # top-right tile
        _, p_bl = single(x[:, 32:, :32])  # bottom-left tile
    h = p_tl.shape[-1]
    assert p.shape[-2:] == (2 * h, 2 * h)
    torch.testing.assert_close(p[:, :, :h, h:], p_tl)
    torch.testing.assert_close(p[:, :, h:, :h], p_bl)
    torch.testing.assert_close(g.norm(dim=1), torch.ones(2))


def test_patch_features_have_unit_length() -> None:
    torch.manual_seed(0)
    net = FeatureNet(build_backbone("tiny_cnn", 32), 32).eval()
    with torch.no_grad():
        _, p = net(_images(3, 32))
    torch.testing.assert_close(p.norm(dim=1), torch.ones(p.shape[0], *p.shape[2:]))


def test_coreset_picks_one_point_from_every_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16)) * 10
    x = np.concatenate([c + rng.normal(size=(200, 16)) * 0.1 for c in centres]).astype(np.float32)
    idx = greedy_coreset(torch.from_numpy(x), 6, proj_dim=8).numpy()
    assert sorted(set((idx // 200).tolist())) == list(range(6))


def test_an_image_never_matches_its_own_bank_patches() -> None:
    rng = np.random.default_rng(1)
    bank = F.normalize(torch.from_numpy(rng.normal(size=(40, 8)).astype(np.float32)), dim=1)
    owners = torch.arange(40) // 10  # images 0..3, 10 patches each
    patches = bank[10:20][None]  # image 1's own patches
    own, _ = nn_distance(patches, bank)
    held, idx = nn_distance(patches, bank, owners=owners, exclude=torch.tensor([1]))
    assert float(own.max()) < 1e-6
    assert float(held.min()) > 0.05 and not bool(((idx >= 10) & (idx < 20)).any())


def test_distances_match_brute_force_across_bank_chunks() -> None:
    rng = np.random.default_rng(2)
    bank = F.normalize(torch.from_numpy(rng.normal(size=(5000, 12)).astype(np.float32)), dim=1)
    patches = F.normalize(torch.from_numpy(rng.normal(size=(2, 7, 12)).astype(np.float32)), dim=2)
    dist, idx = nn_distance(patches, bank)
    brute = torch.cdist(patches.reshape(-1, 12), bank)
    torch.testing.assert_close(dist.reshape(-1), brute.min(1).values, atol=1e-5, rtol=0)
    assert (idx.reshape(-1) == brute.argmin(1)).all()


def test_defect_descriptor_takes_the_patch_at_the_anomaly_peak() -> None:
    rng = np.random.default_rng(3)
    bank = F.normalize(torch.from_numpy(rng.normal(size=(30, 6)).astype(np.float32)), dim=1)
    patches = F.normalize(torch.from_numpy(rng.normal(size=(2, 6, 4, 4)).astype(np.float32)), dim=1)
    g = F.normalize(torch.from_numpy(rng.normal(size=(2, 5)).astype(np.float32)), dim=1)
    smoothed, idx = score_patches(patches, bank, gaussian_kernel(0.5))
    d = defect_descriptor(g, patches, smoothed, bank, idx)
    assert d.shape == (2, 5 + 6 + 6)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2))
    peak = smoothed.reshape(2, -1).argmax(1)
    local = patches.permute(0, 2, 3, 1).reshape(2, 16, 6)[torch.arange(2), peak]
    torch.testing.assert_close(d[:, 5:11] * 3**0.5, F.normalize(local, dim=1))
