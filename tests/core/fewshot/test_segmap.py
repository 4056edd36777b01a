"""The defect-aware head end to end on real images: a synthdefect pretraining run gives a ``segment`` head whose
map is the anomaly map, the exported graph matches PyTorch (parity), and predict's output contract is unchanged."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sslinspect import api
from sslinspect.config import FewShotConfig
from sslinspect.demo import DemoDataset
from sslinspect.fewshot.fit import load_head
from sslinspect.fewshot.segmap import SegmentationNet, decoder_from_checkpoint, has_decoder, score_window
from sslinspect.model.backbones import build_backbone
from sslinspect.model.checkpoint import build_backbone_from_checkpoint, load_checkpoint
from sslinspect.model.segnet import SegDecoder, feature_pyramid, pyramid_channels


def test_decoder_runs_fully_convolutionally_on_any_frame_size() -> None:
    bb = build_backbone("tiny_cnn", 64).eval()
    dec = SegDecoder(pyramid_channels(bb)).eval()
    net = SegmentationNet(bb, dec, 96)
    for size in (64, 96, 160):
        with torch.no_grad():
            g, raw = net(torch.zeros(2, size, size, 3, dtype=torch.uint8))
        assert raw.shape == (2, size, size) and g.shape[0] == 2
        assert float(raw.min()) >= 0.0 and float(raw.max()) <= 1.0
    assert len(feature_pyramid(bb, torch.zeros(1, 3, 64, 64))) == len(dec.channels)
    assert score_window(256) % 2 == 1 and score_window(32) == 3


def test_synthdefect_run_gives_a_segment_head_with_the_decoder(segment_project: Path) -> None:
    project = api.open_project(segment_project)
    try:
        head, ckpt_path = load_head(project)
        ckpt = load_checkpoint(ckpt_path)
        assert has_decoder(ckpt)
        assert head.anomaly.kind == "segment"
        assert head.input_size == 64 and head.tiles == 1  # the whole native frame, no resize, no tiles
        decoder_from_checkpoint(ckpt, build_backbone_from_checkpoint(ckpt))  # loads strictly
        metrics = json.loads((project.latest("fewshot") / "metrics.json").read_text())  # type: ignore[operator]
        assert metrics["anomaly_kind"] == "segment"
        assert metrics["threshold"] > metrics["map_normalisation"]["low"]
    finally:
        project.close()


def test_segment_export_passes_parity_and_predict_keeps_its_columns(
    segment_project: Path, demo_data: DemoDataset, tmp_path: Path
) -> None:
    model = segment_project / "exports" / "model" / "model.onnx"
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert sidecar["parity"]["passed"] is True
    assert sidecar["anomaly"]["kind"] == "segment"
    out = tmp_path / "pred.csv"
    result = api.predict(model, [demo_data.test_dir], out=out, heatmaps=tmp_path / "heat")
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and len(rows) == result.total
    classes = sidecar["classes"]
    assert list(rows[0]) == [
        "path",
        "label",
        "confidence",
        "anomaly_score",
        "is_defect",
        *[f"p_{c}" for c in classes],
        "decision",
        "error",
        "region",
        "novelty",
        "type_sure",
    ]
    scores = np.array([float(r["anomaly_score"]) for r in rows])
    assert np.isfinite(scores).all() and scores.std() > 0
    assert any((tmp_path / "heat").iterdir())


def test_type_sure_is_confidence_at_or_above_the_fitted_cut(segment_project: Path, demo_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The cut calibrated at fit time travels in the model's metadata; predict calls a name sure exactly when it is
    a type named at or above it, and writes that in the last CSV column (empty for parts not named)."""
    from sslinspect.defects.typing_head import UNKNOWN
    from sslinspect.fewshot.typing_step import load_typing
    from sslinspect.infer.onnx_predictor import Predictor

    model = segment_project / "exports" / "model" / "model.onnx"
    predictor = Predictor(model, device="cpu")
    project = api.open_project(segment_project)
    try:
        fitted = load_typing(project.latest("fewshot"))  # type: ignore[arg-type]
        metrics = json.loads((project.latest("fewshot") / "metrics.json").read_text())["typing"]  # type: ignore[operator]
    finally:
        project.close()
    assert predictor.typing is not None and fitted is not None
    cut = predictor.typing.sure_cut
    assert cut == fitted.sure_cut == metrics["sure_cut"] or round(cut, 5) == metrics["sure_cut"]
    assert cut > 0.0  # calibrated (an uncalibrated head would read 0)
    assert json.loads(model.with_suffix(".json").read_text())["typing"]["sure_cut"] == cut
    preds = list(predictor.predict_paths(sorted(demo_data.test_dir.glob("*.png"))))
    named = [p for p in preds if p.decision != "OK"]
    assert named, "the test set has defects; some part must be named"
    for p in preds:
        if p.decision == "OK":
            assert p.type_sure is None
        else:
            assert p.type_sure == (p.label != UNKNOWN and p.confidence >= cut)
    out = tmp_path / "pred.csv"
    api.predict(model, sorted(demo_data.test_dir.glob("*.png")), out=out)
    with out.open(encoding="utf-8") as fh:
        rows = {r["path"]: r for r in csv.DictReader(fh)}
    expected = {"": None, "1": True, "0": False}
    assert {p.path: p.type_sure for p in preds} == {k: expected[r["type_sure"]] for k, r in rows.items()}


