"""The exported graph: parity of every output with PyTorch on real images, thresholds as inputs, metadata,
precisions (FP16, INT8 with its accuracy check and refusal), Triton repositories, and atomic failure."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sslinspect import api
from sslinspect.config import ExportConfig
from sslinspect.errors import ExportError
from sslinspect.export.module import OUTPUT_NAMES, InferenceModule
from sslinspect.export.onnx import finalise, run_torch
from sslinspect.export.precision import check_precision, convert_precision, with_views
from sslinspect.export.run import check_rows
from sslinspect.fewshot.fit import load_head
from sslinspect.imageio import load_for_model
from sslinspect.infer.feeds import threshold_feeds
from sslinspect.infer.onnx_predictor import Predictor
from sslinspect.model.checkpoint import build_backbone_from_checkpoint, load_checkpoint
from sslinspect.project import Project


@pytest.fixture
def model(trained_project: Path) -> Path:
    return trained_project / "exports" / "model" / "model.onnx"


@pytest.fixture
def test_images(demo_data) -> np.ndarray:  # type: ignore[no-untyped-def]
    paths = sorted(p for p in demo_data.test_dir.iterdir() if p.suffix in (".png", ".tif", ".jpg"))
    return np.stack([load_for_model(p, 32) for p in paths])


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _feeds(meta: dict[str, float], images: np.ndarray, **override: float) -> dict[str, np.ndarray]:
    t, r = override.get("threshold", meta["threshold"]), override.get("review", meta["review_threshold"])
    return threshold_feeds(images, t, min(r, t))


def test_all_outputs_match_pytorch_on_real_images(trained_project: Path, model: Path, test_images: np.ndarray) -> None:
    project = Project.open(trained_project)
    head, ckpt = load_head(project)
    module = InferenceModule(build_backbone_from_checkpoint(load_checkpoint(ckpt)), head).eval()
    ref = run_torch(module, test_images, head)
    a = head.anomaly
    got = _session(model).run(list(OUTPUT_NAMES), threshold_feeds(test_images, a.threshold, a.review_threshold))
    for name, r, g in zip(OUTPUT_NAMES, ref, got, strict=True):
        assert r.shape == g.shape, name
        if r.dtype.kind == "f":
            np.testing.assert_allclose(g, r, atol=1e-4, rtol=0, err_msg=name)
    assert ref[3].shape == (len(test_images), 32, 32)  # the map has the input's size
    borderline = np.abs(ref[1] - head.anomaly.threshold) < 1e-4
    assert ((ref[2] == got[2]) | borderline).all()
    project.close()


def test_thresholds_are_plain_per_image_inputs(model: Path, test_images: np.ndarray) -> None:
    sess = _session(model)
    meta = json.loads(sess.get_modelmeta().custom_metadata_map["sslinspect"])
    sidecar = json.loads(model.with_suffix(".json").read_text())
    inputs = {i.name: i for i in sess.get_inputs()}
    assert list(inputs) == ["images", "threshold", "review_threshold"]
    assert inputs["threshold"].shape == inputs["images"].shape[:1] and inputs["threshold"].type == "tensor(float)"
    assert not sess.get_overridable_initializers()  # no ORT-only defaults: every runtime sees the same graph
    assert meta["threshold"] == sidecar["threshold"] and meta["format"] == "sslinspect.onnx/3"
    default = sess.run(None, _feeds(meta, test_images))
    scores = default[1]
    # Every image NG at a threshold below all scores; NG only by the classifier above all scores.
    low = sess.run(None, _feeds(meta, test_images, threshold=float(scores.min()) - 1))
    high = sess.run(None, _feeds(meta, test_images, threshold=float(scores.max()) + 1))
    assert low[2].all() and (low[4] == 2).all()
    by_class = default[0].argmax(1) != meta["classes"].index("good")
    if meta["decision_rule"] == "anomaly":
        by_class[:] = False
    np.testing.assert_array_equal(high[2], by_class)
    np.testing.assert_array_equal(default[2], (scores > meta["threshold"]) | by_class)
    np.testing.assert_allclose(high[1], scores)  # the threshold never changes the score
    mixed = _feeds(meta, test_images)
    mixed["threshold"][::2] = scores.max() + 1  # one threshold per image
    np.testing.assert_array_equal(sess.run(None, mixed)[2][1::2], default[2][1::2])


def test_review_threshold_input_gives_a_review_band(
    trained_project: Path, test_images: np.ndarray, tmp_path: Path
) -> None:
    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    project = api.open_project(root)
    head, _ = load_head(project)
    run = project.latest("fewshot")
    assert run is not None
    dataclasses.replace(head, decision="anomaly").save(run / "head.npz")  # NG from the anomaly score alone
    model = api.export_onnx(project, tmp_path / "m.onnx").path
    project.close()
    sess = _session(Path(model))
    s = sess.run(None, threshold_feeds(test_images, 1.0, 1.0))[1]
    t, r = np.float32(np.quantile(s, 0.75)), np.float32(np.quantile(s, 0.25))
    feeds = threshold_feeds(test_images, float(t), float(r))
    _, _, d, _, dec = sess.run(None, feeds)
    np.testing.assert_array_equal(d, s > t)
    np.testing.assert_array_equal(dec, np.where(s > t, 2, np.where(s > r, 1, 0)))
    assert set(dec.tolist()) == {0, 1, 2}


def test_fp16_runs_on_cpu_and_stays_close(model: Path, test_images: np.ndarray, tmp_path: Path) -> None:
    meta = json.loads(_session(model).get_modelmeta().custom_metadata_map["sslinspect"])
    half = tmp_path / "half.onnx"
    convert_precision(model, half, "fp16", test_images)
    finalise(half, {**meta, "precision": "fp16"})
    a = _session(model).run(None, _feeds(meta, test_images))
    b = _session(half).run(None, _feeds(meta, test_images))
    assert onnx.load(str(half)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    np.testing.assert_allclose(b[1], a[1], atol=5e-3 * max(1.0, float(np.abs(a[1]).max())))
    assert Predictor(half).meta["precision"] == "fp16"


def _check_inputs(root: Path, n_calibration: int) -> tuple[Project, Any, np.ndarray, list[str | None], np.ndarray]:
    """The project at ``root`` (open), its head, the check images (every labelled one plus 60 held out), their
    labels (None: unlabelled) and ``n_calibration`` other images, as the export chooses them."""
    from sslinspect.data.cache import build_cache

    project = Project.open(root)
    head, _ = load_head(project)
    cache = build_cache(project, head.input_size)
    labels = project.store.labels()
    labelled = [k for k, i in enumerate(cache.ids) if i in labels]
    check, calib = check_rows(len(cache), labelled, 60, n_calibration)
    assert not set(check.tolist()) & set(calib.tolist())
    images = np.asarray(cache.images[check])
    return project, head, images, [labels.get(cache.ids[r]) for r in check], np.asarray(cache.images[calib])


def test_int8_accuracy_check_reports_and_refuses_beyond_tolerance(
    trained_project: Path, model: Path, tmp_path: Path
) -> None:
    project, head, images, check_labels, calibration = _check_inputs(trained_project, 32)
    int8 = tmp_path / "int8.onnx"
    convert_precision(model, int8, "int8", calibration)
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(int8)).graph.node)
    strict = check_precision(model, int8, images, check_labels, head, ExportConfig(precision="int8", tolerance=0.0))
    loose = check_precision(model, int8, images, check_labels, head, ExportConfig(precision="int8", tolerance=1.0))
    assert strict.images == len(images) and strict.labelled == sum(t is not None for t in check_labels)
    assert strict.accuracy_fp32 is not None and strict.accuracy is not None
    assert loose.passed
    changed = strict.decision_agreement < 1.0 or (strict.accuracy_change or 0.0) < 0.0
    assert strict.passed is not changed
    assert "decisions agree" in strict.message()
    # the accuracy checked is that of the labels predict writes for the same images read from files
    import cv2

    files = []
    for k, im in enumerate(images):
        files.append(tmp_path / f"{k:03d}.png")
        cv2.imwrite(str(files[-1]), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    written = [p.label for p in Predictor(model, device="cpu").predict_paths(files)]
    truth = [(written[k], t) for k, t in enumerate(check_labels) if t is not None]
    assert strict.accuracy_fp32 == pytest.approx(np.mean([w == t for w, t in truth]))
    project.close()


def test_failed_export_leaves_nothing_at_the_target(trained_project: Path, tmp_path: Path) -> None:
    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    project = api.open_project(root)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportError, match="differs from PyTorch"):
        api.export_onnx(project, out, ExportConfig(parity_atol=0.0))  # nothing is bit-exact
    assert list(out.parent.iterdir()) == []
    project.close()


@pytest.mark.slow
def test_cli_int8_export_refuses_then_writes_with_force(trained_project: Path, tmp_path: Path) -> None:
    from sslinspect.cli import main

    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    out = tmp_path / "int8.onnx"
    strict = ["--set", "export.tolerance=0", "--set", "export.check_images=120"]
    code = main(["export", str(root), "--precision", "int8", "--out", str(out), *strict])
    if code == 0:  # INT8 happened to change nothing on these images
        assert json.loads(out.with_suffix(".json").read_text())["precision_check"]["passed"]
        return
    assert code == 1 and not out.exists()
    assert main(["export", str(root), "--precision", "int8", "--out", str(out), "--force", *strict]) == 0
    check = json.loads(out.with_suffix(".json").read_text())["precision_check"]
    assert check["forced"] and not check["passed"]


def _reads_int8(path: Path) -> set[str]:
    model = onnx.load(str(path))
    made_by = {o: n.op_type for n in model.graph.node for o in n.output}
    return {n.name for n in model.graph.node if any(made_by.get(i) == "DequantizeLinear" for i in n.input)}


def test_refused_int8_is_tried_again_with_more_of_the_backbone_in_fp32(segment_project: Path, tmp_path: Path) -> None:
    from sslinspect.events import Event, Log
    from sslinspect.export.int8 import fp32_tries, quantisable_order
    from sslinspect.export.onnx import ExportInputs, _precision_step
    from sslinspect.export.precision import run_check
    from sslinspect.infer.onnx_predictor import METADATA_KEY

    model = onnx.load(str(segment_project / "exports" / "model" / "model.onnx"))
    project, head, images, check_labels, calibration = _check_inputs(segment_project, 16)
    inputs = ExportInputs(images[:2], calibration, images, check_labels)
    # the threshold between the FP32 and the (first try's) INT8 score of the image that INT8 moves most: that try
    # must flip its decision and be refused at tolerance 0
    fp32 = tmp_path / "fp32.onnx"
    shutil.copy(segment_project / "exports" / "model" / "model.onnx", fp32)
    first = tmp_path / "first.onnx"
    convert_precision(fp32, first, "int8", inputs.calibration)
    metadata = json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))
    finalise(first, metadata)
    s32, s8 = run_check(fp32, images)[1], run_check(first, images)[1]
    k = int(np.argmax(np.abs(s8 - s32)))
    assert s8[k] != s32[k]
    metadata["threshold"] = metadata["review_threshold"] = float(s8[k] + s32[k]) / 2
    finalise(fp32, metadata)
    project.close()
    cfg = ExportConfig(precision="int8", tolerance=0.0)
    logs: list[str] = []

    def keep(event: Event) -> None:
        if isinstance(event, Log):
            logs.append(event.message)

    tries = fp32_tries(fp32)
    assert len(tries) > 1
    try:
        final, report = _precision_step(
            fp32, tmp_path, tmp_path / "m.onnx", inputs, head, cfg, metadata, force=False, report=keep
        )
    except ExportError as exc:  # every try refused: --force writes the last one
        assert "export refused" in str(exc)
        logs.clear()
        final, report = _precision_step(
            fp32, tmp_path, tmp_path / "m.onnx", inputs, head, cfg, metadata, force=True, report=keep
        )
        assert report.forced and not report.passed and report.fp32_ops == tries[-1]
    else:  # a later try passed: it is the one written
        assert report.passed and report.fp32_ops > 0
    again = [m for m in logs if "trying again" in m]
    assert again and "kept in fp32" not in again[0]  # the first try (nothing kept) was refused ...
    # ... and each refused try was followed by the next, up to the one reported
    assert [f"first {k} operators in fp32" in m for m, k in zip(again, tries[1:], strict=False)] == [True] * len(again)
    assert report.fp32_ops == tries[len(again)]
    assert f"first {report.fp32_ops} operators kept in fp32" in report.message()
    order = quantisable_order(model)
    quantised = _reads_int8(final)
    assert not quantised & set(order[: report.fp32_ops]) and set(order[report.fp32_ops :]) <= quantised
    # a cancel between tries stops the export before the next one
    from sslinspect.cancel import EventToken
    from sslinspect.errors import Cancelled

    token = EventToken()

    def cancel_on_retry(event: Event) -> None:
        if isinstance(event, Log) and "trying again" in event.message:
            token.cancel()

    with pytest.raises(Cancelled):
        _precision_step(
            fp32,
            tmp_path,
            tmp_path / "m.onnx",
            inputs,
            head,
            cfg,
            metadata,
            force=True,
            report=cancel_on_retry,
            cancel=token,
        )


def test_int8_that_passes_first_keeps_the_whole_backbone_quantised(trained_project: Path, tmp_path: Path) -> None:
    from sslinspect.export.int8 import quantisable_order

    root = tmp_path / "p.sslproj"
    shutil.copytree(trained_project, root)
    project = api.open_project(root)
    out = tmp_path / "int8.onnx"
    result = api.export_onnx(project, out, ExportConfig(precision="int8"))
    project.close()
    assert result.precision_check is not None and result.precision_check.passed
    assert result.precision_check.fp32_ops == 0
    assert json.loads(out.with_suffix(".json").read_text())["precision_check"]["fp32_ops"] == 0
    fp32 = onnx.load(str(trained_project / "exports" / "model" / "model.onnx"))
    assert set(quantisable_order(fp32)) <= _reads_int8(out)


def test_check_adds_the_typing_views_of_every_labelled_image_only() -> None:
    """One renamed part must be a fraction of a point, not the whole tolerance: the check also runs the four typing
    views (flips, lighter, darker) of each labelled image, labelled alike; unlabelled images get none."""
    from sslinspect.fewshot.typing_step import VIEWS

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    labels: list[str | None] = ["scratch", None, "good", None, "spot"]
    out, out_labels = with_views(images, labels)
    assert len(out) == len(out_labels) == 5 + 3 * len(VIEWS)
    np.testing.assert_array_equal(out[:5], images)  # the originals first, unchanged
    assert out_labels[:5] == labels
    assert out_labels[5:] == ["scratch"] * 4 + ["good"] * 4 + ["spot"] * 4
    np.testing.assert_array_equal(out[5], images[0][:, ::-1])  # the first view of the first labelled image: a mirror
    same, same_labels = with_views(images[[1, 3]], [None, None])
    assert len(same) == 2 and same_labels == [None, None]
