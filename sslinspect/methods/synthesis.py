"""Synthetic defects made from the user's own images, batched on the device: generic shape primitives (irregular
noise blobs, thin strokes with forks, dot clusters) filled with changes of the image itself (another frame of the
batch, lighter/darker/tinted, blurred, noisier, a plain colour) blended with a random opacity, or the texture itself
bent around the shape (a warp), and a soft segmentation target that says how visible the change is.

Nothing here knows a particular defect catalogue: the shapes and fills are generic primitives, and the texture
comes from the batch, so the model is not shaped to one generator's idea of a defect.

- [0] Zavrtanik et al., DRAEM, 2021, https://arxiv.org/abs/2108.07610 (noise-shaped masks, random opacity)
- [1] Schlüter et al., Natural Synthetic Anomalies (NSA), 2022, https://arxiv.org/abs/2109.15222 (soft labels,
  patches of other normal images)
- [2] Li et al., CutPaste, 2021, https://arxiv.org/abs/2104.04015 (scars: thin strokes)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from sslinspect.defects.describe import KIND_FILLS, KIND_SHAPES

#: Share of each batch left clean (target 0 everywhere): the model must also learn what normal looks like.
CLEAN_SHARE = 0.3
#: Mask kinds and their shares among the synthetic samples.
SHAPES = {"blob": 0.4, "stroke": 0.35, "dots": 0.25}
#: Fill kinds and their shares.
FILLS = {"donor": 0.25, "intensity": 0.3, "blur": 0.1, "noise": 0.1, "warp": 0.15, "colour": 0.1}
#: A change whose mean absolute size inside the mask reaches this share of the image's own contrast is a full
#: defect (target 1); fainter changes get proportionally softer targets (NSA's soft labels).
VISIBLE_AT = 0.6
NOISE_CELLS = (3, 6, 12)  # value-noise grid sizes of the blob masks
WALK = 6  # segments of a stroke's main walk (its fork has half as many)
MOST_DOTS = 14
#: A frame whose channels differ by less than this everywhere is grey (a mono camera): its defects are painted grey.
GREY_SPAN = 2.0 / 255.0
#: Box size (px) of the two blurs that spread a shape into the envelope of its warp: the texture bends up to about
#: this far beyond the shape.
WARP_REACH = 15


@dataclass(frozen=True, slots=True)
class Synthetic:
    """A batch with synthetic defects: ``images`` in [0, 1] ``(N, 3, H, W)``, ``target`` soft masks in [0, 1]
    ``(N, 1, H, W)``, ``mask`` the drawn shapes (for a warp: where the texture moved) before the visibility
    weighting, ``kinds`` ``(N, 2)`` int64 the shape (index into :data:`KIND_SHAPES`) and fill (into
    :data:`KIND_FILLS`) of each sample's defect, -1 for a clean sample."""

    images: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    kinds: torch.Tensor


