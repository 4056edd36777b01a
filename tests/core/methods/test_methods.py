"""Every method trains through the real loop on tiny images with every kind of backbone it supports, refuses the
ones it does not, and keeps its method-specific state right (queue, clusters, masks, temperatures)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch

from sslinspect import api
from sslinspect.catalog import BACKBONES, METHODS
from sslinspect.data.loader import BatchSource
from sslinspect.errors import ConfigError
from sslinspect.methods import check_config, load_method
from sslinspect.methods.base import LOCAL, SSLModel
from sslinspect.methods.deepcluster import DeepCluster
from sslinspect.methods.dino import DINO
from sslinspect.methods.mocov2 import MoCoV2
from sslinspect.model.backbones import build_backbone
from sslinspect.model.checkpoint import load_checkpoint
from tests.core.methods.conftest import tiny_config, train_method

CPU = torch.device("cpu")
PAIRS = [(m, b) for m in METHODS for b in ("tiny_cnn", "vit_tiny") if BACKBONES[b].family in METHODS[m].backbones]


def train(method: str, backbone: str, images: np.ndarray, tmp: Path, **over: object) -> tuple[SSLModel, list[float]]:
    """Run the real training loop for one epoch; return the model and the reported losses."""
    return train_method(method, backbone, images, tmp, device=None, on_step=None, cuda_flags=False, **over)


@pytest.mark.parametrize(("method", "backbone"), PAIRS, ids=[f"{m}-{b}" for m, b in PAIRS])
def test_method_trains_and_changes_the_backbone(method: str, backbone: str, tiny_images: np.ndarray, tmp_path: Path):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in build_backbone(backbone, 32).state_dict().items()}
    model, losses = train(method, backbone, tiny_images, tmp_path)
    assert len(losses) == 3 and all(np.isfinite(losses))
    changed = [
        k for k, v in model.backbone.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])
    ]
    assert changed, "no backbone weight moved"
    assert model.gather is LOCAL
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epochs_done"] == 1
    # the trained backbone is still a plain feature extractor on whole, unmasked images
    with torch.no_grad():
        feats = model.backbone.eval()(torch.randn(3, 3, 32, 32))
    assert feats.shape == (3, BACKBONES[backbone].feature_dim)


@pytest.mark.parametrize(
    ("method", "backbone", "size", "option"),
    [
        ("mae", "resnet18", 64, "pretrain.backbone"),
        ("mae", "tiny_cnn", 64, "pretrain.backbone"),
        ("jigsaw", "vit_tiny", 64, "pretrain.backbone"),
        ("relpatch", "vit_small", 64, "pretrain.backbone"),
        ("dino", "vit_tiny", 72, "pretrain.image_size"),
        ("mae", "vit_tiny", 40, "pretrain.image_size"),
    ],
)
def test_impossible_combinations_are_refused_naming_the_option(method: str, backbone: str, size: int, option: str):  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=option):
        check_config(tiny_config(method, backbone, image_size=size))


def test_pretrain_refuses_before_making_a_run_folder(tiny_image_folder: Path, project_dir: Path) -> None:
    project = api.create_project(project_dir, images=[tiny_image_folder])
    with pytest.raises(ConfigError, match="mae does not work with tiny_cnn; use one of vit_tiny, vit_small"):
        api.pretrain(project, tiny_config("mae"))
    assert not list((project_dir / "runs").glob("pretrain/*"))
    project.close()


def test_mae_on_a_cnn_model_is_refused_even_without_the_config_check() -> None:
    with pytest.raises(ConfigError, match=r"pretrain\.backbone: mae needs a ViT"):
        load_method("mae").make_model(build_backbone("tiny_cnn", 32), tiny_config("mae"))


def test_mocov2_queue_fills_up_to_half_the_images_and_wraps(tiny_images: np.ndarray, tmp_path: Path) -> None:
    trained, _ = train("mocov2", "tiny_cnn", tiny_images, tmp_path, epochs=2)
    model = cast(MoCoV2, trained)
    # 24 images → capacity 12; 2 epochs × 3 steps × 8 keys = 48 enqueued
    assert int(model.queue_len) == 12 and int(model.queue_ptr) == 48 % 12
    filled = model.queue[:12]
    torch.testing.assert_close(filled.norm(dim=1), torch.ones(12))
    assert not model.queue[12:].any()


def test_deepcluster_labels_every_image_and_caps_the_clusters(tiny_images: np.ndarray, tmp_path: Path) -> None:
    trained, _ = train("deepcluster", "tiny_cnn", tiny_images, tmp_path, clusters=50)
    model = cast(DeepCluster, trained)
    assert model.pseudo.shape == (24,) and model.active == 3  # 24 images → at most 24 // 8 clusters
    assert set(model.pseudo.tolist()) <= {0, 1, 2} and len(model.class_weight) == 3


def test_kmeans_recovers_separated_clusters_and_leaves_none_empty() -> None:
    from sslinspect.methods.deepcluster import kmeans

    g = torch.Generator().manual_seed(0)
    centers = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    x = torch.nn.functional.normalize(centers.repeat_interleave(10, 0) + 0.05 * torch.randn(40, 8, generator=g), dim=1)
    labels = kmeans(x, 4, seed=1)
    assert torch.bincount(labels, minlength=4).tolist() == [10, 10, 10, 10]
    for block in labels.view(4, 10):
        assert len(set(block.tolist())) == 1
    assert torch.bincount(kmeans(x[:6], 5, seed=0), minlength=5).min() >= 1


def test_mae_masks_the_configured_share_and_patchify_keeps_pixels() -> None:
    from sslinspect.methods.mae import patchify, random_masking

    keep, mask = random_masking(3, 16, 4, CPU)
    assert mask.sum(1).tolist() == [12.0, 12.0, 12.0]
    assert all(mask[i, keep[i]].sum() == 0 for i in range(3))
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    p = patchify(x, 16)
    assert p.shape == (2, 4, 768)
    torch.testing.assert_close(p[1, 2].view(16, 16, 3).permute(2, 0, 1), x[1, :, 16:, :16])  # bottom-left patch
    model = load_method("mae").make_model(
        build_backbone("vit_tiny", 32), tiny_config("mae", "vit_tiny", mask_ratio=0.5)
    )
    assert model.keep == 2


def test_dino_teacher_temperature_warms_up_and_prototypes_thaw_after_epoch_one() -> None:
    model = cast(
        DINO, load_method("dino").make_model(build_backbone("tiny_cnn", 32), tiny_config("dino", teacher_temp=0.07))
    )
    source = BatchSource(np.zeros((8, 32, 32, 3), np.uint8), 4, CPU)
    model.on_epoch_start(0, source)
    assert model.prototypes.frozen
    model.after_step(0.15)
    assert model.teacher_temp == pytest.approx(0.055)
    model.after_step(0.9)
    assert model.teacher_temp == pytest.approx(0.07)
    model.on_epoch_start(1, source)
    assert not model.prototypes.frozen


def test_frozen_prototypes_get_a_zero_gradient() -> None:
    from sslinspect.methods.heads import CosinePrototypes

    head = CosinePrototypes(4, 3)
    head.frozen = True
    head(torch.randn(5, 4)).sum().backward()
    assert head.weight.grad is not None and not head.weight.grad.any()


def test_jigsaw_permutations_are_distinct_and_far_apart() -> None:
    from sslinspect.methods.jigsaw import jigsaw_permutations

    perms = jigsaw_permutations()
    assert perms.shape == (100, 9) and len({tuple(p) for p in perms}) == 100
    assert all(sorted(p) == list(range(9)) for p in perms)
    dists = (perms[:, None, :] != perms[None, :, :]).sum(-1) + 9 * np.eye(100, dtype=int)
    assert dists.min() >= 6
    np.testing.assert_array_equal(perms, jigsaw_permutations())  # deterministic: checkpoints keep their classes


@pytest.mark.parametrize("method", ["simclr", "mocov2", "mocov3", "byol", "simsiam", "barlowtwins", "dino", "swav"])
def test_two_view_methods_return_both_views_features_for_the_health_signal(method: str, tiny_images: np.ndarray):  # type: ignore[no-untyped-def]
    cfg = tiny_config(method)
    spec = load_method(method)
    model = spec.make_model(build_backbone("tiny_cnn", 32), cfg).train()
    out = model(spec.make_views(cfg)(torch.from_numpy(tiny_images[:8])), torch.arange(8))
    assert out.features is not None and out.features2 is not None
    assert out.features.shape == out.features2.shape == (8, 128)
    assert not torch.equal(out.features, out.features2)
