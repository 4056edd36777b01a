"""View makers (multi-crop, tiles, rotations) and the augmentation presets, on real tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sslinspect.config import AUGMENT_PRESETS, AugmentConfig, PretrainConfig
from sslinspect.configio import apply_override, from_dict, load_sections
from sslinspect.data.views import GridTiles, MultiCrop, Rotations, gaussian_blur, local_crop_size, tile_size
from sslinspect.errors import ConfigError
from sslinspect.preprocess import normalize_u8

STILL = AugmentConfig(
    crop_min_scale=1.0, flip=False, rotate_deg=0.0, brightness=0.0, contrast=0.0, blur_prob=0.0, noise_std=0.0
)


@pytest.mark.parametrize(("size", "local"), [(32, 16), (64, 32), (128, 48), (224, 96)])
def test_multicrop_gives_two_global_then_local_views(tiny_images: np.ndarray, size: int, local: int) -> None:
    assert local_crop_size(size) == local
    batch = torch.from_numpy(np.ascontiguousarray(tiny_images[:4]))
    batch = torch.nn.functional.interpolate(batch.permute(0, 3, 1, 2).float(), size=size).round().byte()
    views = MultiCrop(AugmentConfig(), size, 3)(batch.permute(0, 2, 3, 1).contiguous())
    assert [tuple(v.shape) for v in views] == [(4, 3, size, size)] * 2 + [(4, 3, local, local)] * 3
    assert not torch.equal(views[0], views[1])


def test_rotation_views_are_quarter_turns_of_one_unflipped_view(tiny_images: np.ndarray) -> None:
    maker = Rotations(AugmentConfig.from_preset("orientation-free"), 32)
    assert not maker.cfg.flip and not maker.cfg.rot90
    views = maker(torch.from_numpy(tiny_images[:4]))
    for k, v in enumerate(views):
        torch.testing.assert_close(v, torch.rot90(views[0], k, dims=(2, 3)))


def test_grid_tiles_without_gap_are_the_standardised_cells(tiny_images: np.ndarray) -> None:
    images = torch.from_numpy(tiny_images[:6])
    big = torch.nn.functional.interpolate(images.permute(0, 3, 1, 2).float(), size=96, mode="bilinear")
    big_u8 = big.round().clamp(0, 255).byte().permute(0, 2, 3, 1).contiguous()
    (tiles,) = GridTiles(STILL, 96, fill=1.0)(big_u8)
    full = normalize_u8(big_u8)
    cells = torch.stack([full[:, :, r * 32 : r * 32 + 32, c * 32 : c * 32 + 32] for r in range(3) for c in range(3)], 1)
    std = cells.std((2, 3, 4), keepdim=True) + 1e-3
    mean = cells.mean((3, 4), keepdim=True)
    want = (cells - mean) / std * std.mean() + mean.mean((0, 1), keepdim=True)
    torch.testing.assert_close(tiles, want, atol=1e-4, rtol=1e-4)


def test_grid_tiles_with_a_gap_are_jittered_inside_their_cells(tiny_images: np.ndarray) -> None:
    maker = GridTiles(STILL, 96)
    assert maker.tile == tile_size(96) == 24
    (a,) = maker(torch.from_numpy(tiny_images[:2]))
    (b,) = maker(torch.from_numpy(tiny_images[:2]))
    assert a.shape == (2, 9, 3, 24, 24) and not torch.equal(a, b)
    # every tile has the batch's mean level per channel: brightness gives no cue to the position
    level = a.mean((3, 4))
    torch.testing.assert_close(level, level[:1, :1].expand_as(level), atol=1e-4, rtol=0)


def test_full_area_crops_keep_the_whole_image_unstretched(tiny_images: np.ndarray) -> None:
    from sslinspect.data.views import augment

    x = torch.from_numpy(tiny_images[:4])
    torch.testing.assert_close(augment(x, STILL, 32), normalize_u8(x), atol=1e-5, rtol=0)


def test_cpu_blur_changes_only_the_chosen_images() -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 3, 16, 16)
    y = gaussian_blur(x, 0.3, 1.0)
    changed = (y - x).abs().amax((1, 2, 3)) > 1e-6
    assert 5 < int(changed.sum()) < 40
    assert y[changed].std() < x[changed].std()


def test_presets_set_their_fields_and_keep_the_rest() -> None:
    free = AugmentConfig.from_preset("orientation-free")
    assert free.rot90 and free.flip and free.crop_min_scale == AugmentConfig().crop_min_scale
    assert AugmentConfig.from_preset("industrial-gray") == AugmentConfig()
    assert AugmentConfig.from_preset("fixed-orientation", rotate_deg=1.0).rotate_deg == 1.0
    for name in AUGMENT_PRESETS:
        assert AugmentConfig.from_preset(name).hue == (0.1 if name == "natural" else 0.0)


def test_unknown_preset_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'shiny'; known: industrial-gray, industrial-color"):
        AugmentConfig.from_preset("shiny")


def test_presets_are_reachable_from_set_and_config_files(tmp_path: Path) -> None:
    cfg = apply_override(PretrainConfig(), "augment", "orientation-free")
    assert cfg.augment == AugmentConfig.from_preset("orientation-free")
    cfg = from_dict(PretrainConfig, {"augment": "natural"}, section="pretrain")
    assert cfg.augment.crop_min_scale == 0.08
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"pretrain": {"augment": "industrial-color"}}), encoding="utf-8")
    sections = load_sections(path, ["pretrain.augment.hue=0.02"])
    pre = sections["pretrain"]
    assert isinstance(pre, PretrainConfig)
    assert pre.augment.saturation == 0.15 and pre.augment.hue == 0.02
