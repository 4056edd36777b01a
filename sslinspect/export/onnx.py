"""Export the inspection model to one ONNX graph, check it, and prove parity with PyTorch on real images.

The graph holds preprocessing, backbone, anomaly model (with its map) and classifier; the thresholds are plain
graph inputs, one value per image (:mod:`sslinspect.infer.feeds`), filled from the metadata by every caller;
everything the line needs is in the model's metadata and the ``.json`` sidecar. Files are written atomically:
they appear at the target only after ``onnx.checker``, the parity check and (FP16/INT8) the accuracy check have
passed, so a failed or cancelled export never leaves a half-written or unchecked model.
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
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from sslinspect.cancel import NEVER, CancelToken
from sslinspect.config import ExportConfig
from sslinspect.defects.describe import KIND_FILLS, KIND_SHAPES
from sslinspect.defects.naming import PEAK_SHARE
from sslinspect.defects.typing_head import UNKNOWN, TypingHead, encode_head
from sslinspect.errors import Cancelled, ExportError
from sslinspect.events import Artifact, Log, Progress, Reporter, null_reporter
from sslinspect.export.int8 import fp32_tries
from sslinspect.export.module import INPUT_NAMES, KIND_OUTPUT, SHARP_OUTPUT, InferenceModule, output_names
from sslinspect.export.precision import PrecisionReport, check_precision, convert_precision, run_check, with_views
from sslinspect.export.triton import write_triton_repository
from sslinspect.fewshot.model import InspectionHead
from sslinspect.fsutil import atomic_write_json
from sslinspect.infer.feeds import threshold_feeds
from sslinspect.infer.onnx_predictor import METADATA_KEY, SUPPORTED_FORMAT, open_session
from sslinspect.model.runtime import versions
from sslinspect.model.segnet import SegDecoder
from sslinspect.preprocess import MEAN, STD
from sslinspect.project import GOOD

MODEL_FORMAT = SUPPORTED_FORMAT
INPUT_NAME, THRESHOLD_NAME, REVIEW_NAME = INPUT_NAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ParityReport:
    """PyTorch vs ONNX Runtime (FP32) on the same real images; map differences are in score units."""

    images: int
    max_abs_diff_probabilities: float
    max_abs_diff_anomaly_score: float
    decisions_agree: bool
    atol: float
    provider: str
    passed: bool
    max_abs_diff_anomaly_map: float = 0.0

    @property
    def max_abs_diff(self) -> float:
        """The largest of the differences."""
        return max(self.max_abs_diff_probabilities, self.max_abs_diff_anomaly_score, self.max_abs_diff_anomaly_map)


@dataclass(frozen=True, slots=True)
class ExportInputs:
    """Real project images used by the checks: parity, INT8 calibration, and the FP16/INT8 accuracy check."""

    parity: np.ndarray  # uint8 NHWC
    calibration: np.ndarray  # uint8 NHWC, distinct from ``check``
    check: np.ndarray  # uint8 NHWC: every labelled image, then held-out unlabelled ones
    check_labels: list[str | None]


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What was written and how it was checked (``path`` is the ``.onnx`` file, inside the repository for Triton)."""

    path: str
    sidecar: str
    sha256: str
    size_bytes: int
    precision: str
    parity: ParityReport
    seconds: float
    format: str = "onnx"
    threshold: float = 0.0
    review_threshold: float = 0.0
    precision_check: PrecisionReport | None = None
    repository: str | None = None


def typing_metadata(typing: TypingHead) -> dict[str, Any]:
    """The ``typing`` entry of the metadata: the region typing head the predictor runs after the graph."""
    return {
        "classes": list(typing.classes),
        "unknown": UNKNOWN,
        "classifier": typing.kind,
        "level": typing.level,  # the shown region's level
        "levels": list(typing.levels),  # the anomaly_map levels a part's regions are cut at to be named
        "cuts": [[source, level] for source, level in typing.cuts],  # every cut: map ("map" / "sharp") and level
        "peak_share": PEAK_SHARE,
        "sure_cut": float(typing.sure_cut),  # for readers; the predictor takes the one inside ``head``
        "runs_in": "the predictor (sslinspect.defects.naming, numpy + OpenCV), on the anomaly_map output"
        + (f" and the {SHARP_OUTPUT} output" if typing.needs_sharp else "")
        + (f" (and {KIND_OUTPUT} where the model gives it)" if typing.needs_sharp else ""),
        "head": encode_head(typing),
    }