def test_config_can_force_the_patch_model_on_a_synthdefect_run(segment_project: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy.sslproj"
    shutil.copytree(segment_project, copy)
    project = api.open_project(copy)
    try:
        api.fit_fewshot(project, FewShotConfig(device="cpu", anomaly="patch"))
        head, _ = load_head(project)
        assert head.anomaly.kind == "patch"
    finally:
        project.close()


def test_the_spread_map_covers_a_defect_neighbourhood_and_old_heads_keep_their_map(tmp_path: Path) -> None:
    """Heads fitted since the spreading existed get the spread map; a head saved before (no ``map_spread``) keeps
    the plain map its thresholds were calibrated on, in fitting and in the exported graph."""
    from dataclasses import replace

    from sslinspect.export.module import InferenceModule
    from sslinspect.fewshot.model import InspectionHead

    bb, dec, images = _tiny_segment_net()
    with torch.no_grad():
        _, plain = SegmentationNet(bb, dec, 64, spread=False)(images)
        _, spread = SegmentationNet(bb, dec, 64)(images)
    assert plain.shape == spread.shape == (2, 64, 64)
    assert float(spread.std()) < float(plain.std())  # smoother
    assert float(spread.amax()) <= float(plain.amax()) + 1e-6  # never above the map it spreads
    # one bright pixel spreads over its neighbourhood: its neighbours rank above pixels far from it
    spot = torch.zeros(1, 1, 64, 64)
    spot[0, 0, 32, 32] = 1.0
    spread_spot = SegmentationNet(bb, dec, 64)._spread(spot)[0, 0]
    assert float(spread_spot[32, 36]) > float(spread_spot[32, 50]) and float(spread_spot[32, 36]) > 0

    old = _segment_head(0)
    saved = tmp_path / "old.npz"
    old.save(saved)
    with np.load(saved) as z:  # a head of the earlier format has no map_spread entry
        arrays = {k: z[k] for k in z.files if k != "map_spread"}
    np.savez(saved, **arrays)
    assert InspectionHead.load(saved).anomaly.spread == 0
    assert InferenceModule(bb, InspectionHead.load(saved), dec).net.spread is False
    assert InferenceModule(bb, replace(old, anomaly=replace(old.anomaly, spread=1)), dec).net.spread is True


def test_the_sharp_map_is_the_map_before_spreading_and_older_heads_have_none(tmp_path: Path) -> None:
    """With ``sharp`` the net gives the spread map and the same map before spreading; a head fitted before the sharp
    map (no ``map_sharp_*`` entries) exports the five outputs it always had."""
    from dataclasses import replace

    from sslinspect.export.module import OUTPUT_NAMES, SHARP_OUTPUT, InferenceModule, output_names
    from sslinspect.fewshot.model import InspectionHead

    bb, dec, images = _tiny_segment_net()
    with torch.no_grad():
        _, plain = SegmentationNet(bb, dec, 64, spread=False)(images)
        _, spread = SegmentationNet(bb, dec, 64)(images)
        _, both = SegmentationNet(bb, dec, 64, sharp=True)(images)
    assert both.shape == (2, 2, 64, 64)
    torch.testing.assert_close(both[:, 0], spread)
    torch.testing.assert_close(both[:, 1], plain)

    from sslinspect.fewshot.classifier import LinearHead

    with torch.no_grad():
        dim = SegmentationNet(bb, dec, 64)(images)[0].shape[1]
    clf = LinearHead("constant", ("good",), np.zeros((1, dim), np.float32), np.zeros(1, np.float32))
    old = replace(_segment_head(1), classifier=clf)
    assert not old.anomaly.has_sharp and output_names(old) == OUTPUT_NAMES
    sharp = replace(old, anomaly=replace(old.anomaly, sharp_low=0.01, sharp_high=0.6))
    assert sharp.anomaly.has_sharp and output_names(sharp) == (*OUTPUT_NAMES, SHARP_OUTPUT)
    saved = tmp_path / "sharp.npz"
    sharp.save(saved)
    back = InspectionHead.load(saved).anomaly
    assert (back.sharp_low, back.sharp_high) == (0.01, 0.6)
    with torch.no_grad():
        outs = InferenceModule(bb, sharp, dec)(images, torch.full((2,), 0.5), torch.full((2,), 0.5))
    assert len(outs) == 6
    torch.testing.assert_close(outs[5], (plain - 0.01) / (0.6 - 0.01))
    assert len(InferenceModule(bb, old, dec)(images, torch.full((2,), 0.5), torch.full((2,), 0.5))) == 5


def test_the_exported_segment_model_gives_its_sharp_map(segment_project: Path) -> None:
    """The defect-aware project's head is calibrated on the sharp map too, and the graph, its metadata and its
    Triton configuration carry the extra outputs (the sharp map, then the kind probabilities)."""
    from sslinspect.export.triton import triton_config
    from sslinspect.infer.onnx_predictor import Predictor

    project = api.open_project(segment_project)
    try:
        head, _ = load_head(project)
    finally:
        project.close()
    a = head.anomaly
    assert a.has_sharp and a.sharp_high > a.sharp_low
    model = segment_project / "exports" / "model" / "model.onnx"
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert sidecar["outputs"][-2:] == ["anomaly_map_sharp", "defect_kinds"] and a.has_kinds
    assert sidecar["anomaly"]["sharp_map"]["output"] == "anomaly_map_sharp"
    assert sidecar["anomaly"]["kind_map"]["output"] == "defect_kinds"
    assert len(sidecar["anomaly"]["kind_map"]["channels"]) == a.kinds
    assert sidecar["typing"]["cuts"] == [["map", 1.0], ["sharp", 1.0], ["core", 1.0], ["refined", 1.0]]
    predictor = Predictor(model, device="cpu")
    assert "anomaly_map_sharp" in predictor.fetch and "defect_kinds" in predictor.fetch
    images = np.zeros((1, head.input_size, head.input_size, 3), np.uint8)
    out = predictor.run_all(images, ["anomaly_map", "anomaly_map_sharp", "defect_kinds"])
    assert out["anomaly_map_sharp"].shape == out["anomaly_map"].shape == (1, head.input_size, head.input_size)
    quarter = math.ceil(math.ceil(head.input_size / 2) / 2)  # the stem's two stride-2 steps
    assert out["defect_kinds"].shape == (1, a.kinds, quarter, quarter)
    config = triton_config("m", head)
    assert 'name: "anomaly_map_sharp"' in config and 'name: "defect_kinds"' in config


def test_fp16_keeps_the_sharp_map_close(segment_project: Path, demo_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The FP16 version of the defect-aware model keeps its float32 outputs, the sharp map within FP16 rounding and the
    kind probabilities close."""
    import onnxruntime as ort

    from sslinspect.export.onnx import finalise
    from sslinspect.export.precision import convert_precision
    from sslinspect.imageio import load_for_model
    from sslinspect.infer.feeds import threshold_feeds

    model = segment_project / "exports" / "model" / "model.onnx"
    fp32 = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = json.loads(fp32.get_modelmeta().custom_metadata_map["sslinspect"])
    paths = sorted(demo_data.test_dir.glob("*.png"))[:8]
    images = np.stack([load_for_model(p, meta["image_size"]) for p in paths])
    half = tmp_path / "half.onnx"
    convert_precision(model, half, "fp16", images)
    finalise(half, {**meta, "precision": "fp16"})
    feeds = threshold_feeds(images, meta["threshold"], meta["review_threshold"])
    a = dict(zip([o.name for o in fp32.get_outputs()], fp32.run(None, feeds), strict=True))
    sess = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    b = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    assert list(b) == list(a) and a["anomaly_map_sharp"].dtype == b["anomaly_map_sharp"].dtype == np.float32
    np.testing.assert_allclose(b["anomaly_map_sharp"], a["anomaly_map_sharp"], atol=0.02)
    np.testing.assert_allclose(b["anomaly_map"], a["anomaly_map"], atol=0.02)
    assert b["defect_kinds"].dtype == np.float32
    np.testing.assert_allclose(b["defect_kinds"], a["defect_kinds"], atol=0.05)


def test_a_typing_head_that_cuts_a_map_the_graph_lacks_is_refused(segment_project: Path, tmp_path: Path) -> None:
    import onnx

    from sslinspect.errors import ModelError
    from sslinspect.infer.onnx_predictor import METADATA_KEY, Predictor

    model = onnx.load(str(segment_project / "exports" / "model" / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    meta = json.loads(props[METADATA_KEY])
    meta["outputs"] = [o for o in meta["outputs"] if o != "anomaly_map_sharp"]
    onnx.helper.set_model_props(model, {**props, METADATA_KEY: json.dumps(meta)})
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError) as err:
        Predictor(path, device="cpu")
    assert (
        str(err.value) == f"{path}: the model's defect typing needs the anomaly_map_sharp output, which the graph lacks"
    )


def _tiny_segment_net() -> tuple[torch.nn.Module, SegDecoder, torch.Tensor]:
    """A seeded tiny backbone, its (untrained) decoder and two random 64 px uint8 images."""
    torch.manual_seed(0)
    bb = build_backbone("tiny_cnn", 64).eval()
    dec = SegDecoder(pyramid_channels(bb)).eval()
    return bb, dec, torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)


def _segment_head(spread: int):  # type: ignore[no-untyped-def]
    from sslinspect.fewshot.anomaly import AnomalyModel
    from sslinspect.fewshot.classifier import LinearHead
    from sslinspect.fewshot.model import InspectionHead

    clf = LinearHead("constant", ("good",), np.zeros((1, 8), np.float32), np.zeros(1, np.float32))
    anomaly = AnomalyModel("segment", np.zeros((0, 8), np.float32), 1, 0.5, 0.5, 0.01, 0.5, spread=spread)
    return InspectionHead(clf, anomaly, 64)


def test_the_separable_max_filter_is_the_square_one() -> None:
    bb = build_backbone("tiny_cnn", 64).eval()
    net = SegmentationNet(bb, SegDecoder(pyramid_channels(bb)).eval(), 256)
    m = torch.rand(2, 1, 80, 96)
    k, r = net.spread_k, net.gauss.numel() // 2
    square = torch.nn.functional.max_pool2d(m, k, stride=1, padding=k // 2)
    g = net.gauss
    pad = torch.nn.functional.pad
    want = torch.nn.functional.conv2d(pad(square, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    want = torch.nn.functional.conv2d(pad(want, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    assert k > 3 and torch.allclose(net._spread(m), want, rtol=0, atol=1e-6)


def test_the_blur_matrix_is_the_replicate_padded_convolution() -> None:
    from sslinspect.fewshot.segmap import _gaussian_1d, blur_matrix

    g = _gaussian_1d(3.0)
    r = g.numel() // 2
    v = torch.rand(5, 40)  # shorter than the kernel's reach on both sides for the end rows
    want = torch.nn.functional.conv1d(torch.nn.functional.pad(v[:, None], (r, r), mode="replicate"), g.view(1, 1, -1))
    got = v @ blur_matrix(40, g).T
    assert torch.allclose(got, want[:, 0], rtol=0, atol=1e-6)
    assert torch.allclose(blur_matrix(40, g).sum(1), torch.ones(40))  # a flat map stays flat


def test_int8_quantises_the_backbone_but_keeps_decoder_and_stem_fp32(
    segment_project: Path, demo_data: DemoDataset, tmp_path: Path
) -> None:
    import onnx

    from sslinspect.export.int8 import backbone_nodes, stem_nodes
    from sslinspect.export.precision import convert_precision
    from sslinspect.imageio import load_for_model

    model = segment_project / "exports" / "model" / "model.onnx"
    fp32 = onnx.load(str(model))
    size = fp32.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    images = np.stack([load_for_model(p, size) for p in sorted(demo_data.test_dir.glob("*.png"))[:24]])
    convert_precision(model, tmp_path / "int8.onnx", "int8", images)
    int8 = onnx.load(str(tmp_path / "int8.onnx"))
    made_by = {o: n.op_type for n in int8.graph.node for o in n.output}
    # Quantised: a Conv whose weights are INT8 (dequantised). A decoder convolution may read a backbone map that a
    # quantised backbone convolution reads too, rounded once for both; its own weights and arithmetic stay FP32.
    quantised = {
        n.name for n in int8.graph.node if n.op_type == "Conv" and made_by.get(n.input[1]) == "DequantizeLinear"
    }
    scope = {n.name: next((p.value for p in n.metadata_props if p.key == "namespace"), "") for n in fp32.graph.node}
    decoder = {n for n, s in scope.items() if "net.decoder" in s and n in {m.name for m in int8.graph.node}}
    stem = set(stem_nodes(fp32))
    assert decoder and stem and quantised
    assert quantised <= set(backbone_nodes(fp32)) - stem


def test_precision_check_scores_the_labels_predict_writes(segment_project: Path, tmp_path: Path) -> None:
    """On a model with region typing, the export's INT8/FP16 check measures the labels ``predict`` writes (flagged
    parts named from their region), not the graph's whole-image classifier."""
    import cv2

    from sslinspect.config import ExportConfig
    from sslinspect.data.cache import build_cache
    from sslinspect.export.precision import check_precision
    from sslinspect.infer.onnx_predictor import Predictor
    from sslinspect.project import Project

    model = segment_project / "exports" / "model" / "model.onnx"
    assert Predictor(model, device="cpu").typing is not None
    project = Project.open(segment_project)
    try:
        head, _ = load_head(project)
        cache = build_cache(project, head.input_size)
        labels = project.store.labels()
        rows = [k for k, i in enumerate(cache.ids) if i in labels]
        images = np.asarray(cache.images[rows])
        truth = [labels[cache.ids[k]] for k in rows]
    finally:
        project.close()
    report = check_precision(model, model, images, list(truth), head, ExportConfig(precision="int8", tolerance=0.0))
    files = []
    for k, im in enumerate(images):
        files.append(tmp_path / f"{k:03d}.png")
        cv2.imwrite(str(files[-1]), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    written = [p.label for p in Predictor(model, device="cpu").predict_paths(files)]
    graph_labels = [head.classes[int(i)] for i in Predictor(model, device="cpu").run(images)[0].argmax(1)]
    assert report.passed and report.decision_agreement == 1.0 and report.labelled == len(rows)
    assert report.accuracy_fp32 == report.accuracy == np.mean([w == t for w, t in zip(written, truth, strict=True)])
    assert written != graph_labels  # the region typing named some flagged parts differently from the graph


def test_the_kind_head_travels_from_checkpoint_to_graph_and_leaves_the_map_alone(tmp_path: Path) -> None:
    """A decoder with a kind head: rebuilt from a checkpoint with it; its kind probabilities (one softmax over the
    shapes, one over the fills, at stride 4) come beside maps equal to the plain forward's; a head fitted on it
    stores its kind count and exports ``defect_kinds`` as the last output; the kind loss never reaches the map's
    weights (the head reads the decoder's features detached)."""
    from dataclasses import replace

    from sslinspect.defects.describe import KIND_FILLS, KIND_SHAPES
    from sslinspect.export.module import KIND_OUTPUT, OUTPUT_NAMES, SHARP_OUTPUT, InferenceModule, output_names
    from sslinspect.fewshot.model import InspectionHead
    from sslinspect.methods.synthdefect import KINDS, kind_loss
    from sslinspect.model.segnet import feature_pyramid

    torch.manual_seed(0)
    bb = build_backbone("tiny_cnn", 64).eval()
    dec = SegDecoder(pyramid_channels(bb), kinds=KINDS).eval()
    images = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    state = {f"decoder.{k}": v for k, v in dec.state_dict().items()}
    back = decoder_from_checkpoint({"model_state": state}, bb)
    assert back.kinds == KINDS == len(KIND_SHAPES) + len(KIND_FILLS)
    net = SegmentationNet(bb, back, 64, sharp=True)
    assert net.has_kinds and not SegmentationNet(bb, SegDecoder(pyramid_channels(bb)), 64).has_kinds
    with torch.no_grad():
        g, raw, probs = net.forward_kinds(images)
        g0, raw0 = net(images)
    torch.testing.assert_close(raw, raw0)
    torch.testing.assert_close(g, g0)
    assert probs.shape == (2, KINDS, 16, 16)
    ns = len(KIND_SHAPES)
    torch.testing.assert_close(probs[:, :ns].sum(1), torch.ones(2, 16, 16))
    torch.testing.assert_close(probs[:, ns:].sum(1), torch.ones(2, 16, 16))

    head = replace(_segment_head(1), anomaly=replace(_segment_head(1).anomaly, sharp_low=0.01, sharp_high=0.6))
    with torch.no_grad():
        dim = g.shape[1]
    from sslinspect.fewshot.classifier import LinearHead

    head = replace(head, classifier=LinearHead("constant", ("good",), np.zeros((1, dim), np.float32), np.zeros(1)))
    kinded = replace(head, anomaly=replace(head.anomaly, kinds=KINDS))
    assert output_names(head) == (*OUTPUT_NAMES, SHARP_OUTPUT) and not head.anomaly.has_kinds
    assert output_names(kinded) == (*OUTPUT_NAMES, SHARP_OUTPUT, KIND_OUTPUT)
    kinded.save(tmp_path / "head.npz")
    assert InspectionHead.load(tmp_path / "head.npz").anomaly.kinds == KINDS
    with torch.no_grad():
        outs = InferenceModule(bb, kinded, back)(images, torch.full((2,), 0.5), torch.full((2,), 0.5))
    torch.testing.assert_close(outs[-1], probs)
    with pytest.raises(ValueError, match="kind head"):
        InferenceModule(bb, kinded, SegDecoder(pyramid_channels(bb)))

    train = SegDecoder(pyramid_channels(bb), kinds=KINDS).train()
    logit, kind = train.forward_kinds(feature_pyramid(bb, torch.rand(2, 3, 64, 64)), (64, 64))
    kinds = torch.tensor([[1, 2], [-1, -1]])
    kind_loss(kind, kinds, torch.ones_like(logit)).backward()
    assert all(p.grad is None for p in train.lateral.parameters())
    assert all(p.grad is None for p in bb.parameters())
    assert train.kind is not None
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in train.kind.parameters())
