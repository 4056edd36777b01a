"""How much could better synthetic defects buy? Pretrain ``synthdefect`` on the benchmark's *own* defect painters.

A diagnostic, never the product: the product's synthesis (``sslinspect.methods.synthesis``) paints generic shapes
and fills, so that the model is not shaped to one generator's idea of a defect. This script swaps it, for one
pretraining run, for the painters that draw the benchmark's test defects (``bench/quality_defects.py``), on the same
crops, with the painters' masks as hard targets and the same share of clean crops. Everything else (network, loss,
crops, epochs) is the product's. What the model then scores is a ceiling for any change to the synthesis at that
network and budget: if the model taught with the very generator of the test defects still misses them, the synthesis
is not what holds the figures down.

It is the command line with that one swap (same arguments as ``python -m sslinspect``), plus ``--families`` first::

    python bench/ceiling.py --families scratch,crack,blob_light,stain,pits,scorch,hole \\
        pretrain P.sslproj --method synthdefect --epochs 15 --max-minutes 0 --seed 0

or through the benchmark, which runs its pretraining step this way (``bench/quality.py --ceiling FAMILIES``). Name
only labelled families: the held-out family (``particle``) stays out of every design decision, this one included.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import numpy as np
import torch

from bench.quality_defects import DEFAULT_HELD_OUT, FAMILIES, paint
from sslinspect.methods import synthdefect
from sslinspect.methods.synthesis import CLEAN_SHARE, Synthetic


def painted_batch(x: torch.Tensor, families: Sequence[str], rng: np.random.Generator) -> Synthetic:
    """The benchmark's painters on a ``[0, 1]`` batch ``(N, 3, H, W)`` (on the host): a :data:`CLEAN_SHARE` of the
    crops left clean, the others one defect of a family drawn evenly from ``families``, at native scale; targets are
    the painters' masks (0/1); ``kinds`` is -1 throughout (the kind head learns nothing here)."""
    images, targets = [], []
    for crop in x.detach().cpu():
        frame = np.ascontiguousarray(crop.permute(1, 2, 0).numpy(), np.float32)
        mask = np.zeros(frame.shape[:2], bool)
        if rng.random() >= CLEAN_SHARE:
            mask = paint(frame, families[int(rng.integers(len(families)))], rng, 1.0)
        images.append(torch.from_numpy(np.clip(frame, 0.0, 1.0)).permute(2, 0, 1))
        targets.append(torch.from_numpy(mask.astype(np.float32))[None])
    img, tgt = torch.stack(images).to(x), torch.stack(targets).to(x)
    return Synthetic(img, tgt, tgt, torch.full((len(x), 2), -1, dtype=torch.long, device=x.device))


def parse_families(text: str) -> list[str]:
    """A comma list of the benchmark's families; the held-out family and unknown names are refused."""
    fams = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in fams if f not in FAMILIES]
    if bad or not fams:
        raise SystemExit(f"--families: unknown or empty {bad or text!r}; known: {', '.join(FAMILIES)}")
    if DEFAULT_HELD_OUT in fams:
        raise SystemExit(f"--families: {DEFAULT_HELD_OUT} is the held-out family; it is never trained on")
    return fams


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "--families":
        raise SystemExit(__doc__)
    families = parse_families(args[1])

    def synthesize(x: torch.Tensor, generator: torch.Generator | None = None, clean_share: float = 0.0) -> Synthetic:
        # seeded from torch's global stream, which `pretrain --seed` seeds: the run is repeatable
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item()))
        return painted_batch(x, families, rng)

    synthdefect.synthesize = synthesize  # the one swap
    print(f"ceiling run: synthdefect taught with the benchmark's painters ({', '.join(families)}), not the product's")
    from sslinspect.cli import main as cli_main

    return int(cli_main(args[2:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