def model_metadata(
    head: InspectionHead, cfg: ExportConfig, provenance: dict[str, Any], typing: TypingHead | None = None
) -> dict[str, Any]:
    """The model's self-description: stored in the ONNX metadata and (with a checksum) in the sidecar JSON."""
    meta = _base_metadata(head, cfg, provenance)
    if typing is not None and head.anomaly.kind != "knn":
        meta["typing"] = typing_metadata(typing)
    return meta


def _base_metadata(head: InspectionHead, cfg: ExportConfig, provenance: dict[str, Any]) -> dict[str, Any]:
    s = head.input_size
    a = head.anomaly
    return {
        "format": MODEL_FORMAT,
        "classes": list(head.classes),
        "good_class": GOOD if GOOD in head.classes else None,
        "threshold": a.threshold,
        "review_threshold": a.review_threshold,
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "layout": "NHWC",
            "shape": ["N", s, s, 3],
            "color": "RGB",
            "resize": "square, INTER_AREA when shrinking (sslinspect.imageio.resize_square)",
        },
        "threshold_input": THRESHOLD_NAME,
        "review_threshold_input": REVIEW_NAME,
        "outputs": list(output_names(head)),
        "decision_codes": {"0": "OK", "1": "review", "2": "NG"},
        "decision_rule": head.decision,
        "image_size": s,
        "tile_size": head.image_size,
        "tiles": head.tiles,
        "normalization": {"mean": list(MEAN), "std": list(STD), "in_graph": True},
        "classifier": head.classifier.kind,
        "descriptor": head.descriptor,
        "anomaly": {
            "kind": a.kind,
            "k": a.k,
            "bank_size": int(a.bank.shape[0]),
            "map": {
                "low": a.map_low,
                "high": a.map_high,
                "spread": a.spread,
                "meaning": "anomaly_map = (patch score - low) / (high - low): 0 typical good patch, 1 calibrated "
                "threshold; normalised against good images, never per image",
            },
            **(
                {
                    "sharp_map": {
                        "output": SHARP_OUTPUT,
                        "low": a.sharp_low,
                        "high": a.sharp_high,
                        "meaning": "the map before spreading, (raw - low) / (high - low) on good images: what the "
                        "typing head also cuts defect regions from; nothing decides on it",
                    }
                }
                if a.has_sharp
                else {}
            ),
            **(
                {
                    "kind_map": {
                        "output": KIND_OUTPUT,
                        "channels": [f"shape:{k}" for k in KIND_SHAPES] + [f"fill:{k}" for k in KIND_FILLS],
                        "stride": 4,
                        "meaning": "per pixel, the probabilities of the synthetic defect shapes, then of the fills, "
                        "the model was taught (each group sums to 1); the typing head pools them over a located "
                        "defect (sslinspect.defects.describe.kind_features); nothing decides on them",
                    }
                }
                if a.has_kinds
                else {}
            ),
        },
        "precision": cfg.precision,
        "opset": cfg.opset,
        "versions": versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "provenance": provenance,
    }


def _export_graph(module: InferenceModule, path: Path, size: int, opset: int, outputs: tuple[str, ...]) -> None:
    """torch → ONNX with a dynamic batch; the exporter's console chatter goes to the log."""
    images = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    # Thresholds are batched like the images (one per image), with no default: every runtime (OpenVINO, Triton's
    # dynamic batching) takes them as ordinary inputs.
    thresholds = (torch.zeros((2,), dtype=torch.float32), torch.zeros((2,), dtype=torch.float32))
    batch = torch.export.Dim("batch", min=1, max=4096)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), warnings.catch_warnings():
        # The thresholds share the images' batch dimension on purpose; the exporter says it names it once.
        warnings.filterwarnings("ignore", message=r".*shares the same shape constraints with another axis")
        torch.onnx.export(
            module,
            (images, *thresholds),
            str(path),
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(outputs),
            dynamic_shapes=({0: batch}, {0: batch}, {0: batch}),
            verbose=False,
        )
    log.debug("torch.onnx.export: %s", buf.getvalue())


