"""Data of the quality benchmark: surfaces seen by a line camera, with defects and per-image pixel masks.

Surfaces (see :data:`SURFACES`): ``brick``, ``gravel`` and ``grass`` are real photographs (512×512 grey) that ship
inside the scikit-image wheel (``skimage/data/*.png``; read straight from the installed package, no download and
no import of skimage); ``metal`` (turned steel, grey) and ``fabric`` (twill, colour) are the demo's procedural
textures. Each frame is a crop of a larger canvas placed like a camera on a line: position, rotation ±3°, scale
±5 %, then the defect (painted in frame coordinates, so its mask is exact), then a lighting ramp and gain,
occasional defocus blur and sensor noise.

One surface set (``generate_surface``) under ``root/<surface>/``::

    train/img_00000.png ...   unlabeled images (names never reveal the label), ~8 % defective,
                              the held-out family never among them
    labels.csv                path,label: n_shots per labelled family plus n_good_labels good ones
    train_truth.csv           path,label,mask of every training image (evaluation and tests only)
    test/img_00000.png ...    n_test per family (held-out included) and n_test_good good images
    test.csv                  path,label,mask ('' for good images)
    masks/{train,test}_00000.png   255 where the defect is, 0 elsewhere (defective images only)
    manifest.json             parameters and counts; written last (a complete set is not regenerated)

Everything is a function of (seed, surface, split, index).
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import json
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from bench.quality_defects import DEFAULT_HELD_OUT, FAMILIES, Frame, Mask, paint
from sslinspect.demo.synth import _fabric, _metal  # the demo's procedural textures (canvas renderers)
from sslinspect.fsutil import atomic_write_text

GENERATOR_VERSION = 1
PHOTOS: tuple[str, ...] = ("brick", "gravel", "grass")
SURFACES: tuple[str, ...] = (*PHOTOS, "metal", "fabric")
DEFAULT_SURFACES: tuple[str, ...] = ("brick", "gravel", "metal", "fabric")
GOOD = "good"
_CANVAS = 1.3  # canvas side / frame side: room for the pose warp


@dataclass(frozen=True, slots=True)
class SetParams:
    """What a surface set is made of (recorded in its manifest)."""

    surface: str
    seed: int = 0
    frame: int = 256
    n_train: int = 600
    defect_rate: float = 0.08
    n_shots: int = 5
    n_good_labels: int = 10
    n_test: int = 30
    n_test_good: int = 90
    held_out: str = DEFAULT_HELD_OUT
    labelled: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.surface not in SURFACES:
            raise ValueError(f"surface must be one of {', '.join(SURFACES)}, got {self.surface!r}")
        if self.held_out not in FAMILIES:
            raise ValueError(f"held-out family must be one of {', '.join(FAMILIES)}, got {self.held_out!r}")
        if not 64 <= self.frame <= 1024:
            raise ValueError(f"frame must be 64-1024 px, got {self.frame}")
        if not self.labelled:
            object.__setattr__(self, "labelled", tuple(f for f in FAMILIES if f != self.held_out))


@dataclass(frozen=True, slots=True)
class SurfaceSet:
    """Paths of one generated surface set."""

    root: Path
    params: SetParams

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def test_dir(self) -> Path:
        return self.root / "test"

    @property
    def labels_csv(self) -> Path:
        return self.root / "labels.csv"

    @property
    def train_truth_csv(self) -> Path:
        return self.root / "train_truth.csv"

    @property
    def test_csv(self) -> Path:
        return self.root / "test.csv"

    def rows(self, split: str) -> list[dict[str, str]]:
        """The ``path,label,mask`` rows of ``train`` or ``test`` (paths relative to :attr:`root`)."""
        path = self.train_truth_csv if split == "train" else self.test_csv
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))


# -- surfaces ---------------------------------------------------------------------------------------------------------
def photo_path(name: str) -> Path:
    """The bundled photograph ``name`` inside the installed scikit-image package (found without importing it).

    Raises:
        RuntimeError: if scikit-image is not installed (``pip install -e '.[bench]'``).
    """
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {name!r} surface needs scikit-image's bundled photos: pip install -e '.[bench]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.png"
    if not path.is_file():
        raise RuntimeError(f"{path}: not in this scikit-image install")
    return path


@functools.lru_cache(maxsize=8)
def _photo(name: str) -> Frame:
    raw = cv2.imread(str(photo_path(name)), cv2.IMREAD_GRAYSCALE)
    if raw is None:  # pragma: no cover - the wheel's PNG is readable
        raise RuntimeError(f"cannot read {photo_path(name)}")
    return np.asarray(raw, np.float32) / 255.0


def canvas(surface: str, rng: np.random.Generator, frame: int) -> Frame:
    """A float32 canvas of side ``ceil(1.3 * frame)`` (H×W grey, or H×W×3 for ``fabric``)."""
    n = math.ceil(_CANVAS * frame)
    if surface in PHOTOS:
        photo = _photo(surface)
        limit = int(0.8 * photo.shape[0])
        if n > limit:  # big frames: upsample the photo so a crop still has room to move
            f = n / limit
            photo = np.asarray(cv2.resize(photo, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC), np.float32)
        y, x = (int(v) for v in rng.integers(0, photo.shape[0] - n + 1, 2))
        return np.ascontiguousarray(photo[y : y + n, x : x + n])
    scale = 1.5 * frame / 256.0
    return _metal(rng, n, scale) if surface == "metal" else _fabric(rng, n, scale)


def _pose(surface: Frame, rng: np.random.Generator, frame: int) -> Frame:
    n = surface.shape[0]
    centre = (n / 2.0 + rng.uniform(-0.05, 0.05) * frame, n / 2.0 + rng.uniform(-0.05, 0.05) * frame)
    m = cv2.getRotationMatrix2D(centre, rng.uniform(-3.0, 3.0), rng.uniform(0.95, 1.05))
    m[:, 2] += (frame / 2.0 - centre[0], frame / 2.0 - centre[1])
    return np.asarray(
        cv2.warpAffine(surface, m, (frame, frame), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), np.float32
    )


def _light_and_sensor(img: Frame, rng: np.random.Generator) -> Frame:
    n = img.shape[0]
    ax = (np.arange(n, dtype=np.float32) - n / 2.0) / n
    direction = rng.uniform(0.0, 2.0 * np.pi)
    ramp = rng.uniform(0.0, 0.24) * (np.cos(direction) * ax[None, :] + np.sin(direction) * ax[:, None])
    light = rng.uniform(0.88, 1.12) * (1.0 + ramp)
    if img.ndim == 3:
        light = light[..., None] * (1.0 + rng.normal(0.0, 0.01, 3)).astype(np.float32)
    lit: npt.NDArray[np.floating[Any]] = img * light + np.float32(rng.uniform(-0.03, 0.03))  # float64 (so is the light)
    if rng.random() < 0.3:
        lit = np.asarray(cv2.GaussianBlur(lit, (0, 0), rng.uniform(0.4, 0.9) * n / 256.0), lit.dtype)
    sigma = rng.uniform(0.004, 0.012)
    lit = lit + rng.standard_normal(lit.shape).astype(np.float32) * (sigma + 0.01 * np.sqrt(np.clip(lit, 0.0, 1.0)))
    return np.asarray(np.clip(lit, 0.0, 1.0), np.float32)


def render(surface: str, family: str | None, rng: np.random.Generator, frame: int = 256) -> tuple[np.ndarray, Mask]:
    """One frame of ``surface`` with a ``family`` defect (None: good) and its mask.

    Returns:
        ``uint8`` image (H×W grey, H×W×3 RGB for colour surfaces) and a bool mask (all False for a good frame).
    """
    part, defect, camera = (np.random.default_rng(int(v)) for v in rng.integers(0, 2**63 - 1, 3))
    img = _pose(canvas(surface, part, frame), camera, frame)
    mask = np.zeros((frame, frame), bool)
    if family is not None:
        mask = paint(img, family, defect, frame / 256.0)
    return np.rint(_light_and_sensor(img, camera) * 255.0).astype(np.uint8), mask


# -- writing a set ----------------------------------------------------------------------------------------------------
def train_counts(p: SetParams) -> dict[str, int]:
    """Training images per class: ``defect_rate`` spread over the labelled families, at least ``n_shots`` each."""
    per = max(round(p.defect_rate * p.n_train / len(p.labelled)), p.n_shots)
    counts = dict.fromkeys(p.labelled, per)
    n_good = p.n_train - sum(counts.values())
    if n_good < p.n_good_labels:
        raise ValueError(f"n_train={p.n_train} leaves {n_good} good images for {p.n_good_labels} good labels")
    return {GOOD: n_good, **counts}


def _write_png(path: Path, img: np.ndarray) -> None:
    data = img[..., ::-1] if img.ndim == 3 else img  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(data))
    if not ok:  # pragma: no cover - encoding a uint8 array does not fail
        raise RuntimeError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _write_split(
    ss: SurfaceSet, split: str, labels: list[str], seq: np.random.SeedSequence
) -> list[list[str]]:  # fmt: skip
    folder = ss.root / split
    folder.mkdir(parents=True, exist_ok=True)
    (ss.root / "masks").mkdir(exist_ok=True)
    rows = []
    for idx, (label, child) in enumerate(zip(labels, seq.spawn(len(labels)), strict=True)):
        img, mask = render(ss.params.surface, None if label == GOOD else label, np.random.default_rng(child),
                           ss.params.frame)  # fmt: skip
        name = f"img_{idx:05d}.png"
        _write_png(folder / name, img)
        mask_rel = ""
        if label != GOOD:
            mask_rel = f"masks/{split}_{idx:05d}.png"
            _write_png(ss.root / mask_rel, mask.astype(np.uint8) * 255)
        rows.append([f"{split}/{name}", label, mask_rel])
    return rows


def _draw_shots(rows: list[list[str]], p: SetParams, rng: np.random.Generator) -> list[list[str]]:
    """``[path, label]`` of ``n_good_labels`` good rows and ``n_shots`` rows of each labelled family, drawn from
    ``rows`` (``[path, label, ...]``, the training images) with ``rng``."""
    shots: list[list[str]] = []
    for cls, k in [(GOOD, p.n_good_labels), *((f, p.n_shots) for f in p.labelled)]:
        pool = [r for r in rows if r[1] == cls]
        shots += [pool[int(i)][:2] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
    return shots


def generate_surface(root: Path, params: SetParams) -> SurfaceSet:
    """Write (or reuse, when its manifest matches) the surface set ``params`` under ``root/<surface>``."""
    ss = SurfaceSet(Path(root) / params.surface, params)
    manifest = ss.root / "manifest.json"
    wanted = {"version": GENERATOR_VERSION, "params": json.loads(json.dumps(asdict(params)))}
    try:
        have = json.loads(manifest.read_text(encoding="utf-8"))
        if {k: have.get(k) for k in wanted} == wanted:
            return ss
    except (OSError, ValueError):
        pass
    manifest.unlink(missing_ok=True)
    ss.root.mkdir(parents=True, exist_ok=True)
    counts = train_counts(params)
    plan_seq, train_seq, test_seq = np.random.SeedSequence([params.seed, zlib.crc32(params.surface.encode())]).spawn(3)
    plan = np.random.default_rng(plan_seq)
    train_labels = plan.permutation(np.repeat(list(counts), list(counts.values()))).tolist()
    test_classes = [GOOD, *FAMILIES]
    test_n = [params.n_test_good] + [params.n_test] * len(FAMILIES)
    test_labels = plan.permutation(np.repeat(test_classes, test_n)).tolist()
    train_rows = _write_split(ss, "train", train_labels, train_seq)
    test_rows = _write_split(ss, "test", test_labels, test_seq)
    shots = _draw_shots(train_rows, params, plan)
    _write_csv(ss.labels_csv, ["path", "label"], shots)
    _write_csv(ss.train_truth_csv, ["path", "label", "mask"], train_rows)
    _write_csv(ss.test_csv, ["path", "label", "mask"], test_rows)
    wanted["counts"] = {"train": counts, "test": dict(zip(test_classes, test_n, strict=True)), "labels": len(shots)}
    atomic_write_text(manifest, json.dumps(wanted, indent=1))
    return ss


def draw_labels(ss: SurfaceSet, draw: int) -> Path:
    """The labels CSV of label draw ``draw``: 0 is the set's own ``labels.csv``; a later draw picks ``n_shots`` of
    each labelled family's training defects and ``n_good_labels`` good training frames anew, at random (a function
    of the set's seed, its surface and ``draw``), written as ``labels_draw<draw>.csv`` beside it.

    The training set holds ``train_counts`` defects per family (6 at the full size), so draws of 5 overlap.
    """
    if draw < 0:
        raise ValueError(f"draw must be >= 0, got {draw}")
    if draw == 0:
        return ss.labels_csv
    p = ss.params
    rng = np.random.default_rng([p.seed, zlib.crc32(p.surface.encode()), 1000 + draw])
    out = ss.root / f"labels_draw{draw}.csv"
    _write_csv(out, ["path", "label"], _draw_shots([[r["path"], r["label"]] for r in ss.rows("train")], p, rng))
    return out


def read_mask(ss: SurfaceSet, row: dict[str, str]) -> Mask:
    """The bool mask of a ``train_truth``/``test`` row (all False for a good image)."""
    if not row["mask"]:
        return np.zeros((ss.params.frame, ss.params.frame), bool)
    m = cv2.imread(str(ss.root / row["mask"]), cv2.IMREAD_GRAYSCALE)
    assert m is not None, row["mask"]
    return np.asarray(m > 127, np.bool_)


def frame_at(root: Path, path: str, mask: str, size: int) -> tuple[np.ndarray, Mask]:
    """A set's frame ``root/path`` squared to ``size`` px as a model sees it, and its mask ``root/mask`` at that size
    (nearest neighbour; all False where ``mask`` is empty: a good frame)."""
    from sslinspect.imageio import read_image, resize_square

    image = resize_square(read_image(root / path)[0], size)
    if not mask:
        return image, np.zeros((size, size), bool)
    m = cv2.imread(str(root / mask), cv2.IMREAD_GRAYSCALE)
    assert m is not None, mask
    return image, np.asarray(cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) > 127, np.bool_)


def contact_sheet(out_png: Path, surfaces: tuple[str, ...] = DEFAULT_SURFACES, frame: int = 256, seed: int = 0) -> None:
    """Per surface: a good frame, then one frame per family; below each, the same with its mask outlined in red."""
    rows = []
    for si, surface in enumerate(surfaces):
        tiles = []
        for fi, family in enumerate([None, *FAMILIES]):
            img, mask = render(surface, family, np.random.default_rng([seed, si, fi]), frame)
            bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[..., ::-1].copy()
            cv2.putText(bgr, f"{surface}: {family or GOOD}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            outlined = bgr.copy()
            cv2.drawContours(outlined, contours, -1, (0, 0, 255), 1)
            tiles.append(np.vstack([bgr, outlined]))
        rows.append(np.hstack(tiles))
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 80])
