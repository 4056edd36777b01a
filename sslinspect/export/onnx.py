"""Export the inspection model to one ONNX file, check it, and prove parity with PyTorch on real images.

The file is written atomically: it appears at the target path only after ``onnx.checker`` and the ONNX Runtime
parity check have passed, so a failed or cancelled export never leaves a half-written or unchecked model.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import ExportConfig
from sslinspect.errors import Cancelled, ExportError
from sslinspect.events import Artifact, Log, Progress, Reporter, null_reporter
from sslinspect.export.module import InferenceModule
from sslinspect.fewshot.model import InspectionHead
from sslinspect.fsutil import atomic_write_json
from sslinspect.infer.onnx_predictor import METADATA_KEY, SUPPORTED_FORMAT, open_session
from sslinspect.preprocess import MEAN, STD
from sslinspect.project import GOOD
from sslinspect.train.runtime import versions

MODEL_FORMAT = SUPPORTED_FORMAT
INPUT_NAME, THRESHOLD_NAME = "images", "threshold"
OUTPUT_NAMES = ("probabilities", "anomaly_score", "is_defect")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ParityReport:
    """PyTorch vs ONNX Runtime on the same real images."""

    images: int
    max_abs_diff_probabilities: float
    max_abs_diff_anomaly_score: float
    decisions_agree: bool
    atol: float
    provider: str
    passed: bool

    @property
    def max_abs_diff(self) -> float:
        """The larger of the two differences."""
        return max(self.max_abs_diff_probabilities, self.max_abs_diff_anomaly_score)


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What was written and how it was checked."""

    path: str
    sidecar: str
    sha256: str
    size_bytes: int
    precision: str
    parity: ParityReport
    seconds: float


def model_metadata(head: InspectionHead, cfg: ExportConfig, provenance: dict[str, Any]) -> dict[str, Any]:
    """The model's self-description: stored in the ONNX metadata and (with a checksum) in the sidecar JSON."""
    s = head.image_size
    return {
        "format": MODEL_FORMAT,
        "classes": list(head.classes),
        "good_class": GOOD if GOOD in head.classes else None,
        "threshold": head.anomaly.threshold,
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "layout": "NHWC",
            "shape": ["N", s, s, 3],
            "color": "RGB",
            "resize": "square, INTER_AREA when shrinking (sslinspect.imageio.resize_square)",
        },
        "threshold_input": THRESHOLD_NAME,
        "outputs": list(OUTPUT_NAMES),
        "image_size": s,
        "normalization": {"mean": list(MEAN), "std": list(STD), "in_graph": True},
        "classifier": head.classifier.kind,
        "anomaly": {"kind": "knn_cosine", "k": head.anomaly.k, "bank_size": int(head.anomaly.bank.shape[0])},
        "precision": cfg.precision,
        "opset": cfg.opset,
        "versions": versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "provenance": provenance,
    }


def _export_graph(module: InferenceModule, path: Path, size: int, opset: int) -> None:
    """torch → ONNX with a dynamic batch; the exporter's console chatter goes to the log."""
    images = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    threshold = torch.zeros((1,), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=4096)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        torch.onnx.export(
            module,
            (images, threshold),
            str(path),
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=[INPUT_NAME, THRESHOLD_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: batch}, None),
            verbose=False,
        )
    log.debug("torch.onnx.export: %s", buf.getvalue())


def _finalise(path: Path, metadata: dict[str, Any], threshold: float) -> None:
    """Make ``threshold`` an input with the calibrated default baked in, attach metadata, check the model."""
    model = onnx.load(str(path))
    model.graph.initializer.append(
        onnx.numpy_helper.from_array(np.array([threshold], dtype=np.float32), name=THRESHOLD_NAME)
    )
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata), "model_author": "SSL Inspect"})
    model.producer_name = "sslinspect"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def check_parity(
    module: InferenceModule, onnx_path: Path, images: np.ndarray, threshold: float, atol: float
) -> ParityReport:
    """Compare PyTorch (fp32, CPU) with ONNX Runtime on ``images`` (uint8 NHWC)."""
    with torch.no_grad():
        p_t, s_t, d_t = (
            t.numpy()
            for t in module(
                torch.from_numpy(np.ascontiguousarray(images)), torch.tensor([threshold], dtype=torch.float32)
            )
        )
    session, provider = open_session(onnx_path, device="cpu")
    p_o, s_o, d_o = session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(images)})
    dp = float(np.abs(p_t - p_o).max())
    ds = float(np.abs(s_t - s_o).max())
    # A decision may only differ where the score sits within tolerance of the threshold.
    borderline = np.abs(s_t - threshold) <= atol
    agree = bool(((d_t == d_o) | borderline).all())
    return ParityReport(len(images), dp, ds, agree, atol, provider, dp <= atol and ds <= atol and agree)


def export_model(
    backbone: torch.nn.Module,
    head: InspectionHead,
    parity_images: np.ndarray,
    out: Path,
    cfg: ExportConfig,
    *,
    provenance: dict[str, Any],
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
) -> ExportResult:
    """Export, check and write ``out`` (and ``out`` with suffix ``.json``) atomically.

    Raises:
        ExportError: if the exporter, the checker or the parity check fails (nothing is written to ``out``).
        Cancelled: if ``cancel`` fires (nothing is written).
    """
    if cfg.precision != "fp32":
        raise ExportError(f"precision {cfg.precision!r} is not available yet; use fp32")
    t0 = time.monotonic()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = InferenceModule(backbone.cpu().eval(), head).eval()
    metadata = model_metadata(head, cfg, provenance)
    tmpdir = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        tmp = tmpdir / "model.onnx"
        report(Progress(stage="export", step=0, total=3, message="exporting graph"))
        try:
            _export_graph(module, tmp, head.image_size, cfg.opset)
            if cancel.is_cancelled():
                raise Cancelled("export cancelled")
            report(Progress(stage="export", step=1, total=3, message="checking model"))
            _finalise(tmp, metadata, head.anomaly.threshold)
        except (Cancelled, ExportError):
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"{out}: ONNX export failed ({type(exc).__name__}: {first})") from exc
        if cancel.is_cancelled():
            raise Cancelled("export cancelled")
        report(Progress(stage="export", step=2, total=3, message="parity check on real images"))
        parity = check_parity(module, tmp, parity_images, head.anomaly.threshold, cfg.parity_atol)
        report(
            Log(
                level="INFO" if parity.passed else "ERROR",
                message=(
                    f"parity on {parity.images} images: max |Δp| {parity.max_abs_diff_probabilities:.2e}, "
                    f"max |Δscore| {parity.max_abs_diff_anomaly_score:.2e} (tolerance {parity.atol:g}), "
                    f"decisions {'agree' if parity.decisions_agree else 'DIFFER'}"
                ),
            )
        )
        if not parity.passed:
            raise ExportError(
                f"{out}: ONNX Runtime output differs from PyTorch beyond {cfg.parity_atol:g} "
                f"(probabilities {parity.max_abs_diff_probabilities:.2e}, "
                f"scores {parity.max_abs_diff_anomaly_score:.2e})"
            )
        data = tmp.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        sidecar = out.with_suffix(".json")
        atomic_write_json(sidecar, {**metadata, "sha256": sha, "file": out.name, "parity": asdict(parity)})
        tmp.replace(out)  # same folder: an atomic rename
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    report(Progress(stage="export", step=3, total=3, message="done"))
    report(Artifact(kind="onnx", path=str(out)))
    return ExportResult(str(out), str(sidecar), sha, len(data), cfg.precision, parity, time.monotonic() - t0)
