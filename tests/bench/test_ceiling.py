"""bench/ceiling.py: the benchmark's own painters in place of the product's synthesis, for a ceiling run only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.ceiling import main, painted_batch, parse_families
from bench.quality_data import render
from sslinspect.methods import synthdefect


def _crops(n: int = 8) -> torch.Tensor:
    """``n`` real 128 px crops of generated metal frames, ``[0, 1]`` ``(N, 3, H, W)``."""
    frames = [render("metal", None, np.random.default_rng(i))[0][:128, :128] for i in range(n)]
    grey = np.stack(frames)  # metal is a mono camera's frame: three equal channels, as the loader gives it
    return torch.from_numpy(np.repeat(grey[:, None], 3, 1)).float() / 255.0


def test_painted_batch_paints_the_named_families_with_hard_masks_and_leaves_some_crops_clean() -> None:
    x = _crops(16)
    s = painted_batch(x, ["crack", "hole"], np.random.default_rng(0))
    assert s.images.shape == x.shape and s.target.shape == (16, 1, 128, 128)
    assert set(torch.unique(s.target).tolist()) <= {0.0, 1.0}
    painted = s.target.flatten(1).amax(1) > 0
    assert 0 < int(painted.sum()) < 16  # some clean crops (CLEAN_SHARE), most painted
    changed = (s.images - x).abs().amax(1)  # (N, H, W)
    assert all(float(changed[i][s.target[i, 0] > 0].max()) > 0.02 for i in torch.nonzero(painted).flatten())
    assert torch.equal(s.images[~painted], x[~painted])  # a clean crop is the crop itself
    assert bool((s.kinds == -1).all())  # no kind is taught
    again = painted_batch(x, ["crack", "hole"], np.random.default_rng(0))
    assert torch.equal(again.images, s.images) and torch.equal(again.target, s.target)


def test_families_must_be_known_and_never_the_held_out_one() -> None:
    assert parse_families("crack, hole") == ["crack", "hole"]
    with pytest.raises(SystemExit, match="held-out"):
        parse_families("crack,particle")
    with pytest.raises(SystemExit, match="unknown"):
        parse_families("crack,dent")


def test_main_swaps_the_synthesis_of_synthdefect_then_runs_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthdefect, "synthesize", synthdefect.synthesize)  # restored after the test
    product = synthdefect.synthesize
    assert main(["--families", "scratch", "pretrain", "--help"]) == 0  # the CLI's own help, after the swap
    assert synthdefect.synthesize is not product
    s = synthdefect.synthesize(_crops(4))
    assert s.target.shape == (4, 1, 128, 128) and set(torch.unique(s.target).tolist()) <= {0.0, 1.0}