@dataclass(frozen=True, slots=True)
class Draw:
    """Every random number of one batch, drawn up front (:func:`draw`), so rendering is a pure function of it.

    The kind choices (``shape``, ``fill``, ``clean``, ``soften``) live on the host: rendering splits the batch by
    kind without asking the device anything (no host-device sync); everything else lives on the device.
    """

    shape: torch.Tensor  # (N,) int64, host: index into SHAPES
    fill: torch.Tensor  # (N,) int64, host: index into FILLS
    clean: torch.Tensor  # (N,) bool, host: left untouched
    soften: torch.Tensor  # (N,) bool, host: mask edges box-blurred
    opacity: torch.Tensor  # (N,)
    blob_centre: torch.Tensor  # (N, 2) px
    blob_radius: torch.Tensor  # (N,) px
    blob_area: torch.Tensor  # (N,) share of the frame
    noise: list[torch.Tensor]  # per NOISE_CELLS: (N, 1, c+1, c+1) in [0, 1]
    noise_weight: torch.Tensor  # (N, len(NOISE_CELLS))
    segments: torch.Tensor  # (N, S, 2, 2) px
    stroke_width: torch.Tensor  # (N,) px
    dots: torch.Tensor  # (N, M, 2) px
    dot_radius: torch.Tensor  # (N, M) px
    dot_active: torch.Tensor  # (N, M) bool
    gain: torch.Tensor  # (N,) intensity fill: multiplicative
    tint: torch.Tensor  # (N, 3)
    offset: torch.Tensor  # (N,)
    colour: torch.Tensor  # (N, 3)
    noise_std: torch.Tensor  # (N,)
    pixel_noise: torch.Tensor  # (N, 3, H, W) standard normal
    donor_angle: torch.Tensor  # (N,)
    donor_scale: torch.Tensor  # (N,)
    warp_field: torch.Tensor  # (N, 2, 5, 5) standard normal
    warp_amp: torch.Tensor  # (N,) px, the largest move of a warp
    warp_offset: torch.Tensor  # (N, 2) px, sub-pixel shift of the whole crop under a warp

    def take(self, idx: torch.Tensor) -> Draw:
        """The draws of samples ``idx`` (a host index tensor)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                out[f.name] = [t[idx.to(t.device)] for t in v]
            else:
                out[f.name] = v[idx.to(v.device)]
        return Draw(**out)


def _u(n: int, lo: float, hi: float, g: torch.Generator | None, dev: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=dev) * (hi - lo) + lo


_SHARES = {id(SHAPES): torch.tensor(list(SHAPES.values())), id(FILLS): torch.tensor(list(FILLS.values()))}


def _choice(n: int, shares: dict[str, float], host: torch.Generator | None) -> torch.Tensor:
    p = _SHARES[id(shares)]  # made once on the host: no tensor from Python data per step
    return torch.multinomial(p / p.sum(), n, replacement=True, generator=host)


def _walks(n: int, h: int, w: int, g: torch.Generator | None, dev: torch.device) -> torch.Tensor:
    """Random-walk polylines with an optional fork: segment end points ``(N, S, 2, 2)`` in px."""
    length = _u(n, 0.12, 0.7, g, dev) * min(h, w) / WALK
    wiggle = _u(n, 0.0, 0.7, g, dev)
    p = torch.stack([_u(n, 0.1, 0.9, g, dev) * w, _u(n, 0.1, 0.9, g, dev) * h], 1)
    theta = _u(n, 0.0, 2 * math.pi, g, dev)
    walks: list[torch.Tensor] = []
    for branch in range(2):
        if branch:  # the fork leaves from the middle of the main walk, 0.4–1.3 rad off its direction
            mid = walks[0][:, WALK // 2]
            side = torch.where(torch.rand(n, generator=g, device=dev) < 0.5, 1.0, -1.0)
            p = mid[:, 0]
            theta = torch.atan2(mid[:, 1, 1] - mid[:, 0, 1], mid[:, 1, 0] - mid[:, 0, 0])
            theta = theta + side * _u(n, 0.4, 1.3, g, dev)
        segs = []
        for _ in range(WALK if branch == 0 else WALK // 2):
            theta = theta + torch.randn(n, generator=g, device=dev) * wiggle
            q = p + torch.stack([torch.cos(theta), torch.sin(theta)], 1) * length[:, None]
            segs.append(torch.stack([p, q], 1))
            p = q
        walks.append(torch.stack(segs, 1))
    has_fork = (torch.rand(n, generator=g, device=dev) < 0.4).view(n, 1, 1, 1)
    fork = torch.where(has_fork, walks[1], walks[1][:, :1, :1].expand_as(walks[1]))  # no fork: zero-length segs
    return torch.cat([walks[0], fork], 1)


def draw(
    n: int,
    h: int,
    w: int,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    host_generator: torch.Generator | None = None,
    clean_share: float = CLEAN_SHARE,
) -> Draw:
    """Draw every random number for a batch of ``n`` frames of ``h × w`` px.

    Args:
        n: Batch size.
        h: Frame height.
        w: Frame width.
        device: Where the per-sample parameters live (the training device).
        generator: Generator on ``device`` (None: the global one).
        host_generator: CPU generator for the kind choices (None: ``generator`` if it is on the CPU, else global).
        clean_share: Share of samples left untouched.
    """
    dev, g = torch.device(device), generator
    host = host_generator if host_generator is not None else (g if dev.type == "cpu" else None)
    darker = torch.rand(n, generator=g, device=dev) < 0.5
    side = min(h, w)
    centre = torch.stack([_u(n, 0.15, 0.85, g, dev) * w, _u(n, 0.15, 0.85, g, dev) * h], 1)
    return Draw(
        shape=_choice(n, SHAPES, host),
        fill=_choice(n, FILLS, host),
        clean=torch.rand(n, generator=host) < clean_share,
        soften=torch.rand(n, generator=host) < 0.5,
        opacity=_u(n, 0.25, 1.0, g, dev),
        blob_centre=torch.stack([_u(n, 0.1, 0.9, g, dev) * w, _u(n, 0.1, 0.9, g, dev) * h], 1),
        blob_radius=_u(n, 0.04, 0.2, g, dev) * side,
        blob_area=torch.exp(_u(n, math.log(0.002), math.log(0.06), g, dev)),
        noise=[torch.rand(n, 1, c + 1, c + 1, generator=g, device=dev) for c in NOISE_CELLS],
        noise_weight=torch.rand(n, len(NOISE_CELLS), generator=g, device=dev) * 0.8 + 0.2,
        segments=_walks(n, h, w, g, dev),
        stroke_width=_u(n, 1.0, 4.0, g, dev),
        dots=centre[:, None]
        + torch.randn(n, MOST_DOTS, 2, generator=g, device=dev) * (_u(n, 0.02, 0.12, g, dev) * side).view(n, 1, 1),
        dot_radius=_u(n * MOST_DOTS, 1.0, 4.0, g, dev).view(n, MOST_DOTS),
        dot_active=torch.arange(MOST_DOTS, device=dev)[None]
        < torch.randint(3, MOST_DOTS + 1, (n, 1), generator=g, device=dev),
        # a darker fill reaches a tenth of the brightness (a hole or a crack is nearly black on any surface);
        # from 0.35 before: image AUROC 0.870 -> 0.877, gravel 0.607 -> 0.640 (bench/RESULTS.md, 2026-12-07)
        gain=torch.where(darker, _u(n, 0.1, 0.85, g, dev), _u(n, 1.15, 1.9, g, dev)),
        tint=1 + (torch.rand(n, 3, generator=g, device=dev) - 0.5) * 0.3,
        offset=torch.where(darker, -1.0, 1.0) * _u(n, 0.0, 0.15, g, dev),
        colour=torch.rand(n, 3, generator=g, device=dev),
        noise_std=_u(n, 0.04, 0.2, g, dev),
        pixel_noise=torch.randn(n, 3, h, w, generator=g, device=dev),
        donor_angle=_u(n, 0, 2 * math.pi, g, dev),
        donor_scale=torch.exp(_u(n, math.log(0.5), math.log(2.0), g, dev)),
        warp_field=torch.randn(n, 2, 5, 5, generator=g, device=dev),
        warp_amp=_u(n, 2.0, 8.0, g, dev),
        warp_offset=torch.rand(n, 2, generator=g, device=dev) - 0.5,
    )


def _grid(h: int, w: int, dev: torch.device) -> torch.Tensor:
    """Pixel centres ``(H·W, 2)`` as (x, y) in pixels."""
    ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float() + 0.5


def blob_masks(d: Draw, h: int, w: int) -> torch.Tensor:
    """Irregular blobs ``(N, 1, H, W)``: fractal value noise (Perlin-like) plus a soft bump around a centre,
    thresholded at the drawn area (0.2 %–6 % of the frame)."""
    n, dev = d.opacity.shape[0], d.opacity.device
    noise = torch.zeros(n, 1, h, w, device=dev)
    for i, (cells, grid) in enumerate(zip(NOISE_CELLS, d.noise, strict=True)):
        layer = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=True)
        noise = noise + layer * d.noise_weight[:, i].view(n, 1, 1, 1) / cells**0.5
    pts = _grid(h, w, dev)
    d2 = ((pts[None] - d.blob_centre[:, None]) ** 2).sum(-1) / d.blob_radius[:, None] ** 2
    score = noise.reshape(n, -1) + 2.0 * torch.exp(-d2)
    rank = ((1 - d.blob_area) * (score.shape[1] - 1)).long().clamp(0, score.shape[1] - 1)
    level = score.sort(1).values.gather(1, rank[:, None])  # per-sample quantile
    return (score > level).float().reshape(n, 1, h, w)


def _distance_to_segments(pts: torch.Tensor, segs: torch.Tensor) -> torch.Tensor:
    """Distance ``(N, P)`` of pixel centres ``(P, 2)`` to the nearest of each sample's segments ``(N, S, 2, 2)``."""
    a, b = segs[:, :, 0], segs[:, :, 1]  # (N, S, 2)
    ab = b - a
    ap = pts[None, None] - a[:, :, None]  # (N, S, P, 2)
    t = ((ap * ab[:, :, None]).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-6)[:, :, None]).clamp(0, 1)
    return torch.linalg.vector_norm(ap - t[..., None] * ab[:, :, None], dim=-1).amin(1)


