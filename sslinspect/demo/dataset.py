"""Write the built-in demo dataset: unlabeled images, few-shot labels, a labelled test set and ground truth.

Layout and file formats are described in docs/demo_data.md; everything is a function of the seed.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sslinspect.demo.synth import COLOR_PRODUCTS, DEFECTS, MIN_SIZE, PRODUCTS, render, render_float
from sslinspect.errors import ConfigError
from sslinspect.fsutil import atomic_write_json, atomic_write_text

__all__ = ["GENERATOR_VERSION", "DemoDataset", "contact_sheet", "generate_all", "generate_demo"]

# Bump when the images change for the same parameters, so existing demo folders are regenerated.
GENERATOR_VERSION = 1

_SIXTEEN_BIT_FRACTION = 0.10  # metal only: exercises the 16-bit ingestion path
_JPEG_QUALITY = 92
_OWN_FILE = re.compile(r"img_\d{5}\.(png|jpg|tif)")


@dataclass(frozen=True, slots=True)
class DemoDataset:
    """Paths of one generated demo product; every CSV has the columns ``path,label``.

    Attributes:
        root: ``out_dir/<product>``.
        product: The product name.
        unlabeled_dir: ``root/images``, the folder a user points a project at.
        labels_csv: ``root/labels.csv``, ``n_shots`` images per class (``good`` included) from ``images/``;
            paths relative to ``root``.
        test_dir: ``root/test``, separate labelled test images.
        test_csv: ``root/test.csv``, labels of every test image, paths relative to ``root``.
        truth_csv: ``root/truth.csv``, the true label of every image in ``images/`` (evaluation only).
        classes: ``("good", *DEFECTS)``.
    """

    root: Path
    product: str
    unlabeled_dir: Path
    labels_csv: Path
    test_dir: Path
    test_csv: Path
    truth_csv: Path
    classes: tuple[str, ...]

    @classmethod
    def at(cls, root: Path, product: str) -> DemoDataset:
        """Return the dataset description for a product folder ``root`` (nothing is read or written)."""
        return cls(
            root=root,
            product=product,
            unlabeled_dir=root / "images",
            labels_csv=root / "labels.csv",
            test_dir=root / "test",
            test_csv=root / "test.csv",
            truth_csv=root / "truth.csv",
            classes=("good", *DEFECTS),
        )


def _checked_params(
    product: str, n_images: int, defect_rate: float, n_shots: int, n_test_per_class: int, size: int, seed: int
) -> dict[str, Any]:
    """The generator's parameters as ``manifest.json`` records them.

    Raises:
        ConfigError: if a parameter is out of range.
    """
    if product not in PRODUCTS:
        raise ConfigError(f"demo product must be one of {', '.join(PRODUCTS)}, got {product!r}")
    if n_shots < 1 or n_test_per_class < 0 or not 0.0 <= defect_rate <= 0.5 or size < MIN_SIZE:
        raise ConfigError(
            f"demo needs n_shots ≥ 1, n_test_per_class ≥ 0, 0 ≤ defect_rate ≤ 0.5 and size ≥ {MIN_SIZE}, "
            f"got {n_shots}, {n_test_per_class}, {defect_rate}, {size}"
        )
    return {
        "product": product,
        "n_images": n_images,
        "defect_rate": defect_rate,
        "n_shots": n_shots,
        "n_test_per_class": n_test_per_class,
        "size": size,
        "seed": seed,
    }


def _clear_own_files(ds: DemoDataset) -> None:
    """Create the image folders and remove the files an earlier (perhaps interrupted) run of this generator wrote."""
    for folder in (ds.unlabeled_dir, ds.test_dir):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if _OWN_FILE.fullmatch(old.name):  # never delete anything this generator did not write
                old.unlink()


def _pick_shots(
    ds: DemoDataset, truth: list[tuple[str, str]], n_shots: int, plan: np.random.Generator
) -> list[tuple[str, str]]:
    """``n_shots`` labelled examples per class, drawn from ``truth`` (the rows of ``labels.csv``, sorted)."""
    shots: list[tuple[str, str]] = []
    for cls in ds.classes:
        pool = [row for row in truth if row[1] == cls]
        picked = plan.choice(len(pool), size=n_shots, replace=False)
        shots.extend(pool[int(k)] for k in picked)
    return sorted(shots)


def generate_demo(
    out_dir: Path,
    *,
    product: str = "metal",
    n_images: int = 600,
    defect_rate: float = 0.08,
    n_shots: int = 5,
    n_test_per_class: int = 20,
    size: int = 128,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> DemoDataset:
    """Generate the demo dataset of one product under ``out_dir/<product>``.

    Defective images make up about ``defect_rate`` of ``images/``, spread evenly over the defect types, with
    at least ``n_shots + 3`` of each so that some stay unlabelled. File names never reveal the label. The call
    is idempotent: if ``manifest.json`` already records the same parameters and generator version, nothing is
    rewritten. ``manifest.json`` is written last, so an interrupted run is redone by the next call.

    Args:
        out_dir: Parent folder; created if missing.
        product: One of ``PRODUCTS``.
        n_images: Number of unlabeled images.
        defect_rate: Fraction of defective images in ``images/`` (before the per-type minimum).
        n_shots: Labelled examples per class in ``labels.csv``.
        n_test_per_class: Test images per class (``good`` included).
        size: Image side in pixels.
        seed: Seed of everything; the same seed gives byte-identical files.
        progress: Called as ``progress(done, total)`` after each image.

    Returns:
        The paths of the generated dataset.

    Raises:
        ConfigError: if a parameter is out of range.
    """
    params = _checked_params(product, n_images, defect_rate, n_shots, n_test_per_class, size, seed)
    counts = _class_counts(n_images, defect_rate, n_shots)
    ds = DemoDataset.at(Path(out_dir) / product, product)
    manifest_path = ds.root / "manifest.json"
    if _is_complete(manifest_path, params):
        return ds

    manifest_path.unlink(missing_ok=True)
    _clear_own_files(ds)
    seeds = np.random.SeedSequence([seed, zlib.crc32(product.encode())])
    plan_seed, image_seed, test_seed = seeds.spawn(3)
    plan = np.random.default_rng(plan_seed)
    labels = plan.permutation(np.repeat(np.array(ds.classes), [counts[c] for c in ds.classes])).tolist()
    test_labels = plan.permutation(np.repeat(np.array(ds.classes), n_test_per_class)).tolist()
    total = len(labels) + len(test_labels)
    truth, deep = _write_images(ds.unlabeled_dir, labels, image_seed, product, size, plan, 0, total, progress)
    tests, deep_test = _write_images(
        ds.test_dir, test_labels, test_seed, product, size, plan, len(labels), total, progress
    )

    _write_csv(ds.labels_csv, _pick_shots(ds, truth, n_shots, plan))
    _write_csv(ds.test_csv, tests)
    _write_csv(ds.truth_csv, truth)
    atomic_write_json(
        manifest_path,
        {
            "generator": "sslinspect.demo",
            "version": GENERATOR_VERSION,
            "params": params,
            "counts": {
                "images": counts,
                "test": dict.fromkeys(ds.classes, n_test_per_class),
                "labels": n_shots,
            },
            "files": {"images": len(truth), "test": len(tests), "sixteen_bit": deep + deep_test},
        },
    )
    return ds


def generate_all(
    out_dir: Path,
    *,
    n_images: int = 600,
    defect_rate: float = 0.08,
    n_shots: int = 5,
    n_test_per_class: int = 20,
    size: int = 128,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[DemoDataset]:
    """Generate the demo dataset of every product in ``PRODUCTS``; arguments as for `generate_demo`."""
    return [
        generate_demo(
            out_dir,
            product=p,
            n_images=n_images,
            defect_rate=defect_rate,
            n_shots=n_shots,
            n_test_per_class=n_test_per_class,
            size=size,
            seed=seed,
            progress=progress,
        )
        for p in PRODUCTS
    ]


def contact_sheet(out_png: Path, size: int = 128, seed: int = 0) -> None:
    """Write a labelled contact sheet: per product, 6 good parts and 3 of each defect (for docs and review).

    Args:
        out_png: Destination PNG.
        size: Tile side in pixels.
        seed: Seed of the tiles.
    """
    strip, cols = 14, 9
    rows: list[np.ndarray] = []
    for p_idx, product in enumerate(PRODUCTS):
        kinds: list[str | None] = [None] * 6 + [d for d in DEFECTS for _ in range(3)]
        tiles = []
        for k, defect in enumerate(kinds):
            img = render(product, defect, np.random.default_rng([seed, p_idx, k]), size)
            bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR if img.ndim == 2 else cv2.COLOR_RGB2BGR)
            label = np.full((strip, size, 3), 255, np.uint8)
            cv2.putText(
                label,
                f"{product}: {defect or 'good'}",
                (2, strip - 4),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
            tiles.append(
                cv2.copyMakeBorder(np.vstack([label, bgr]), 0, 2, 0, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            )
        rows.extend(np.hstack(tiles[r : r + cols]) for r in range(0, len(tiles), cols))
    ok, buf = cv2.imencode(".png", np.vstack(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:  # pragma: no cover - PNG encoding of a uint8 BGR image does not fail
        raise RuntimeError(f"could not encode {out_png}")
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    Path(out_png).write_bytes(buf.tobytes())


def _class_counts(n_images: int, defect_rate: float, n_shots: int) -> dict[str, int]:
    """Images per class: ``defect_rate`` spread evenly over the defects, at least ``n_shots + 3`` of each."""
    base, extra = divmod(round(defect_rate * n_images), len(DEFECTS))
    counts = {d: max(base + (i < extra), n_shots + 3) for i, d in enumerate(DEFECTS)}
    n_good = n_images - sum(counts.values())
    if n_good < n_shots + 3:
        raise ConfigError(
            f"demo n_images={n_images} is too small for {n_shots} shots per class: "
            f"need at least {sum(counts.values()) + n_shots + 3}"
        )
    return {"good": n_good, **counts}


def _is_complete(manifest_path: Path, params: dict[str, object]) -> bool:
    """Whether ``manifest_path`` records a finished run of this generator version with ``params``."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(manifest.get("version") == GENERATOR_VERSION and manifest.get("params") == params)


