"""Synthetic defects: masks where asked, soft targets in [0, 1], repeatable for a seed, and the batched on-device
path equal to rendering each sample on its own (the reference path)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sslinspect.config import AugmentConfig
from sslinspect.methods.synthdefect import NativeCrops, focal_loss, soft_dice_loss
from sslinspect.methods.synthesis import FILLS, SHAPES, draw, render, synthesize


def _texture(n: int = 12, size: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(n, 3, size + 4, size + 4, generator=g), 5, stride=1)
    return (base - base.amin()) / (base.amax() - base.amin()) * 0.6 + 0.2


def _forced(n: int, shape: int, fill: int, seed: int = 0):  # type: ignore[no-untyped-def]
    d = draw(n, 48, 48, generator=torch.Generator().manual_seed(seed), clean_share=0.0)
    return d.__class__(
        **{
            **{f: getattr(d, f) for f in d.__slots__},
            "shape": torch.full((n,), shape),
            "fill": torch.full((n,), fill),
        }
    )


@pytest.mark.parametrize("shape", range(len(SHAPES)), ids=list(SHAPES))
def test_every_shape_draws_a_non_empty_mask_of_a_small_share(shape: int) -> None:
    x = _texture()
    s = render(x, _forced(len(x), shape, fill=list(FILLS).index("colour")))
    area = (s.mask > 0.5).float().mean((1, 2, 3))
    assert bool((area > 0).all()), "a defect was asked for and none was drawn"
    assert float(area.max()) < 0.35, "a 'defect' covering most of the frame teaches nothing local"


@pytest.mark.parametrize("fill", [k for k, f in enumerate(FILLS) if f != "warp"], ids=[f for f in FILLS if f != "warp"])
def test_every_fill_changes_pixels_only_inside_the_mask(fill: int) -> None:
    """(A warp resamples the whole crop: test_a_warp_bends_the_texture_without_a_seam.)"""
    x = _texture()
    s = render(x, _forced(len(x), shape=0, fill=fill))
    outside = s.mask == 0
    assert torch.equal(s.images.expand_as(x)[outside.expand_as(x)], x[outside.expand_as(x)])
    assert float((s.images - x).abs().sum()) > 0
    assert float(s.target.min()) >= 0.0 and float(s.target.max()) <= 1.0
    assert bool((s.target[outside] == 0).all()), "target outside the drawn shape"


def test_clean_samples_stay_untouched_with_zero_target() -> None:
    x = _texture()
    s = synthesize(x, torch.Generator().manual_seed(1), clean_share=1.0)
    assert torch.equal(s.images, x.clamp(0, 1))
    assert float(s.target.abs().sum()) == 0.0


def test_same_seed_same_defects_other_seed_other_defects() -> None:
    x = _texture()
    a = synthesize(x, torch.Generator().manual_seed(3))
    b = synthesize(x, torch.Generator().manual_seed(3))
    c = synthesize(x, torch.Generator().manual_seed(4))
    assert torch.equal(a.images, b.images) and torch.equal(a.target, b.target)
    assert not torch.equal(a.target, c.target)


def test_soft_targets_grade_with_visibility() -> None:
    """A fainter change of the same shape gets a softer target (NSA-style soft labels), never a larger one."""
    x = _texture()
    d = _forced(len(x), shape=0, fill=list(FILLS).index("intensity"))
    strong = render(x, d.__class__(**{**{f: getattr(d, f) for f in d.__slots__}, "opacity": torch.ones(len(x))}))
    faint = render(
        x, d.__class__(**{**{f: getattr(d, f) for f in d.__slots__}, "opacity": torch.full((len(x),), 0.05)})
    )
    assert bool((faint.target.amax((1, 2, 3)) <= strong.target.amax((1, 2, 3)) + 1e-6).all())
    assert float(faint.target.mean()) < float(strong.target.mean())


def test_batched_render_equals_per_sample_reference() -> None:
    """The batched path (split by kind, one call per kind) gives exactly what rendering each sample alone gives."""
    x = _texture(n=16)
    d = draw(16, 48, 48, generator=torch.Generator().manual_seed(7))
    batched = render(x, d)
    donor = x.roll(1, 0)
    for i in range(len(x)):
        one = render(x[i : i + 1], d.take(torch.tensor([i])), donor[i : i + 1])
        torch.testing.assert_close(one.mask, batched.mask[i : i + 1], rtol=0, atol=1e-5)
        torch.testing.assert_close(one.images, batched.images[i : i + 1], rtol=0, atol=1e-5)
        torch.testing.assert_close(one.target, batched.target[i : i + 1], rtol=0, atol=1e-5)


def test_native_crops_keep_the_pixels_of_the_frame() -> None:
    """No resizing: every crop is a window of its frame, pixel for pixel (a 1 px scratch stays 1 px)."""
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.integers(0, 256, (4, 40, 40, 3), dtype=np.uint8))
    cfg = AugmentConfig(flip=False, rot90=False, brightness=0.0, contrast=0.0)
    (crops,) = NativeCrops(cfg, 40, 16)(frames)
    assert crops.shape == (4, 3, 16, 16)
    for i in range(4):
        c = (crops[i].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        f = frames[i].numpy()
        hits = [(r, q) for r in range(25) for q in range(25) if np.array_equal(f[r : r + 16, q : q + 16], c)]
        assert hits, "crop is not a native-resolution window of its frame"


def test_losses_reward_the_right_map() -> None:
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:8, 4:8] = 1
    good = (target * 2 - 1) * 6
    assert float(focal_loss(good, target)) < float(focal_loss(-good, target))
    assert float(soft_dice_loss(good, target)) < 0.05 < float(soft_dice_loss(-good, target))


@pytest.mark.parametrize("fill", range(len(FILLS)), ids=list(FILLS))
def test_grey_frames_get_grey_defects_and_colour_frames_keep_their_colour(fill: int) -> None:
    """A mono camera never sees colour: on a grey frame every fill stays grey, so the model cannot learn 'a tint is a
    defect' and must learn what changes in grey. A colour frame in the same batch is painted as before."""
    grey = _texture(n=6).mean(1, keepdim=True).expand(6, 3, 48, 48)
    colour = _texture(n=6, seed=1)
    x = torch.cat([grey, colour])
    d = _forced(len(x), shape=0, fill=fill)
    s = render(x, d)
    span = s.images.amax(1) - s.images.amin(1)
    assert float(span[:6].max()) == 0.0, f"a {list(FILLS)[fill]} fill put colour on a grey frame"
    alone = render(colour, d.take(torch.arange(6, 12)), x.roll(1, 0)[6:])
    torch.testing.assert_close(alone.images, s.images[6:], rtol=0, atol=1e-6)
    if list(FILLS)[fill] == "colour":
        assert float(span[6:].max()) > 0.05