def stroke_masks(d: Draw, h: int, w: int) -> torch.Tensor:
    """Thin anti-aliased strokes ``(N, 1, H, W)`` (1–4 px wide), straight to wiggly, sometimes forked."""
    n = d.opacity.shape[0]
    dist = _distance_to_segments(_grid(h, w, d.opacity.device), d.segments)
    return (d.stroke_width[:, None] / 2 + 0.5 - dist).clamp(0, 1).reshape(n, 1, h, w)


def dot_masks(d: Draw, h: int, w: int) -> torch.Tensor:
    """Clusters of 3–14 small discs ``(N, 1, H, W)`` (radius 1–4 px) around a centre."""
    n = d.opacity.shape[0]
    pts = _grid(h, w, d.opacity.device)
    dist = torch.linalg.vector_norm(pts[None, None] - d.dots[:, :, None], dim=-1)  # (N, M, P)
    cover = ((d.dot_radius[:, :, None] + 0.5 - dist).clamp(0, 1) * d.dot_active[:, :, None]).amax(1)
    return cover.reshape(n, 1, h, w)


def _box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (k // 2,) * 4, mode="replicate"), k, stride=1)


def _donor(x: torch.Tensor, donor: torch.Tensor, d: Draw) -> torch.Tensor:
    """Another frame's texture, rotated by any angle and rescaled ×0.5–2 (out of place)."""
    cos, sin = torch.cos(d.donor_angle) / d.donor_scale, torch.sin(d.donor_angle) / d.donor_scale
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(donor, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _local_warp(x: torch.Tensor, shape: torch.Tensor, d: Draw) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame under a smooth random displacement confined to the surroundings of ``shape`` and fading to nothing
    at their edge: a dent, a pull, a crease, never a seam (a cut-out moved as a whole would be one).

    The displacement is the drawn smooth field times an envelope (the shape spread by :data:`WARP_REACH`), scaled
    so that its largest move is ``warp_amp`` (2–8 px). Resampled bicubically: bilinear resampling at sub-pixel
    moves keeps only half to two thirds of a fine texture's detail (measured on brushed metal), so the model would
    learn "softer" instead of "bent" and flag every naturally softer patch; and the whole crop is resampled, shifted
    by a random sub-pixel ``warp_offset``, so that what softening is left is everywhere, not only in the defect.
    Returns the warped frames (the whole crop) and where pixels moved by 1 px or more beyond that shift (soft from
    0.5 px), which replaces the shape as the defect's mask.
    """
    n, _, h, w = x.shape
    env = _box_blur(_box_blur(shape, WARP_REACH), WARP_REACH)
    field = F.interpolate(d.warp_field, size=(h, w), mode="bicubic", align_corners=False) * env
    size = torch.linalg.vector_norm(field, dim=1, keepdim=True)
    disp = field * (d.warp_amp.view(n, 1, 1, 1) / size.amax((1, 2, 3), keepdim=True).clamp(min=1e-6))
    moved = (torch.linalg.vector_norm(disp, dim=1, keepdim=True) - 0.5).clamp(0, 1)
    disp = disp + d.warp_offset.view(n, 2, 1, 1)  # the whole crop is resampled: its softening is no local cue
    ident = F.affine_grid(torch.eye(2, 3, device=x.device)[None].expand(n, 2, 3), [n, 3, h, w], align_corners=False)
    grid = ident + torch.stack([disp[:, 0] * (2.0 / w), disp[:, 1] * (2.0 / h)], -1)  # px → grid units
    warped = F.grid_sample(x, grid, mode="bicubic", padding_mode="reflection", align_corners=False).clamp(0, 1)
    return warped, moved


def _fill(kind: str, x: torch.Tensor, donor: torch.Tensor, d: Draw) -> torch.Tensor:
    """What the defect area shows, for fill ``kind`` (see :data:`FILLS`)."""
    n = x.shape[0]
    if kind == "donor":
        return _donor(x, donor, d)
    if kind == "intensity":
        return x * d.gain.view(n, 1, 1, 1) * d.tint.view(n, 3, 1, 1) + d.offset.view(n, 1, 1, 1)
    if kind == "blur":
        return _box_blur(x, 7)
    if kind == "noise":
        return x + d.pixel_noise * d.noise_std.view(n, 1, 1, 1)
    return d.colour.view(n, 3, 1, 1) + d.pixel_noise * 0.02  # "colour": a plain colour, slightly grainy


_MASKS = (blob_masks, stroke_masks, dot_masks)


def render(x: torch.Tensor, d: Draw, donor: torch.Tensor | None = None) -> Synthetic:
    """Paint the defects of draw ``d`` onto ``x`` (``[0, 1]``, ``(N, 3, H, W)``); ``donor`` frames (default: the
    batch rolled by one) supply foreign texture.

    Each mask and fill kind is computed only for the samples that use it (split on the host: no device sync).
    """
    n, _, h, w = x.shape
    donor = x.roll(1, 0) if donor is None else donor
    mask = x.new_zeros(n, 1, h, w)
    active = ~d.clean
    for kind, fn in enumerate(_MASKS):
        idx = torch.nonzero(active & (d.shape == kind)).flatten()
        if len(idx):
            m = fn(d.take(idx), h, w)
            soft = (d.soften[idx] & (kind != 1)).to(x.device).view(-1, 1, 1, 1)  # strokes are anti-aliased already
            mask[idx.to(x.device)] = torch.where(soft, _box_blur(m, 3), m)
    fill = x.clone()
    whole = (active & (d.fill == list(FILLS).index("warp"))).to(x.device)  # warps replace the whole crop
    for kind, name in enumerate(FILLS):
        idx = torch.nonzero(active & (d.fill == kind)).flatten()
        if len(idx):
            i = idx.to(x.device)
            if name == "warp":  # bends the texture around the shape: where it moved becomes the mask
                fill[i], mask[i] = _local_warp(x[i], mask[i], d.take(idx))
            else:
                fill[i] = _fill(name, x[i], donor[i], d.take(idx)).clamp(0, 1)
    # a grey frame (mono camera) gets grey defects: a tint it can never show would be a cue no real defect has
    grey = (x.amax(1, keepdim=True) - x.amin(1, keepdim=True)).flatten(1).amax(1) < GREY_SPAN
    fill = torch.where(grey.view(n, 1, 1, 1), fill.mean(1, keepdim=True).expand_as(fill), fill)
    alpha = torch.where(whole.view(n, 1, 1, 1), 1.0, (mask * d.opacity.view(n, 1, 1, 1)).clamp(0, 1))
    out = (x * (1 - alpha) + fill * alpha).clamp(0, 1)
    change = (out - x).abs().mean(1, keepdim=True)
    contrast = x.mean(1, keepdim=True).flatten(1).std(1).view(n, 1, 1, 1) + 0.02
    inside = (change * mask).sum((1, 2, 3), keepdim=True) / mask.sum((1, 2, 3), keepdim=True).clamp(min=1e-6)
    visibility = (inside / (VISIBLE_AT * contrast)).clamp(0, 1)
    return Synthetic(out, (mask * visibility).clamp(0, 1), mask, _kinds(d))


_FILL_KIND = torch.tensor([KIND_FILLS.index(f if f != "intensity" else "darker") for f in FILLS])


def _kinds(d: Draw) -> torch.Tensor:
    """``(N, 2)`` shape and :data:`KIND_FILLS` index of each sample (-1: clean), on the draw's device (the host
    choices are copied there, nothing is read back)."""
    dev = d.gain.device
    fill = _FILL_KIND[d.fill].to(dev)
    lighter = (d.fill == list(FILLS).index("intensity")).to(dev) & (d.gain > 1)
    fill = torch.where(lighter, KIND_FILLS.index("lighter"), fill)
    fork = torch.linalg.vector_norm(d.segments[:, WALK:, 1] - d.segments[:, WALK:, 0], dim=-1).sum(1) > 0.5
    stroke = d.shape.to(dev) == list(SHAPES).index("stroke")
    shape = torch.where(stroke & fork, KIND_SHAPES.index("branched"), d.shape.to(dev))
    kinds = torch.stack([shape, fill], 1)
    return torch.where(d.clean.to(dev).view(-1, 1), -1, kinds)


def synthesize(
    x: torch.Tensor, generator: torch.Generator | None = None, clean_share: float = CLEAN_SHARE
) -> Synthetic:
    """Paint synthetic defects onto a ``[0, 1]`` batch ``(N, 3, H, W)``: :func:`draw` then :func:`render`.

    Args:
        x: Clean images (crops of the user's frames).
        generator: Random generator on ``x``'s device (None: the global one); a seeded one makes it repeatable.
        clean_share: Share of samples left untouched (target 0).

    Returns:
        Images with defects and their soft targets: ``mask × visibility``, where visibility is how large the change
        is inside the mask relative to the image's own contrast (1 from :data:`VISIBLE_AT` on).

    Examples:
        >>> s = synthesize(torch.rand(4, 3, 32, 32), torch.Generator().manual_seed(0))
        >>> tuple(s.target.shape), bool(((s.target >= 0) & (s.target <= 1)).all())
        ((4, 1, 32, 32), True)
    """
    n, _, h, w = x.shape
    return render(x, draw(n, h, w, device=x.device, generator=generator, clean_share=clean_share))