def _write_images(
    folder: Path,
    labels: list[str],
    seed_seq: np.random.SeedSequence,
    product: str,
    size: int,
    plan: np.random.Generator,
    done: int,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[list[tuple[str, str]], int]:
    """Render and write one image per label in ``folder``.

    Returns:
        ``(path relative to the dataset root, label)`` rows and the number of 16-bit files written.
    """
    n = len(labels)
    deep = np.zeros(n, bool)
    if product not in COLOR_PRODUCTS and n:
        n_deep = max(1, round(_SIXTEEN_BIT_FRACTION * n))
        deep[plan.choice(n, size=n_deep, replace=False)] = True
    tiff = plan.random(n) < 0.5
    rows = []
    for idx, (label, child) in enumerate(zip(labels, seed_seq.spawn(n), strict=True)):
        defect = None if label == "good" else label
        img = render_float(product, defect, np.random.default_rng(child), size)
        if product in COLOR_PRODUCTS:
            ext, data = ".jpg", np.rint(img * 255.0).astype(np.uint8)[..., ::-1]  # RGB -> BGR for OpenCV
            params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
        elif deep[idx]:
            ext, data, params = (
                (".tif" if tiff[idx] else ".png"),
                np.rint(img * 65535.0).astype(np.uint16),
                [],
            )
        else:
            ext, data, params = ".png", np.rint(img * 255.0).astype(np.uint8), []
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(data), params)
        if not ok:  # pragma: no cover - encoding a valid uint8/uint16 array does not fail
            raise RuntimeError(f"could not encode a demo image as {ext}")
        name = f"img_{idx:05d}{ext}"
        # bytes + write_bytes rather than cv2.imwrite: works for non-ASCII paths on Windows too
        (folder / name).write_bytes(buf.tobytes())
        rows.append((f"{folder.name}/{name}", label))
        if progress is not None:
            progress(done + idx + 1, total)
    return rows, int(deep.sum())


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    """Write ``path,label`` rows atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label"])
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
