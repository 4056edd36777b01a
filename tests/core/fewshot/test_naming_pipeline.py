"""Naming defects end to end (locate, then describe, then type): ``fit`` fits the typing head on the labelled
defects' regions, ``export`` carries it in the model's metadata, and the line-side predictor names every part it
does not pass as OK with the same code, on the exported graph's map. Real images, real ONNX Runtime sessions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from sslinspect import api
from sslinspect.data.cache import open_cache
from sslinspect.defects.describe import DESCRIPTOR_NAMES, KIND_NAMES, describe
from sslinspect.defects.naming import LEVELS, SHARP_CUTS, cut_regions, describe_cuts
from sslinspect.defects.typing_head import KIND_SOURCE, MAP_SOURCE, SHARP_SOURCE, UNKNOWN, TypingHead
from sslinspect.fewshot.model import InspectionHead
from sslinspect.fewshot.stored import load_head
from sslinspect.fewshot.typing_fit import SURE_PRECISION
from sslinspect.fewshot.typing_step import REGIONS_FILE, VIEWS, load_typing, norm_map
from sslinspect.infer.onnx_predictor import Predictor
from sslinspect.project import GOOD


@pytest.fixture(params=["segment", "patch"])
def fitted(request: pytest.FixtureRequest, segment_project: Path, trained_project: Path) -> Path:
    """The defect-aware project and the patch-model (SimCLR) project: both maps localise, both get typed."""
    return segment_project if request.param == "segment" else trained_project


def _fitted_run(root: Path) -> tuple[Path, InspectionHead, TypingHead]:
    """The latest fewshot run folder of ``root``, its head and its typing head."""
    project = api.open_project(root)
    try:
        run = project.latest("fewshot")
        assert run is not None
        head, _ = load_head(project)
    finally:
        project.close()
    typing = load_typing(run)
    assert typing is not None
    return run, head, typing


def _model(root: Path) -> Path:
    found = sorted((root / "exports").rglob("model.onnx"))
    assert found, f"no exported model under {root}"
    return found[0]


def test_fit_types_the_labelled_defects_from_their_regions(fitted: Path) -> None:
    run, head, typing = _fitted_run(fitted)
    project = api.open_project(fitted)
    try:
        types = [c for c in head.classes if c != GOOD]
        assert list(typing.classes) == sorted(types)
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["typing"]
        assert metrics["classes"] == list(typing.classes)
        assert typing.level in LEVELS and metrics["level"] == typing.level
        assert metrics["sure_cut"] == round(typing.sure_cut, 5) and metrics["sure_precision"] == SURE_PRECISION
        assert metrics["sure_agree"] is (head.anomaly.kind == "segment") is typing.sure_agree
        if typing.sure_cut <= 1.0:  # a cut: its out-of-fold names are right at least SURE_PRECISION of the time
            assert metrics["sure_coverage"] > 0 and metrics["sure_accuracy"] >= SURE_PRECISION
        else:
            assert metrics["sure_coverage"] in (0.0, None)
        log = (run / "events.jsonl").read_text(encoding="utf-8")
        assert "names sure from confidence" in log or "no name is sure" in log
        # the defect-aware model's heads also learn from 7 views of each labelled defect; the patch model's do not
        views = f"also learnt from {len(VIEWS) * sum(project.store.label_counts()[t] for t in types)} views of them"
        assert (views in log) is (head.anomaly.kind == "segment")
        confusion = np.array(metrics["confusion"])
        counts = project.store.label_counts()
        assert confusion.shape == (len(types), len(types))
        assert confusion.sum(1).tolist() == [counts[t] for t in typing.classes]  # every labelled defect, once
        with np.load(run / REGIONS_FILE) as saved:
            assert len(saved["ids"]) == sum(counts[t] for t in types)
            boxes = saved["boxes"]
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()  # a region for every one
        assert (boxes[:, 2:] <= head.input_size).all()
    finally:
        project.close()


def test_predict_names_flagged_parts_with_a_labelled_type_or_unknown(fitted: Path, demo_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = _model(fitted)
    sidecar = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    types = sidecar["typing"]["classes"]
    out = tmp_path / "pred.csv"
    api.predict(model, [demo_data.test_dir], out=out, heatmaps=tmp_path / "heat")
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    flagged = [r for r in rows if r["decision"] != "OK"]
    assert flagged, "the test set has defects; some part must be flagged"
    for r in flagged:
        assert r["label"] in [*types, UNKNOWN]
        assert float(r[f"p_{GOOD}"]) == 0.0
        assert sum(float(r[f"p_{t}"]) for t in types) == pytest.approx(1.0, abs=1e-3)
        x0, y0, x1, y1 = (int(v) for v in r["region"].split())
        assert 0 <= x0 < x1 and 0 <= y0 < y1
        assert float(r["novelty"]) >= 0
    assert all(r["region"] == "" and r["novelty"] == "" for r in rows if r["decision"] == "OK")
    assert len(list((tmp_path / "heat").iterdir())) == len(rows)


def test_predictor_describes_a_part_as_fit_did(fitted: Path) -> None:
    """Descriptor parity: the exported graph's maps, located and described by the predictor's code, give the
    descriptors the typing head was fitted on (same images, same code; only the maps' runtime differs). The
    defect-aware model's head cuts its spread map, its sharp map and that region's core; the patch model's, three
    levels of its map."""
    run, head, typing = _fitted_run(fitted)
    project = api.open_project(fitted)
    try:
        with np.load(run / REGIONS_FILE) as saved:
            ids, fit_x, labels = saved["ids"], saved["descriptors"], saved["labels"]
        cache = open_cache(project, head.input_size)
        assert cache is not None
        index = cache.index_of()
        images = np.stack([np.asarray(cache.images[index[int(i)]]) for i in ids])
    finally:
        project.close()
    predictor = Predictor(_model(fitted), device="cpu")
    segment = head.anomaly.kind == "segment"
    want = SHARP_CUTS if segment else tuple((MAP_SOURCE, lv) for lv in LEVELS)
    assert typing.cuts == want and len(fit_x[0]) == len(want) * len(DESCRIPTOR_NAMES)
    assert typing.needs_sharp == segment and head.anomaly.has_sharp == segment
    assert head.anomaly.has_kinds == segment  # the tiny synthdefect pretraining trains the kind head too
    outs = predictor.run_all(images, ["anomaly_map", *(["anomaly_map_sharp", "defect_kinds"] if segment else [])])
    line_maps = {MAP_SOURCE: outs["anomaly_map"], SHARP_SOURCE: outs.get("anomaly_map_sharp")}
    kinds = {KIND_SOURCE: outs.get("defect_kinds")}
    # the maps agree to ~1e-3, so a region can gain or lose a pixel where a level cuts a flat stretch of the map;
    # the regions must overlap almost entirely, and where they are the same pixels the descriptor is the same
    fit_maps = {MAP_SOURCE: _fit_maps(fitted, ids), SHARP_SOURCE: _fit_sharp_maps(fitted, images) if segment else None}
    line_x = np.stack(
        [
            describe_cuts(
                img, {src: m[k] for src, m in (line_maps | kinds).items() if m is not None}, typing.cuts, typing.level
            )[0]
            for k, img in enumerate(images)
        ]
    )
    ious: list[float] = []
    loose: list[tuple[str, int]] = []  # regions under IoU 0.8: their cut's map and the pixels in one region only
    for c, (source, level) in enumerate(typing.cuts):
        part = slice(c * len(DESCRIPTOR_NAMES), (c + 1) * len(DESCRIPTOR_NAMES))
        for k, (img, fx, lx) in enumerate(zip(images, fit_x, line_x, strict=True)):
            line_k = {src: m[k] for src, m in line_maps.items() if m is not None}
            fit_k = {src: m[k] for src, m in fit_maps.items() if m is not None}
            [region], [fit_region] = (
                cut_regions(img, line_k, [(source, level)]),
                cut_regions(img, fit_k, [(source, level)]),
            )
            assert region is not None and fit_region is not None
            x = describe(img, region.mask)
            plain = len(DESCRIPTOR_NAMES) - len(KIND_NAMES)  # x has no kind probabilities
            np.testing.assert_array_equal(x[:plain], lx[part][:plain])  # describe_cuts: each cut's in its place
            assert np.any(lx[part][plain:] != 0) == segment  # the kind entries are the model's, not zeros
            inter = int(np.count_nonzero(region.mask & fit_region.mask))
            union = int(np.count_nonzero(region.mask | fit_region.mask))
            ious.append(inter / union)
            if inter / union < 0.8:
                loose.append((source, union - inter))
            if np.array_equal(region.mask, fit_region.mask):
                np.testing.assert_allclose(lx[part][:plain], fx[part][:plain], rtol=1e-4, atol=1e-5)
                # the kind probabilities agree to ~1e-5; their log (floor 0.01) magnifies that up to 100×
                np.testing.assert_allclose(lx[part][plain:], fx[part][plain:], atol=5e-3)
    # every region overlaps its fitted twin by IoU >= 0.8, or differs by at most 2 pixels: the core of a sharp region
    # can be a handful of pixels, where one pixel costs a quarter of the IoU (a 4-pixel core, 1 apart: 0.75, seen)
    assert np.mean(ious) >= 0.95 and all(gap <= 2 for _, gap in loose), (np.mean(ious), loose)
    agree = np.array(typing.predict(fit_x).labels) == np.array(typing.predict(line_x).labels)
    assert agree.mean() >= 0.8
    assert set(labels.tolist()) <= set(typing.classes)


def _fit_maps(root: Path, ids: np.ndarray) -> list[np.ndarray]:
    """The held-out maps ``fit`` described, on the calibrated scale, for the image ids ``ids``."""
    run, head, _ = _fitted_run(root)
    maps = np.load(run / "maps.npy")
    row = {int(i): k for k, i in enumerate(np.load(run / "embedding_ids.npy"))}
    a = head.anomaly
    return [norm_map(maps[row[int(i)]], a.map_low, a.map_high) for i in ids]


def _fit_sharp_maps(root: Path, images: np.ndarray) -> list[np.ndarray]:
    """The sharp maps ``fit`` described (the segmentation net in PyTorch, as ``fit`` runs it, kept as float16),
    calibrated."""
    import torch

    from sslinspect.fewshot.segmap import SegmentationNet, decoder_from_checkpoint
    from sslinspect.model.checkpoint import build_backbone_from_checkpoint, load_checkpoint
    from sslinspect.runs import latest_checkpoint

    _, head, _ = _fitted_run(root)
    project = api.open_project(root)
    try:
        ckpt = load_checkpoint(latest_checkpoint(project))
    finally:
        project.close()
    backbone = build_backbone_from_checkpoint(ckpt)
    net = SegmentationNet(backbone, decoder_from_checkpoint(ckpt, backbone), head.input_size, sharp=True)
    with torch.no_grad():
        _, maps = net(torch.from_numpy(np.ascontiguousarray(images)))
    a = head.anomaly
    return [norm_map(m, a.sharp_low, a.sharp_high) for m in maps[:, 1].numpy().astype(np.float16)]  # fit keeps fp16


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"head": "not base64!"}, "the model's defect-typing metadata is unusable"),
        ({"classes": ["a"]}, "the model's defect-typing metadata is unusable"),
    ],
)
def test_a_model_with_a_broken_typing_head_is_refused_in_one_line(
    segment_project: Path, tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    import onnx

    from sslinspect.errors import ModelError
    from sslinspect.infer.onnx_predictor import METADATA_KEY

    model = onnx.load(str(_model(segment_project)))
    props = {p.key: p.value for p in model.metadata_props}
    meta = json.loads(props[METADATA_KEY])
    meta["typing"] = entry
    onnx.helper.set_model_props(model, {**props, METADATA_KEY: json.dumps(meta)})
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError) as err:
        Predictor(path, device="cpu")
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)


def test_typing_head_survives_the_metadata_round_trip(segment_project: Path) -> None:
    from sslinspect.defects.typing_head import decode_head, encode_head

    _, _, head = _fitted_run(segment_project)
    back = decode_head(encode_head(head))
    x = np.random.default_rng(0).normal(size=(5, len(head.names)))
    assert head.kind == "levels" and back.cuts == head.cuts == SHARP_CUTS and back.needs_sharp
    assert back.level == head.level and back.classes == head.classes and back.sure_cut == head.sure_cut
    np.testing.assert_allclose(back.predict_proba(x), head.predict_proba(x))
    with pytest.raises(ValueError):
        decode_head("bm90IGFuIG5weg==")  # base64 of "not an npz"
