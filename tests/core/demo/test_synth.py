"""Tests of the demo data generator: renderer behaviour, on-disk layout, determinism and idempotence."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import TypedDict

import cv2
import numpy as np
import pytest

from sslinspect.demo import DEFECTS, PRODUCTS, DemoDataset, contact_sheet, generate_all, generate_demo, render
from sslinspect.errors import ConfigError


class _Shots(TypedDict):
    """Keyword arguments of generate_demo / generate_all, spread with ``**``: shots, test images per class, size."""

    n_shots: int
    n_test_per_class: int
    size: int


class _Sized(_Shots):
    """`_Shots` and the number of images."""

    n_images: int


class _DemoArgs(_Sized):
    """`_Sized`, the defect rate and the seed."""

    defect_rate: float
    seed: int


SMALL: _DemoArgs = {"n_images": 200, "defect_rate": 0.2, "n_shots": 2, "n_test_per_class": 3, "size": 64, "seed": 3}


def _rows(csv_path: Path) -> list[tuple[str, str]]:
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        assert next(reader) == ["path", "label"]
        return [(p, label) for p, label in reader]


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module", params=PRODUCTS)
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> DemoDataset:
    return generate_demo(tmp_path_factory.mktemp("demo"), product=request.param, **SMALL)


# --- renderer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("size", [64, 128])
def test_render_shape_and_dtype(product: str, size: int) -> None:
    img = render(product, "spot", np.random.default_rng(0), size)
    assert img.dtype == np.uint8
    assert img.shape == ((size, size) if product == "metal" else (size, size, 3))
    assert 20 < img.mean() < 235 and img.std() > 3  # a textured, exposed image, not a flat field


@pytest.mark.parametrize("product", PRODUCTS)
def test_render_is_deterministic(product: str) -> None:
    a = render(product, "crack", np.random.default_rng(7))
    b = render(product, "crack", np.random.default_rng(7))
    c = render(product, "crack", np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_render_advances_the_generator() -> None:
    rng = np.random.default_rng(1)
    assert not np.array_equal(render("metal", None, rng), render("metal", None, rng))


@pytest.mark.parametrize(
    ("product", "defect", "size"), [("wood", None, 128), ("metal", "dent", 128), ("metal", None, 16)]
)
def test_render_rejects_invalid_arguments(product: str, defect: str | None, size: int) -> None:
    with pytest.raises(ConfigError):
        render(product, defect, np.random.default_rng(0), size)


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("defect", DEFECTS)
def test_defect_is_local_and_not_a_brightness_shift(product: str, defect: str) -> None:
    good_means, shifts = [], []
    for seed in range(6):
        good = render(product, None, np.random.default_rng(seed)).astype(np.float32)
        bad = render(product, defect, np.random.default_rng(seed)).astype(np.float32)
        diff = np.abs(bad - good)
        diff = diff.max(axis=-1) if diff.ndim == 3 else diff
        changed = diff > 8
        # the same generator state gives the same part: only the defect's neighbourhood changes
        assert 0.0005 < changed.mean() < 0.10
        ys, xs = np.nonzero(changed)
        assert (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) < 0.6 * diff.size
        # and it stays visible after downscaling to 64 px
        small = [cv2.resize(im, (64, 64), interpolation=cv2.INTER_AREA) for im in (good, bad)]
        assert np.abs(small[1] - small[0]).max() > 12
        good_means.append(float(good.mean()))
        shifts.append(abs(float(bad.mean() - good.mean())))
    # good parts vary more in mean brightness than any defect moves it: "anomalous" ≠ "different mean"
    assert max(shifts) < 0.5 * float(np.std(good_means))


# --- on-disk dataset ------------------------------------------------------------------------------------


def test_layout_matches_manifest(demo: DemoDataset) -> None:
    manifest = json.loads((demo.root / "manifest.json").read_text(encoding="utf-8"))
    truth = _rows(demo.truth_csv)
    assert demo.classes == ("good", *DEFECTS)
    assert dict(Counter(label for _, label in truth)) == manifest["counts"]["images"]
    assert sorted(p.name for p in demo.unlabeled_dir.iterdir()) == sorted(Path(p).name for p, _ in truth)
    assert all(re.fullmatch(r"images/img_\d{5}\.(png|jpg|tif)", p) for p, _ in truth)  # names hide the label
    truth_of = dict(truth)
    labels = _rows(demo.labels_csv)
    assert Counter(label for _, label in labels) == dict.fromkeys(demo.classes, SMALL["n_shots"])
    for rel, label in labels:
        assert (demo.labels_csv.parent / rel).is_file()
        assert truth_of[rel] == label
    tests = _rows(demo.test_csv)
    assert Counter(label for _, label in tests) == dict.fromkeys(demo.classes, SMALL["n_test_per_class"])
    assert all(p.startswith("test/") and (demo.root / p).is_file() for p, _ in tests)


def test_defect_rate_and_minimum_per_type(demo: DemoDataset) -> None:
    labels = [label for _, label in _rows(demo.truth_csv)]
    assert abs(sum(label != "good" for label in labels) / len(labels) - SMALL["defect_rate"]) < 0.02
    per_type = Counter(label for label in labels if label != "good")
    assert max(per_type.values()) - min(per_type.values()) <= 1
    assert min(per_type.values()) >= SMALL["n_shots"] + 3


def test_minimum_per_type_overrides_a_low_rate(tmp_path: Path) -> None:
    ds = generate_demo(tmp_path, n_images=60, defect_rate=0.0, n_shots=2, n_test_per_class=0, size=32)
    counts = Counter(label for _, label in _rows(ds.truth_csv))
    assert all(counts[d] == 5 for d in DEFECTS) and counts["good"] == 40


def test_files_decode_with_expected_formats(demo: DemoDataset) -> None:
    depths: Counter[str] = Counter()
    for path in [*demo.unlabeled_dir.iterdir(), *demo.test_dir.iterdir()]:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert img is not None, path
        assert img.shape[:2] == (SMALL["size"], SMALL["size"])
        if demo.product == "metal":
            assert img.ndim == 2 and path.suffix in {".png", ".tif"}
        else:
            assert img.ndim == 3 and img.shape[2] == 3 and path.suffix == ".jpg" and img.dtype == np.uint8
        depths[img.dtype.name] += 1
        if img.dtype == np.uint16:
            assert img.max() > 4 * 255  # scaled to the 16-bit range, not 8-bit values in a 16-bit container
    if demo.product == "metal":
        assert 0 < depths["uint16"] < 0.2 * sum(depths.values())
        manifest = json.loads((demo.root / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["files"]["sixteen_bit"] == depths["uint16"]


def test_generate_is_idempotent(demo: DemoDataset) -> None:
    before = {p: p.stat().st_mtime_ns for p in demo.root.rglob("*")}
    again = generate_demo(demo.root.parent, product=demo.product, **SMALL)
    assert again == demo
    assert {p: p.stat().st_mtime_ns for p in demo.root.rglob("*")} == before


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    kw: _Sized = {"n_images": 24, "n_shots": 1, "n_test_per_class": 1, "size": 32}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        assert len(generate_all(tmp_path / name, seed=seed, **kw)) == len(PRODUCTS)
    a, b, c = (_digest(tmp_path / name) for name in "abc")
    assert a == b
    assert sum(a.get(k) != v for k, v in c.items()) > 40


def test_changed_parameters_regenerate_and_keep_foreign_files(tmp_path: Path) -> None:
    kw: _Shots = {"n_shots": 1, "n_test_per_class": 1, "size": 32}
    ds = generate_demo(tmp_path, n_images=40, **kw)
    (ds.unlabeled_dir / "notes.txt").write_text("mine", encoding="utf-8")
    seen: list[tuple[int, int]] = []
    ds = generate_demo(tmp_path, n_images=24, progress=lambda done, total: seen.append((done, total)), **kw)
    assert len(list(ds.unlabeled_dir.glob("img_*"))) == 24  # stale images from the bigger run are gone
    assert (ds.unlabeled_dir / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert seen[-1] == (24 + 5, 24 + 5) and [d for d, _ in seen] == list(range(1, 30))


def test_interrupted_run_is_redone(tmp_path: Path) -> None:
    ds = generate_demo(tmp_path, n_images=24, n_shots=1, n_test_per_class=1, size=32)
    (ds.root / "manifest.json").unlink()
    victim = next(ds.unlabeled_dir.iterdir())
    victim.unlink()
    generate_demo(tmp_path, n_images=24, n_shots=1, n_test_per_class=1, size=32)
    assert victim.is_file() and (ds.root / "manifest.json").is_file()


@pytest.mark.parametrize(
    "kw",
    [
        {"product": "wood"},
        {"n_images": 20},
        {"n_shots": 0},
        {"defect_rate": 0.9},
        {"n_test_per_class": -1},
        {"size": 16},
    ],
)
def test_generate_rejects_invalid_parameters(tmp_path: Path, kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        generate_demo(tmp_path, **{"size": 32, **kw})  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


def test_contact_sheet(tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    contact_sheet(out, size=48)
    sheet = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert sheet is not None
    # per product two rows of nine tiles, each tile = label strip + image + 2 px border
    assert sheet.shape == (len(PRODUCTS) * 2 * (14 + 48 + 2), 9 * (48 + 2), 3)