@pytest.mark.parametrize("shape", range(len(SHAPES)), ids=list(SHAPES))
def test_a_warp_bends_the_texture_without_a_seam(shape: int) -> None:
    """On ramps (red across, green down) the change is the displacement itself. Beyond the crop's sub-pixel shift as a
    whole (``warp_offset``: resampling softens everywhere alike) it reaches the drawn amplitude inside the defect and
    fades to a pixel or two along its edge, so nothing is cut out and moved; outside, only the shift is left."""
    n, size = 8, 96
    ramp = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 0.5 + 0.25  # away from 0 and 1: no clamping
    x = torch.stack(
        [ramp.view(1, -1).expand(size, size), ramp.view(-1, 1).expand(size, size), torch.full((size, size), 0.5)]
    )
    x = x.expand(n, 3, size, size).contiguous()
    d = draw(n, size, size, generator=torch.Generator().manual_seed(2), clean_share=0.0)
    d = d.__class__(
        **{
            **{f: getattr(d, f) for f in d.__slots__},
            "shape": torch.full((n,), shape),
            "fill": torch.full((n,), list(FILLS).index("warp")),
        }
    )
    s = render(x, d)
    total = (s.images - x)[:, :2] / 0.5 * size  # px moved along x and y
    moved = torch.linalg.vector_norm(total - d.warp_offset.view(n, 2, 1, 1), dim=1)[:, 8:-8, 8:-8]  # local; no border
    mask = s.mask[:, 0, 8:-8, 8:-8]
    peak = moved.flatten(1).amax(1)
    assert bool((peak <= d.warp_amp * 1.05 + 0.3).all()), "moved further than the drawn amplitude"
    assert float((peak / d.warp_amp).median()) >= 0.9, "the drawn amplitude is not reached"  # a peak may be cut off
    edge = (mask > 0) & (torch.nn.functional.max_pool2d(1 - (mask > 0).float()[:, None], 3, 1, 1)[:, 0] > 0)
    assert float(moved[edge].max()) <= 2.0, "the texture jumps at the edge of the defect: a seam"
    assert float(moved[mask == 0].max()) <= 0.6, "the texture moved outside the defect's mask"
    assert float(s.target[:, 0, 8:-8, 8:-8][mask == 0].abs().max()) == 0.0


def test_each_sample_carries_its_kind_and_the_kind_loss_rewards_the_right_one() -> None:
    """``Synthetic.kinds``: the drawn shape (a stroke with a fork is ``branched``) and fill (intensity split into
    darker and lighter), -1 for a clean sample; the kind loss is lower for logits that name them, and clean samples
    and pixels outside the defect weigh nothing."""
    from sslinspect.defects.describe import KIND_FILLS, KIND_SHAPES
    from sslinspect.methods.synthdefect import KINDS, kind_loss
    from sslinspect.methods.synthesis import WALK

    assert tuple(SHAPES) == KIND_SHAPES[: len(SHAPES)]
    x = _texture(n=24)
    d = draw(len(x), 48, 48, generator=torch.Generator().manual_seed(3))
    s = render(x, d)
    clean = d.clean
    assert bool((s.kinds[clean] == -1).all()) and bool((s.kinds[~clean] >= 0).all())
    fork = (d.segments[:, WALK:, 1] - d.segments[:, WALK:, 0]).norm(dim=-1).sum(1) > 0.5
    for i in torch.nonzero(~clean).flatten().tolist():
        shape, fill = KIND_SHAPES[int(s.kinds[i, 0])], KIND_FILLS[int(s.kinds[i, 1])]
        drawn = list(SHAPES)[int(d.shape[i])]
        assert shape == ("branched" if drawn == "stroke" and bool(fork[i]) else drawn)
        drawn_fill = list(FILLS)[int(d.fill[i])]
        if drawn_fill == "intensity":
            assert fill == ("lighter" if float(d.gain[i]) > 1 else "darker")
        else:
            assert fill == drawn_fill
    ns = len(KIND_SHAPES)
    right = torch.full((len(x), KINDS, 12, 12), -5.0)
    for i, (a, b) in enumerate(s.kinds.clamp(min=0).tolist()):
        right[i, a], right[i, ns + b] = 5.0, 5.0
    wrong = right.roll(1, 1)
    assert float(kind_loss(right, s.kinds, s.target)) < 0.1 < float(kind_loss(wrong, s.kinds, s.target))
    only_clean = torch.full_like(s.kinds, -1)
    assert float(kind_loss(wrong, only_clean, s.target)) == 0.0
