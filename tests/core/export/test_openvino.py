"""The exported graph in OpenVINO (a second runtime): the same outputs as ONNX Runtime at f32, thresholds fed as
ordinary inputs. Skipped where OpenVINO is not installed (it is in the dev extra)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from sslinspect.imageio import load_for_model
from sslinspect.infer.feeds import threshold_feeds

ov = pytest.importorskip("openvino")


@pytest.mark.parametrize("project", ["trained_project", "segment_project"])
def test_openvino_f32_matches_onnx_runtime(project: str, request: pytest.FixtureRequest, demo_data) -> None:  # type: ignore[no-untyped-def]
    model = request.getfixturevalue(project) / "exports" / "model" / "model.onnx"
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = json.loads(sess.get_modelmeta().custom_metadata_map["sslinspect"])
    paths = sorted(demo_data.test_dir.glob("*.png"))[:8]
    images = np.stack([load_for_model(p, meta["image_size"]) for p in paths])
    # A threshold between the scores, so both decisions occur and must agree.
    scores = sess.run(["anomaly_score"], threshold_feeds(images, 0.0, 0.0))[0]
    t = float(np.median(scores))
    feeds = threshold_feeds(images, t, min(t, meta["review_threshold"]))
    ref = sess.run(None, feeds)
    core = ov.Core()
    # bf16 is OpenVINO's default on CPUs that have it (AVX-512 BF16, AMX) and moves the map far beyond the
    # export's parity tolerance: the line must ask for f32 (docs/deployment.md).
    compiled = core.compile_model(core.read_model(str(model)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(feeds)
    for out, expected in zip(sess.get_outputs(), ref, strict=True):
        value = got[compiled.output(out.name)]
        assert value.shape == expected.shape, out.name
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(value, expected, atol=1e-4, rtol=0, err_msg=out.name)
        else:
            np.testing.assert_array_equal(value, expected, err_msg=out.name)