def finalise(path: Path, metadata: dict[str, Any]) -> None:
    """Attach metadata and check the model (in place); the thresholds stay plain inputs (values in the metadata)."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata), "model_author": "SSL Inspect"})
    model.producer_name = "sslinspect"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def run_torch(module: InferenceModule, images: np.ndarray, head: InspectionHead) -> list[np.ndarray]:
    """The PyTorch reference outputs (FP32, CPU) for uint8 ``images``, in :func:`output_names` order."""
    a = head.anomaly
    with torch.no_grad():
        outs = module(
            torch.from_numpy(np.ascontiguousarray(images)),
            torch.full((len(images),), a.threshold, dtype=torch.float32),
            torch.full((len(images),), a.review_threshold, dtype=torch.float32),
        )
    return [t.numpy() for t in outs]


def check_parity(
    module: InferenceModule, onnx_path: Path, images: np.ndarray, head: InspectionHead, atol: float
) -> ParityReport:
    """Compare PyTorch (FP32, CPU) with ONNX Runtime on ``images`` (uint8 NHWC): all outputs, at the calibrated
    thresholds."""
    ref = run_torch(module, images, head)
    p_t, s_t, d_t, m_t = ref[:4]
    session, provider = open_session(onnx_path, device="cpu")
    feeds = threshold_feeds(images, head.anomaly.threshold, head.anomaly.review_threshold)
    got = session.run(list(output_names(head)), feeds)
    p_o, s_o, d_o, m_o = got[:4]
    dp = float(np.abs(p_t - p_o).max())
    ds = float(np.abs(s_t - s_o).max())
    a = head.anomaly
    dm = float(np.abs(m_t - m_o).max()) * (a.map_high - a.map_low)  # in raw map units, like the scores
    if a.has_sharp:
        dm = max(dm, float(np.abs(ref[5] - got[5]).max()) * (a.sharp_high - a.sharp_low))
    if a.has_kinds:  # probabilities, like the classes'
        dp = max(dp, float(np.abs(ref[6] - got[6]).max()))
    # A decision may only differ where the score sits within tolerance of the threshold.
    borderline = np.abs(s_t - head.anomaly.threshold) <= atol
    agree = bool(((d_t == d_o) | borderline).all())
    passed = dp <= atol and ds <= atol and dm <= atol and agree
    return ParityReport(len(images), dp, ds, agree, atol, provider, passed, dm)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _fp32_graph(
    module: InferenceModule, fp32: Path, out: Path, head: InspectionHead, cfg: ExportConfig, metadata: dict[str, Any]
) -> None:
    """Step 1: torch → ONNX (FP32), metadata and ``onnx.checker``; any exporter failure becomes one line."""
    try:
        _export_graph(module, fp32, head.input_size, cfg.opset, output_names(head))
        finalise(fp32, {**metadata, "precision": "fp32"})
    except (Cancelled, ExportError):
        raise
    except Exception as exc:
        raise ExportError(f"{out}: ONNX export failed ({type(exc).__name__}: {_first_line(exc)})") from exc


def _parity_step(
    module: InferenceModule,
    fp32: Path,
    out: Path,
    inputs: ExportInputs,
    head: InspectionHead,
    cfg: ExportConfig,
    report: Reporter,
) -> ParityReport:
    """Step 2: ONNX Runtime against PyTorch on real images; refuses the export beyond the tolerance."""
    parity = check_parity(module, fp32, inputs.parity, head, cfg.parity_atol)
    report(
        Log(
            level="INFO" if parity.passed else "ERROR",
            message=(
                f"parity on {parity.images} images: max |Δp| {parity.max_abs_diff_probabilities:.2e}, "
                f"max |Δscore| {parity.max_abs_diff_anomaly_score:.2e}, max |Δmap| "
                f"{parity.max_abs_diff_anomaly_map:.2e} (tolerance {parity.atol:g}), "
                f"decisions {'agree' if parity.decisions_agree else 'DIFFER'}"
            ),
        )
    )
    if not parity.passed:
        raise ExportError(
            f"{out}: ONNX Runtime output differs from PyTorch beyond {cfg.parity_atol:g} "
            f"(probabilities {parity.max_abs_diff_probabilities:.2e}, scores "
            f"{parity.max_abs_diff_anomaly_score:.2e}, maps {parity.max_abs_diff_anomaly_map:.2e})"
        )
    return parity


def _precision_step(
    fp32: Path,
    tmpdir: Path,
    out: Path,
    inputs: ExportInputs,
    head: InspectionHead,
    cfg: ExportConfig,
    metadata: dict[str, Any],
    *,
    force: bool,
    report: Reporter,
    cancel: CancelToken = NEVER,
) -> tuple[Path, PrecisionReport]:
    """Step 3 (FP16/INT8): convert, then check against FP32 on labelled images and their views; refuses beyond the
    tolerance.

    INT8 is tried as :func:`~sslinspect.export.int8.fp32_tries` says: a refused try is followed by one that keeps
    more of the backbone's first operators FP32; the first that passes is kept, else the last (written only if
    ``force``).
    """
    tries = fp32_tries(fp32) if cfg.precision == "int8" else (0,)
    images, labels = with_views(inputs.check, inputs.check_labels)
    reference = run_check(fp32, images)
    for n, keep in enumerate(tries):
        if n and cancel.is_cancelled():
            raise Cancelled("export cancelled")
        final = tmpdir / f"model_{cfg.precision}_{keep}.onnx"
        convert_precision(
            fp32, final, cfg.precision, inputs.calibration, reduce_range=cfg.int8_reduce_range, keep_fp32=keep
        )
        finalise(final, metadata)
        check = check_precision(fp32, final, images, labels, head, cfg, force=force, reference=reference, fp32_ops=keep)
        if check.passed or n == len(tries) - 1:
            break
        report(
            Log(
                level="INFO",
                message=f"{check.message()}; trying again with the backbone's first {tries[n + 1]} operators in fp32",
            )
        )
    report(Log(level="INFO" if check.passed else "WARNING", message=check.message()))
    if not check.passed and not force:
        raise ExportError(f"{out}: {check.message()}; export refused (use --force to write it anyway)")
    return final, check


def _write_outputs(
    final: Path, out: Path, head: InspectionHead, cfg: ExportConfig, sidecar_obj: dict[str, Any], project: str
) -> tuple[Path, Path, str | None]:
    """Step 4: the checked model and its sidecar into place (a Triton repository, or an atomic rename)."""
    if cfg.format == "triton":
        model_path, sidecar = write_triton_repository(final, out, head, sidecar_obj, project)
        return model_path, sidecar, str(out)
    sidecar = out.with_suffix(".json")
    atomic_write_json(sidecar, sidecar_obj)
    final.replace(out)  # same folder: an atomic rename
    return out, sidecar, None


def export_model(
    backbone: torch.nn.Module,
    head: InspectionHead,
    inputs: ExportInputs,
    out: Path,
    cfg: ExportConfig,
    *,
    provenance: dict[str, Any],
    force: bool = False,
    report: Reporter = null_reporter,
    cancel: CancelToken = NEVER,
    decoder: SegDecoder | None = None,
    typing: TypingHead | None = None,
) -> ExportResult:
    """Export, check and write ``out`` (plus the sidecar; or a Triton repository at ``out``) atomically.

    ``decoder`` is the trained segmentation decoder a ``segment`` head needs (None for the other kinds); ``typing``
    the region typing head of the fewshot run (written into the metadata; the predictor runs it).

    Raises:
        ExportError: if the exporter, the checker, the parity check or (unless ``force``) the FP16/INT8 accuracy
            check fails; nothing is written to ``out``.
        Cancelled: if ``cancel`` fires (nothing is written).
    """
    t0 = time.monotonic()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = InferenceModule(backbone.cpu().eval(), head, decoder.cpu().eval() if decoder is not None else None)
    module.eval()
    metadata = model_metadata(head, cfg, provenance, typing)
    steps = 4 if cfg.precision == "fp32" else 5

    def step(k: int, message: str) -> None:
        if cancel.is_cancelled():
            raise Cancelled("export cancelled")
        report(Progress(stage="export", step=k, total=steps, message=message))

    tmpdir = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        fp32 = tmpdir / "model_fp32.onnx"
        step(0, "exporting graph")
        _fp32_graph(module, fp32, out, head, cfg, metadata)
        step(2, "parity check on real images")
        parity = _parity_step(module, fp32, out, inputs, head, cfg, report)
        final, check = fp32, None
        if cfg.precision != "fp32":
            step(3, f"converting to {cfg.precision}")
            final, check = _precision_step(
                fp32, tmpdir, out, inputs, head, cfg, metadata, force=force, report=report, cancel=cancel
            )
        step(steps - 1, "writing the model")
        data = final.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        sidecar_obj = {**metadata, "sha256": sha, "file": out.name, "parity": asdict(parity)}
        if check is not None:
            sidecar_obj["precision_check"] = asdict(check)
        name = str(provenance.get("project") or "sslinspect")
        model_path, sidecar, repository = _write_outputs(final, out, head, cfg, sidecar_obj, name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    report(Progress(stage="export", step=steps, total=steps, message="done"))
    report(Artifact(kind="onnx" if cfg.format == "onnx" else "triton", path=str(repository or model_path)))
    return ExportResult(
        path=str(model_path),
        sidecar=str(sidecar),
        sha256=sha,
        size_bytes=len(data),
        precision=cfg.precision,
        parity=parity,
        seconds=time.monotonic() - t0,
        format=cfg.format,
        threshold=head.anomaly.threshold,
        review_threshold=head.anomaly.review_threshold,
        precision_check=check,
        repository=repository,
    )
